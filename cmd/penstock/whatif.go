package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/whatif"
)

// whatIfTimeout bounds a replay on the wall clock.
const whatIfTimeout = 2 * time.Minute

type whatIfOpts struct {
	enabled  *bool
	proposed *string
	site     *string
}

func whatIfFlags(fs *flag.FlagSet) whatIfOpts {
	return whatIfOpts{
		enabled:  fs.Bool("what-if", false, "replay the period against proposed limits (the advisor's, or -proposed) and compare"),
		proposed: fs.String("proposed", "", "the proposed rules, a configuration `FILE` (implies -what-if)"),
		site:     fs.String("site", "", "with -what-if: only this `SITE`"),
	}
}

func (o whatIfOpts) on() bool { return *o.enabled || *o.proposed != "" }

// cmdWhatIf replays the period of -config's log directory under the current
// rules and the proposed ones (-proposed, else the advisor's raise and
// lower applied), and prints the comparison.
func cmdWhatIf(o whatIfOpts, cfgPath string, apiGiven bool, rule string, since time.Duration, asJSON bool, stdout, stderr io.Writer) int {
	if cfgPath == "" || apiGiven {
		return fail(stderr, errors.New("-what-if replays the delivery log in [server] log_dir: give -config F (it does not run through -api)"))
	}
	cfg, rules, err := configAndRules(cfgPath)
	if err != nil {
		return fail(stderr, err)
	}
	now := time.Now()
	opts := whatif.Options{Since: now.Add(-since), Until: now, Rule: rule, Site: *o.site}
	for _, r := range cfg.Delivery.Retry {
		opts.Retry = append(opts.Retry, r.Std())
	}
	current := whatif.LimitsOf(rules.Rules())
	var proposed map[string]whatif.Limits
	source := ""
	if *o.proposed != "" {
		_, prules, err := configAndRules(*o.proposed)
		if err != nil {
			return fail(stderr, err)
		}
		proposed, source = whatif.LimitsOf(prules.Rules()), *o.proposed
	} else {
		rep, err := advisor.Analyze(context.Background(), rules, cfg.Server.LogDir, advisor.Options{Since: opts.Since, Until: now, Rule: rule})
		if err != nil {
			return fail(stderr, err)
		}
		proposed, source = whatif.FromAdvice(current, rep.Recommendations), "the advisor's recommendations"
	}
	if rule == "" && *o.site == "" {
		// Only the rules the proposal changes: the others replay alike.
		changed := ""
		for name, l := range proposed {
			if c, ok := current[name]; ok && c != l {
				if changed != "" {
					changed = "" // several: replay every site
					break
				}
				changed = name
			}
		}
		if onlyNew(current, proposed) {
			fmt.Fprintf(stdout, "No limit to compare: in %s, no rule in force has another max_connections or messages_per_hour.\n", source)
			return 0
		}
		opts.Rule = changed
	}
	ctx, cancel := context.WithTimeout(context.Background(), whatIfTimeout)
	defer cancel()
	res, err := whatif.Run(ctx, cfg.Server.LogDir, current, proposed, opts)
	if err != nil {
		return fail(stderr, err)
	}
	if asJSON {
		return printJSON(stdout, res)
	}
	printWhatIf(stdout, res, source)
	return 0
}

// onlyNew reports whether proposed changes no rule of current: it may only
// add rules, which the replay cannot use.
func onlyNew(current, proposed map[string]whatif.Limits) bool {
	for name, l := range proposed {
		if c, ok := current[name]; ok && c != l {
			return false
		}
	}
	return true
}

// printWhatIf writes one table per site: the record, the replay under the
// current limits and under the proposed ones; then the model's assumptions.
func printWhatIf(w io.Writer, res *whatif.Result, source string) {
	fmt.Fprintf(w, "What-if: the delivery log %s to %s UTC, replayed\nin the simulator: current limits against %s.\n",
		res.Since.UTC().Format("2006-01-02 15:04"), res.Until.UTC().Format("2006-01-02 15:04"), source)
	for _, s := range res.Sites {
		fmt.Fprintln(w)
		head := fmt.Sprintf("Site %s (rule %s): %d messages", s.Site, s.Rule, s.Messages)
		if s.Truncated > 0 {
			head += fmt.Sprintf(" (the first attempted; %d more left out)", s.Truncated)
		}
		wrapIndented(w, "", "  ", head)
		model := "the record shows no push-back: the receiver is assumed to take any rate"
		if s.Model.PerHour > 0 {
			model = fmt.Sprintf("the receiver pushed back in %d hours; it takes at most %d in any hour, then answers %q",
				s.Model.ThrottleHours, s.Model.PerHour, s.Model.Reply)
		}
		if s.Model.ConnBound {
			model += fmt.Sprintf("; a message holds a connection %s (mail waited on connections)", s.Model.Service)
		}
		model += fmt.Sprintf("; arrival times: %d of %d from Reception records", s.Model.FromReception, s.Messages+s.Truncated)
		if s.Model.FromReception < s.Messages+s.Truncated {
			model += " (the others from their first attempt, which hides any wait before it)"
		}
		wrapIndented(w, "  model: ", "         ", model)
		fmt.Fprintf(w, "  %-22s %12s %12s %12s\n", "", "RECORDED", "CURRENT", "PROPOSED")
		row := func(name string, f func(whatif.Side) string) {
			fmt.Fprintf(w, "  %-22s %12s %12s %12s\n", name, f(s.Recorded), f(s.Current), f(s.Proposed))
		}
		row("max_connections", func(x whatif.Side) string { return fmt.Sprint(x.Limits.MaxConnections) })
		row("messages_per_hour", func(x whatif.Side) string {
			if x.Limits.MessagesPerHour <= 0 {
				return "-"
			}
			return fmt.Sprint(x.Limits.MessagesPerHour)
		})
		row("delivered", func(x whatif.Side) string { return fmt.Sprint(x.Delivered) })
		row("deferrals", func(x whatif.Side) string { return fmt.Sprint(x.Deferrals) })
		row("bounced", func(x whatif.Side) string { return fmt.Sprint(x.Bounced) })
		row("not delivered", func(x whatif.Side) string { return fmt.Sprint(x.Undelivered) })
		row("mean time to deliver", func(x whatif.Side) string { return durText(x.MeanWait, x.Delivered) })
		row("all delivered after", func(x whatif.Side) string { return durText(x.Finish, x.Delivered) })
		for _, x := range []struct {
			name string
			s    whatif.Side
		}{{"current", s.Current}, {"proposed", s.Proposed}} {
			if x.s.Stopped != "" {
				wrapIndented(w, "  ", "    ", fmt.Sprintf("The %s replay stopped early at %s: the rest counts as not delivered.", x.name, x.s.Stopped))
			}
		}
	}
	fmt.Fprintln(w, "\nThe model assumes (it knows only what the log recorded):")
	for _, a := range whatif.Assumptions() {
		wrapIndented(w, "  - ", "    ", a)
	}
}

func durText(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()+0.5))
	case d < 10*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%d h", int(d.Hours()+0.5))
}
