package advisor_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
)

// base is the start of the recorded history: 20:00 UTC, so the history
// crosses midnight and the log rotates once.
var base = time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)

const testConfig = `
[[mx_rule]]
name = "bulk"
mx = ["mx.bulk.test"]
max_connections = 5
messages_per_hour = 100

[[mx_rule]]
name = "touchy"
mx = ["mx.touchy.test"]
messages_per_hour = 600

[[mx_rule]]
name = "ghost"
mx = ["mx.nowhere.test"]

[[mx_rule]]
name = "yahoo"
mx = ["*.yahoodns.net"]
max_connections = 3

[[mx_rule]]
name = "wide"
mx = ["mx.wide.test"]
max_connections = 4

[[mx_rule]]
name = "roomy"
mx = ["mx.roomy.test"]
messages_per_hour = 1000
`

// history writes a recorded history into dir with the events package's
// writer, the writer's clock following the records (so it rotates at
// midnight as in production).
func history(t *testing.T, dir string) {
	t.Helper()
	clock := base.Add(-48 * time.Hour)
	lg, err := events.Open(dir, events.Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	write := func(r events.Record) {
		if r.Time.After(clock) {
			clock = r.Time
		}
		if r.ID == "" {
			n++
			r.ID = fmt.Sprintf("m%d", n)
		}
		lg.Write(&r)
	}
	// Before the period: ghost matched once, long ago. Must not count.
	write(events.Record{Type: events.Delivery, Time: base.Add(-48 * time.Hour), Site: "ghost.test", Rule: "ghost", SourceIP: "192.0.2.1"})

	// Hours 0-3: bulk is held at its cap (95 of 100 per hour) for three
	// hours with no error, then the queue empties (hour 3: 10).
	// touchy sends 300 per hour; it is throttled in hours 1 and 3.
	for h := 0; h < 4; h++ {
		start := base.Add(time.Duration(h) * time.Hour)
		bulk := 95
		if h == 3 {
			bulk = 10
		}
		for i := 0; i < 300; i++ {
			at := start.Add(time.Duration(i) * 11 * time.Second)
			if i < bulk {
				write(events.Record{Type: events.Delivery, Time: at, Site: "bulk.test", Rule: "bulk", SourceIP: "192.0.2.1", Recipient: "a@bulk.test"})
			}
			write(events.Record{Type: events.Delivery, Time: at.Add(time.Second), Site: "touchy.test", Rule: "touchy", SourceIP: "192.0.2.1"})
			// wide waits on its 4 connections for three hours (a
			// sample every 25 messages, about 5 minutes), 50 a hour.
			if h < 3 && i < 50 {
				write(events.Record{Type: events.Delivery, Time: at.Add(time.Second), Site: "wide.test", Rule: "wide", SourceIP: "192.0.2.1"})
			}
			if h < 3 && i%25 == 0 {
				write(events.Record{Type: events.QuotaWait, Time: at.Add(time.Second), Site: "wide.test", Rule: "wide", Reason: advisor.WaitConnections})
			}
			// A message with two recipients at one site is one
			// transaction: one quota token.
			if i == 7 {
				id := fmt.Sprintf("multi%d", h)
				for _, rcpt := range []string{"x@roomy.test", "y@roomy.test"} {
					write(events.Record{Type: events.Delivery, Time: at.Add(2 * time.Second), ID: id, Site: "roomy.test", Rule: "roomy", SourceIP: "192.0.2.1", Recipient: rcpt})
				}
			}
			if (h == 1 || h == 3) && i == 100 {
				for j := 0; j < 5; j++ {
					write(events.Record{Type: events.TransientFailure, Time: at.Add(3 * time.Second), Site: "touchy.test", Rule: "touchy", SourceIP: "192.0.2.1",
						Code: 421, Reason: "refused", Text: "4.7.0 try again later"})
				}
				write(events.Record{Type: events.FlowControl, Time: at.Add(4 * time.Second), Site: "touchy.test", State: "backoff",
					Status: "normal -> backoff", Detail: "error ratio 0.35 over 5m"})
				write(events.Record{Type: events.FlowControl, Time: at.Add(4*time.Second + 30*time.Minute), Site: "touchy.test", State: "normal",
					Status: "backoff -> normal", Detail: "recovered"})
			}
		}
	}
	write(events.Record{Type: events.Delivery, Time: base.Add(5 * time.Hour), Site: "yahoo.com", Rule: "yahoo", SourceIP: "192.0.2.1"})
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "delivery*.log"))
	if len(files) < 2 {
		t.Fatalf("history did not rotate: %v", files)
	}
}

