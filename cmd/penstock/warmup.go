package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/warmup"
)

// cmdWarmup prints each warming source's state: from the spool directory
// of -config when -api is not given (this node's saved state), else from a
// running node's API (which, in a cluster, counts through Redis).
func cmdWarmup(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("warmup", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, ok := parseArgs(fs, args)
	if !ok {
		return 2
	}
	if len(pos) != 1 || pos[0] != "status" {
		fs.Usage()
		return 2
	}
	var list api.WarmupList
	apiGiven := false
	fs.Visit(func(f *flag.Flag) { apiGiven = apiGiven || f.Name == "api" })
	if cfgPath := fs.Lookup("config").Value.String(); cfgPath != "" && !apiGiven {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return fail(stderr, err)
		}
		t, err := warmup.New(warmup.Plans(cfg), warmup.Deps{Path: filepath.Join(cfg.Server.SpoolDir, "warmup.json"),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return fail(stderr, err)
		}
		list.Sources = t.Statuses()
	} else {
		c, err := client()
		if err != nil {
			return fail(stderr, err)
		}
		if err := c.do("GET", "/api/v1/warmup", nil, &list); err != nil {
			return fail(stderr, err)
		}
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	printWarmup(stdout, list.Sources, time.Now())
	return 0
}

// printWarmup writes one block per warming pair.
func printWarmup(w io.Writer, sts []warmup.Status, now time.Time) {
	if len(sts) == 0 {
		fmt.Fprintln(w, "No source is warming up (no [[warmup]] in the configuration).")
		return
	}
	fmt.Fprintf(w, "%-10s %-18s %4s %5s %11s %-9s %s\n", "SOURCE", "GROUP", "DAY", "STEP", "TODAY/LIMIT", "HEALTH", "NEXT DECISION")
	for _, s := range sts {
		step := fmt.Sprintf("%d/%d", s.Step, s.Steps)
		limit := fmt.Sprint(s.Limit)
		if s.Warm {
			step, limit = "warm", "-"
		}
		health := "healthy"
		if !s.Healthy {
			health = "unhealthy"
		}
		next := s.NextDecision.Sub(now).Round(time.Minute)
		fmt.Fprintf(w, "%-10s %-18s %4d %5s %11s %-9s in %s\n", clip(s.Source, 10), clip(s.Group, 18), s.Day, step,
			fmt.Sprintf("%d/%s", s.Sent, limit), health, next)
		wrapIndented(w, "  today:     ", "             ", s.Today.String())
		wrapIndented(w, "  yesterday: ", "             ", s.Yesterday.String())
		wrapIndented(w, "  next:      ", "             ", s.NextAction)
		if n := len(s.LastDecisions); n > 0 {
			d := s.LastDecisions[n-1]
			wrapIndented(w, "  last:      ", "             ", fmt.Sprintf("%s, step %d -> %d: %s", d.Action, d.From+1, d.To+1, d.Reason))
		}
		if s.Degraded {
			fmt.Fprintln(w, "  DEGRADED: Redis does not answer; this node counts its share locally")
		}
	}
}
