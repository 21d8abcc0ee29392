package advisor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
)

// Histories the first tests did not shape the advisor on.

// analyzeWith writes records through the events writer into a fresh log
// and analyzes [since, until) against cfgText.
func analyzeWith(t *testing.T, cfgText string, since, until time.Time, recs []events.Record) *advisor.Report {
	t.Helper()
	dir := t.TempDir()
	clock := since
	lg, err := events.Open(dir, events.Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if recs[i].Time.After(clock) {
			clock = recs[i].Time
		}
		lg.Write(&recs[i])
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.toml", []byte(cfgText))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := cfg.RuleSet()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: since, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestShadowedRuleAndOverride: the operator tunes the shipped "google"
// rule and adds "gmail-extra" for *.l.google.com, which google (earlier,
// *.google.com) always wins. Mail flows under google well below its
// limits. Sensible advice: note the override with the shipped values,
// call gmail-extra unused because google shadows it, say the hourly limit
// was never reached, and neither raise nor lower anything.
func TestShadowedRuleAndOverride(t *testing.T) {
	const cfg = `
[[mx_rule]]
name = "google"
mx = ["*.google.com", "*.googlemail.com"]
max_connections = 4
messages_per_hour = 2000

[[mx_rule]]
name = "gmail-extra"
mx = ["*.l.google.com"]
max_connections = 2

[[mx_rule]]
name = "lonely"
mx = ["mx.lonely.test"]
`
	var recs []events.Record
	for h := 0; h < 5; h++ {
		for i := 0; i < 300; i++ {
			recs = append(recs, events.Record{Type: events.Delivery, Time: base.Add(time.Duration(h)*time.Hour + time.Duration(i)*12*time.Second),
				ID: fmt.Sprintf("g%d-%d", h, i), Site: "gmail.com", Rule: "google", SourceIP: "192.0.2.1", MXHost: "gmail-smtp-in.l.google.com"})
		}
	}
	rep := analyzeWith(t, cfg, base, base.Add(6*time.Hour), recs)

	ov := find(rep, advisor.Overridden, "google")
	if ov == nil || !strings.Contains(ov.Diff, "\n+ max_connections = 4\n") || !strings.Contains(ov.Diff, "\n- max_connections = ") {
		t.Errorf("override: %+v", ov)
	}
	un := find(rep, advisor.Unused, "gmail-extra")
	if un == nil || !strings.Contains(un.Evidence, `matched first by the earlier rule "google"`) {
		t.Errorf("shadowed rule: %+v", un)
	}
	// A rule that simply saw no mail is not called shadowed.
	if l := find(rep, advisor.Unused, "lonely"); l == nil || strings.Contains(l.Evidence, "matched first by") {
		t.Errorf("lonely: %+v", l)
	}
	if u := find(rep, advisor.Unreached, "google"); u == nil || u.From != 2000 {
		t.Errorf("unreached: %+v", u)
	}
	for _, r := range rep.Recommendations {
		if r.Kind == advisor.Raise || r.Kind == advisor.Lower {
			t.Errorf("unexpected %s for %s: %s", r.Kind, r.Rule, r.Evidence)
		}
		if r.Kind == advisor.Unused && r.Rule == "google" {
			t.Error("google, which carried all the mail, called unused")
		}
	}
}

// TestLongBackoffs: a site sends at its cap (195 of 200 an hour) and the
// receiver puts it into backoff on the hour, twice, for two hours each,
// during which only a trickle goes. Sensible advice: lower, from the rate
// it was sent at before each backoff (not the trickle of the backoff
// hours), with the four hours held back as evidence, and no raise though
// the clean hours sat at the cap.
func TestLongBackoffs(t *testing.T) {
	const cfg = `
[[mx_rule]]
name = "slowpoke"
mx = ["mx.slowpoke.test"]
messages_per_hour = 200
`
	var recs []events.Record
	n := 0
	send := func(h, count int) {
		for i := 0; i < count; i++ {
			n++
			recs = append(recs, events.Record{Type: events.Delivery, Time: base.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Hour/time.Duration(count)),
				ID: fmt.Sprintf("s%d", n), Site: "slowpoke.test", Rule: "slowpoke", SourceIP: "192.0.2.1"})
		}
	}
	flow := func(at time.Duration, status, detail string) {
		_, to, _ := strings.Cut(status, " -> ")
		recs = append(recs, events.Record{Type: events.FlowControl, Time: base.Add(at), Site: "slowpoke.test", State: to, Status: status, Detail: detail})
	}
	// Hours 0-1 at the cap; backoff 2:00-4:00 (5 an hour go as probes);
	// hours 4-5 at the cap; backoff 6:00-8:00; hour 8 at the cap.
	send(0, 195)
	send(1, 195)
	flow(2*time.Hour, "normal -> backoff", "pattern [TS03] rate limited")
	send(2, 5)
	send(3, 5)
	flow(4*time.Hour, "backoff -> normal", "backoff over")
	send(4, 195)
	send(5, 195)
	flow(6*time.Hour, "normal -> backoff", "pattern [TS03] rate limited")
	send(6, 5)
	send(7, 5)
	flow(8*time.Hour, "backoff -> normal", "backoff over")
	send(8, 195)
	rep := analyzeWith(t, cfg, base, base.Add(9*time.Hour), recs)

	r := find(rep, advisor.Lower, "slowpoke")
	if r == nil {
		t.Fatalf("no lower: %+v", rep.Recommendations)
	}
	// The receiver pushed back after hours of 195: 80% of that, not of
	// the 5 an hour of the backoff.
	if r.From != 200 || r.To != 156 {
		t.Errorf("lower %d -> %d, want 200 -> 156 (80%% of the 195 an hour that preceded each backoff)", r.From, r.To)
	}
	if !strings.Contains(r.Evidence, "4.0 h held back") || !strings.Contains(r.Evidence, `"pattern [TS03] rate limited" ×2`) {
		t.Errorf("evidence: %s", r.Evidence)
	}
	if find(rep, advisor.Raise, "slowpoke") != nil {
		t.Error("raise beside lower for a site the receiver keeps backing off")
	}
	s := ruleReport(t, rep, "slowpoke").Sites[0]
	if s.BackoffSeconds != 4*3600 || s.Throttles["pattern [TS03] rate limited"] != 2 {
		t.Errorf("site = %+v", s)
	}
}