func analyze(t *testing.T, opts advisor.Options) *advisor.Report {
	t.Helper()
	dir := t.TempDir()
	history(t, dir)
	cfg, err := config.Parse("test.toml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := cfg.RuleSet()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Since.IsZero() {
		opts.Since = base.Add(-time.Hour)
	}
	if opts.Until.IsZero() {
		opts.Until = base.Add(6 * time.Hour)
	}
	rep, err := advisor.Analyze(context.Background(), rules, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func find(rep *advisor.Report, kind, rule string) *advisor.Recommendation {
	for i := range rep.Recommendations {
		if r := &rep.Recommendations[i]; r.Kind == kind && r.Rule == rule {
			return r
		}
	}
	return nil
}

func ruleReport(t *testing.T, rep *advisor.Report, name string) advisor.RuleReport {
	t.Helper()
	for _, r := range rep.Rules {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %q in the report", name)
	return advisor.RuleReport{}
}

// TestRaiseAtCap: a site held at its hourly cap for three hours with no
// error gets "raise", with the diff and the computed effect.
func TestRaiseAtCap(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Raise, "bulk")
	if r == nil {
		t.Fatalf("no raise for bulk: %+v", rep.Recommendations)
	}
	if r.From != 100 || r.To != 150 || r.Site != "bulk.test" {
		t.Errorf("raise = %+v", r)
	}
	if !strings.Contains(r.Evidence, "3 consecutive hours") {
		t.Errorf("evidence: %s", r.Evidence)
	}
	// 3 × 95 = 285 messages at 150/h = 1.9 h instead of 3 h.
	if !strings.Contains(r.Effect, "285 messages would have finished in ~1.9 h instead of ~3 h") {
		t.Errorf("effect: %s", r.Effect)
	}
	if !strings.Contains(r.Diff, "- messages_per_hour = 100\n+ messages_per_hour = 150\n") ||
		!strings.Contains(r.Diff, "  name = \"bulk\"\n") {
		t.Errorf("diff:\n%s", r.Diff)
	}
	if find(rep, advisor.Lower, "bulk") != nil {
		t.Error("bulk also told to lower")
	}
	b := ruleReport(t, rep, "bulk")
	if b.Deliveries != 3*95+10 || b.PeakPerHour != 95 || len(b.Sites) != 1 || b.Sites[0].PeakPerHour != 95 || b.Sites[0].ActiveHours != 4 {
		t.Errorf("bulk report = %+v", b)
	}
}

// TestLowerWhenThrottled: a site throttled at its level in two hours gets
// "lower", below the rate it was pushed back at, with time held back.
func TestLowerWhenThrottled(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Lower, "touchy")
	if r == nil {
		t.Fatalf("no lower for touchy: %+v", rep.Recommendations)
	}
	// 300 deliveries + 5 deferrals per throttled hour: 80% of 305.
	if r.From != 600 || r.To != 244 || r.Site != "touchy.test" {
		t.Errorf("lower = %+v", r)
	}
	if !strings.Contains(r.Evidence, "2 distinct hours") || !strings.Contains(r.Evidence, `"error ratio 0.35 over 5m" ×2`) ||
		!strings.Contains(r.Evidence, "1.0 h held back") {
		t.Errorf("evidence: %s", r.Evidence)
	}
	if !strings.Contains(r.Diff, "- messages_per_hour = 600\n+ messages_per_hour = 244\n") {
		t.Errorf("diff:\n%s", r.Diff)
	}
	tr := ruleReport(t, rep, "touchy")
	if tr.Deferrals["refused"] != 10 || tr.Deliveries != 1200 {
		t.Errorf("touchy report = %+v", tr)
	}
	s := tr.Sites[0]
	if s.BackoffSeconds != 3600 || s.SuspendSeconds != 0 || s.Throttles["error ratio 0.35 over 5m"] != 2 {
		t.Errorf("touchy site = %+v", s)
	}
	if find(rep, advisor.Raise, "touchy") != nil {
		t.Error("touchy also told to raise")
	}
}

// TestUnusedRule: a rule no record names in the period is flagged, even
// though it matched before the period.
func TestUnusedRule(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Unused, "ghost")
	if r == nil {
		t.Fatalf("ghost not flagged: %+v", rep.Recommendations)
	}
	if !strings.Contains(r.Diff, "- name = \"ghost\"\n") || strings.Contains(r.Diff, "+") {
		t.Errorf("diff:\n%s", r.Diff)
	}
	for _, name := range []string{"bulk", "touchy", "yahoo", "roomy"} {
		if find(rep, advisor.Unused, name) != nil {
			t.Errorf("%s flagged unused", name)
		}
	}
	// Shipped rules are not the operator's to remove.
	if find(rep, advisor.Unused, "google") != nil {
		t.Error("shipped rule flagged unused")
	}
}

