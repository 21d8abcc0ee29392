package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mxrule"
)

// cmdAdvise prints the advisor's report: from the log directory of -config
// when -api is not given, else from a running node's API.
func cmdAdvise(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("advise", stderr)
	client := clientFlags(fs)
	rule := fs.String("rule", "", "only this `RULE`")
	since := fs.String("since", "7d", "the period: this `DURATION` back from now (\"12h\", \"7d\")")
	asJSON := fs.Bool("json", false, "print JSON")
	what := whatIfFlags(fs)
	pos, ok := parseArgs(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 0 {
		fs.Usage()
		return 2
	}
	d, err := config.ParseDuration(*since)
	if err != nil || d <= 0 {
		return fail(stderr, fmt.Errorf("-since: must be a positive duration, like \"12h\" or \"7d\""))
	}
	var rep *advisor.Report
	// -config alone reads the log directory; -api on the command line
	// (not PENSTOCK_API from the environment) asks a node.
	apiGiven := false
	fs.Visit(func(f *flag.Flag) { apiGiven = apiGiven || f.Name == "api" })
	if what.on() {
		return cmdWhatIf(what, fs.Lookup("config").Value.String(), apiGiven, *rule, time.Duration(d), *asJSON, stdout, stderr)
	}
	if cfgPath := fs.Lookup("config").Value.String(); cfgPath != "" && !apiGiven {
		cfg, rules, err := configAndRules(cfgPath)
		if err != nil {
			return fail(stderr, err)
		}
		now := time.Now()
		rep, err = advisor.Analyze(context.Background(), rules, cfg.Server.LogDir,
			advisor.Options{Since: now.Add(-time.Duration(d)), Until: now, Rule: *rule})
		if err != nil {
			return fail(stderr, err)
		}
	} else {
		c, err := client()
		if err != nil {
			return fail(stderr, err)
		}
		q := url.Values{"since": {*since}}
		if *rule != "" {
			q.Set("rule", *rule)
		}
		rep = new(advisor.Report)
		if err := c.do("GET", "/api/v1/advise?"+q.Encode(), nil, rep); err != nil {
			return fail(stderr, err)
		}
	}
	if *asJSON {
		return printJSON(stdout, rep)
	}
	printAdvice(stdout, rep)
	return 0
}

// sitesPerRule is how many sites of a rule the text report lists.
const sitesPerRule = 10

// printAdvice writes the report for people: the rules that saw mail, their
// sites, then the recommendations with their diffs.
func printAdvice(w io.Writer, rep *advisor.Report) {
	fmt.Fprintf(w, "Delivery log %s to %s UTC: %d records in %d file(s)",
		rep.Since.UTC().Format("2006-01-02 15:04"), rep.Until.UTC().Format("2006-01-02 15:04"), rep.Records, rep.Files)
	if rep.BadLines > 0 {
		fmt.Fprintf(w, " (%d unreadable lines skipped)", rep.BadLines)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-20s %-6s %5s %8s %9s %8s %7s %6s\n", "RULE", "SCOPE", "CONNS", "PER-HOUR", "DELIVERED", "DEFERRED", "BOUNCED", "PEAK/H")
	idle := 0
	for _, r := range rep.Rules {
		if r.Builtin && len(r.Sites) == 0 {
			idle++
			continue
		}
		perHour := "-"
		if r.MessagesPerHour > 0 {
			perHour = fmt.Sprint(r.MessagesPerHour)
		}
		fmt.Fprintf(w, "%-20s %-6s %5d %8s %9d %8d %7d %6d\n", clip(r.Name, 20), r.Scope, r.MaxConnections, perHour,
			r.Deliveries, sumCounts(r.Deferrals), r.Bounces, r.PeakPerHour)
	}
	if idle > 0 {
		fmt.Fprintf(w, "(%d built-in rules saw no mail)\n", idle)
	}
	// The busiest sites of each rule, and every site a recommendation
	// names; -json has them all.
	named := map[string]bool{}
	for _, rc := range rep.Recommendations {
		named[rc.Site] = true
	}
	first := true
	for _, r := range rep.Rules {
		sites := slices.Clone(r.Sites)
		sort.SliceStable(sites, func(i, j int) bool {
			return sites[i].Deliveries+sumCounts(sites[i].Deferrals) > sites[j].Deliveries+sumCounts(sites[j].Deferrals)
		})
		hidden := 0
		for i, s := range sites {
			if i >= sitesPerRule && !named[s.Site] {
				hidden++
				continue
			}
			if first {
				fmt.Fprintln(w, "\nSites:")
				first = false
			}
			line := fmt.Sprintf("%s (rule %s): %d delivered, %d deferred%s, %d bounced; peak %d/h, %d active hours",
				s.Site, r.Name, s.Deliveries, sumCounts(s.Deferrals), fmtCounts(s.Deferrals), s.Bounces, s.PeakPerHour, s.ActiveHours)
			if len(s.Throttles) > 0 || s.BackoffSeconds+s.SuspendSeconds > 0 {
				line += fmt.Sprintf("; throttled %d×%s, backoff %s, suspended %s", sumCounts(s.Throttles), fmtCounts(s.Throttles),
					time.Duration(s.BackoffSeconds)*time.Second, time.Duration(s.SuspendSeconds)*time.Second)
			}
			if s.ConnWaitHours+s.HourlyWaitHours > 0 {
				line += fmt.Sprintf("; mail waited on connections in %d h, on the hourly quota in %d h", s.ConnWaitHours, s.HourlyWaitHours)
			}
			wrapIndented(w, "  ", "    ", line)
		}
		if hidden > 0 {
			fmt.Fprintf(w, "  ... and %d more sites under rule %s (-json lists them all)\n", hidden, r.Name)
		}
	}
	if len(rep.Recommendations) == 0 {
		fmt.Fprintln(w, "\nNo recommendations: nothing in this period argues for a change.")
		return
	}
	fmt.Fprintf(w, "\nRecommendations (%d):\n", len(rep.Recommendations))
	for i, r := range rep.Recommendations {
		head := fmt.Sprintf("%d. %s rule %q", i+1, strings.ToUpper(r.Kind), r.Rule)
		if r.Key != "" && r.To != 0 {
			head += fmt.Sprintf(": %s %d -> %d", r.Key, r.From, r.To)
		}
		if r.Site != "" {
			head += " (site " + r.Site + ")"
		}
		fmt.Fprintln(w)
		wrapIndented(w, "", "   ", head)
		wrapIndented(w, "   why:    ", "           ", r.Evidence)
		if r.Effect != "" {
			wrapIndented(w, "   effect: ", "           ", r.Effect)
		}
		if r.Diff != "" {
			fmt.Fprintln(w, "   change:")
			for _, l := range strings.Split(strings.TrimSuffix(r.Diff, "\n"), "\n") {
				fmt.Fprintln(w, "     "+l)
			}
		}
	}
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// fmtCounts renders a map as " (a 3, b 1)", largest first.
func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := sortedByCount(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// wrapIndented writes text in lines of at most tableWidth characters, the
// first after first, the others after rest. A word longer than a line
// gets a line of its own.
func wrapIndented(w io.Writer, first, rest, text string) {
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > tableWidth {
			fmt.Fprintln(w, line)
			line, empty = rest, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	fmt.Fprintln(w, line)
}

// configAndRules loads the configuration at path and builds its rule set.
func configAndRules(path string) (*config.Config, *mxrule.Set, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	rules, err := cfg.RuleSet()
	if err != nil {
		return nil, nil, err
	}
	return cfg, rules, nil
}