// TestOverriddenShipped: the operator's "yahoo" replaces the shipped one;
// the note shows the shipped values against the operator's.
func TestOverriddenShipped(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Overridden, "yahoo")
	if r == nil {
		t.Fatalf("override not noted: %+v", rep.Recommendations)
	}
	if !strings.Contains(r.Diff, "  mx = [\"*.yahoodns.net\"]\n") || !strings.Contains(r.Diff, "- max_connections = 10\n+ max_connections = 3\n") {
		t.Errorf("diff:\n%s", r.Diff)
	}
	if !ruleReport(t, rep, "yahoo").ReplacesShipped {
		t.Error("yahoo not marked as replacing the shipped rule")
	}
}

// TestUnreached: a limit no key came near is noted; a multi-recipient
// transaction counts once.
func TestUnreached(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Unreached, "roomy")
	if r == nil {
		t.Fatalf("roomy not noted: %+v", rep.Recommendations)
	}
	rr := ruleReport(t, rep, "roomy")
	if rr.Deliveries != 8 || rr.PeakPerHour != 1 || rr.Sites[0].PeakPerHour != 2 {
		t.Errorf("roomy = %+v (want 8 deliveries, 1 transaction and 2 deliveries in the peak hour)", rr)
	}
}

// TestRuleFilterAndPeriod: -rule narrows the report; a period after the
// history sees nothing and flags every operator rule unused; an unknown
// rule and an empty period are errors.
func TestRuleFilterAndPeriod(t *testing.T) {
	rep := analyze(t, advisor.Options{Rule: "bulk"})
	if len(rep.Rules) != 1 || rep.Rules[0].Name != "bulk" {
		t.Errorf("rules = %+v", rep.Rules)
	}
	for _, r := range rep.Recommendations {
		if r.Rule != "bulk" {
			t.Errorf("recommendation for %s under -rule bulk", r.Rule)
		}
	}
	late := analyze(t, advisor.Options{Since: base.Add(10 * time.Hour), Until: base.Add(11 * time.Hour)})
	if late.Records != 0 || find(late, advisor.Unused, "bulk") == nil {
		t.Errorf("late period: records %d, recs %+v", late.Records, late.Recommendations)
	}

	dir := t.TempDir()
	cfg, _ := config.Parse("t.toml", []byte(testConfig))
	rules, _ := cfg.RuleSet()
	if _, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: base, Until: base.Add(time.Hour), Rule: "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown rule: %v", err)
	}
	if _, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: base, Until: base}); err == nil {
		t.Error("empty period accepted")
	}
	if _, err := advisor.Analyze(context.Background(), rules, filepath.Join(dir, "missing"), advisor.Options{Since: base, Until: base.Add(time.Hour)}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing dir: %v", err)
	}
}

// TestBadLines: garbage and over-long lines are counted and skipped, the
// records around them still read.
func TestBadLines(t *testing.T) {
	dir := t.TempDir()
	good := `{"type":"Delivery","time":"2026-11-29T20:00:00Z","site":"bulk.test","rule":"bulk","source_ip":"192.0.2.1"}`
	body := good + "\nnot json\n" + `{"type":"Delivery","text":"` + strings.Repeat("x", 2<<20) + `"}` + "\n" + good + "\n"
	if err := os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _ := config.Parse("t.toml", []byte(testConfig))
	rules, _ := cfg.RuleSet()
	rep, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: base, Until: base.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 2 || rep.BadLines != 2 {
		t.Errorf("records %d, bad lines %d; want 2 and 2", rep.Records, rep.BadLines)
	}
}

// TestFlowTime: time held back counts from the first change's "from" state
// at the period's start, and an episode still open at the end counts up to
// the end.
func TestFlowTime(t *testing.T) {
	dir := t.TempDir()
	lg, err := events.Open(dir, events.Options{Now: func() time.Time { return base }})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []events.Record{
		// The period starts at base with the site already in backoff.
		{Type: events.FlowControl, Time: base.Add(20 * time.Minute), Site: "slow.test", State: "suspended", Status: "backoff -> suspended", Detail: "error ratio 0.8"},
		{Type: events.FlowControl, Time: base.Add(50 * time.Minute), Site: "slow.test", State: "normal", Status: "suspended -> normal", Detail: "suspension over"},
		{Type: events.FlowControl, Time: base.Add(100 * time.Minute), Site: "slow.test", State: "backoff", Status: "normal -> backoff", Detail: "error ratio 0.4"},
		{Type: events.Delivery, Time: base.Add(101 * time.Minute), ID: "s1", Site: "slow.test", Rule: "roomy", SourceIP: "192.0.2.1"},
	} {
		lg.Write(&r)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := config.Parse("t.toml", []byte(testConfig))
	rules, _ := cfg.RuleSet()
	rep, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: base, Until: base.Add(2 * time.Hour), Rule: "roomy"})
	if err != nil {
		t.Fatal(err)
	}
	s := ruleReport(t, rep, "roomy").Sites
	if len(s) != 1 {
		t.Fatalf("sites = %+v", s)
	}
	// Backoff: 0-20 min and 100-120 min; suspended: 20-50 min.
	if s[0].BackoffSeconds != 40*60 || s[0].SuspendSeconds != 30*60 {
		t.Errorf("backoff %ds, suspended %ds; want 2400 and 1800", s[0].BackoffSeconds, s[0].SuspendSeconds)
	}
	if s[0].Throttles["error ratio 0.8"] != 1 || s[0].Throttles["error ratio 0.4"] != 1 || len(s[0].Throttles) != 2 {
		t.Errorf("throttles = %v", s[0].Throttles)
	}
	// Throttled in two hours, but at one message: not a rate to lower to.
	if r := find(rep, advisor.Lower, "roomy"); r != nil {
		t.Errorf("lower on a trickle: %+v", r)
	}
}

// TestRaiseConnections: QuotaWait samples of mail waiting on all
// connections, hours on end with no deferral, give "raise max_connections".
func TestRaiseConnections(t *testing.T) {
	rep := analyze(t, advisor.Options{})
	r := find(rep, advisor.Raise, "wide")
	if r == nil {
		t.Fatalf("no raise for wide: %+v", rep.Recommendations)
	}
	// 150 messages in 3 h on 4 connections: on 6, ~2 h.
	if r.Key != "max_connections" || r.From != 4 || r.To != 6 ||
		!strings.Contains(r.Effect, "150 messages would have finished in ~2.0 h instead of ~3 h") ||
		!strings.Contains(r.Diff, "- max_connections = 4\n+ max_connections = 6\n") {
		t.Errorf("raise = %+v\n%s", r, r.Diff)
	}
	if s := ruleReport(t, rep, "wide").Sites[0]; s.ConnWaitHours != 3 || s.HourlyWaitHours != 0 {
		t.Errorf("wide site = %+v", s)
	}
	// touchy has no wait samples: its connections are not in question.
	for _, rec := range rep.Recommendations {
		if rec.Key == "max_connections" && rec.Rule != "wide" {
			t.Errorf("unexpected %+v", rec)
		}
	}
}

// TestWaitRecords: a sample logs the sites waiting on a connection or
// hourly quota with mail queued, and no others.
func TestWaitRecords(t *testing.T) {
	now := base
	recs := advisor.WaitRecords([]queue.SiteView{
		{Site: "a.test", Queued: 5, Wait: &queue.Wait{Status: queue.StatusConnQuota, Rule: "r1", Detail: "4 of 4"}},
		{Site: "b.test", Queued: 2, Wait: &queue.Wait{Status: queue.StatusHourlyQuota, Rule: "r2"}},
		{Site: "c.test", Queued: 2, Wait: &queue.Wait{Status: queue.StatusFlowControl, Rule: "r3"}},
		{Site: "d.test", Queued: 0, Wait: &queue.Wait{Status: queue.StatusConnQuota, Rule: "r4"}},
		{Site: "e.test", Queued: 3},
	}, now)
	if len(recs) != 2 || recs[0].Site != "a.test" || recs[0].Reason != advisor.WaitConnections || recs[0].Rule != "r1" ||
		recs[0].Type != events.QuotaWait || !recs[0].Time.Equal(now) || recs[1].Site != "b.test" || recs[1].Reason != advisor.WaitHourly {
		t.Errorf("records = %+v", recs)
	}
}

// TestArchiveOrder: a day's archives are read in the order written
// (delivery-D.log, then .1, .2, ... up to .10), so flow-control time is
// measured between the right changes.
func TestArchiveOrder(t *testing.T) {
	dir := t.TempDir()
	line := func(at time.Duration, status string) string {
		_, to, _ := strings.Cut(status, " -> ")
		return fmt.Sprintf(`{"type":"FlowControl","time":%q,"site":"slow.test","state":%q,"status":%q,"detail":"x"}`+"\n",
			base.Add(at).Format(time.RFC3339), to, status)
	}
	files := map[string]string{
		"delivery-20261129.log":    line(0, "normal -> backoff"),
		"delivery-20261129.1.log":  line(10*time.Minute, "backoff -> normal"),
		"delivery-20261129.2.log":  line(20*time.Minute, "normal -> backoff"),
		"delivery-20261129.10.log": line(60*time.Minute, "backoff -> normal"),
		"delivery.log": line(90*time.Minute, "normal -> suspended") +
			fmt.Sprintf(`{"type":"Delivery","time":%q,"site":"slow.test","rule":"roomy","source_ip":"192.0.2.1"}`+"\n", base.Add(91*time.Minute).Format(time.RFC3339)),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _ := config.Parse("t.toml", []byte(testConfig))
	rules, _ := cfg.RuleSet()
	rep, err := advisor.Analyze(context.Background(), rules, dir, advisor.Options{Since: base, Until: base.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 5 || rep.Records != 6 {
		t.Fatalf("files %d, records %d", rep.Files, rep.Records)
	}
	s := ruleReport(t, rep, "roomy").Sites
	// Backoff 0-10 and 20-60 min, suspended 90-120 min.
	if len(s) != 1 || s[0].BackoffSeconds != 50*60 || s[0].SuspendSeconds != 30*60 {
		t.Errorf("sites = %+v; want 3000 s of backoff and 1800 s suspended", s)
	}
}
