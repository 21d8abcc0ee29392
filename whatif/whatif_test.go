package whatif_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/whatif"
)

var base = time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)

// campaign writes a recorded history: n messages arrive at base (Reception
// records) for site under rule; the node sends them at perHour, evenly;
// in every hour of throttled, refused deferrals of the hour's last messages
// and a flow-control backoff follow (each deferred message is delivered
// later in the same pacing).
func campaign(t *testing.T, dir, site, rule string, n, perHour, refusedPerHour int, connWait bool) {
	t.Helper()
	clock := base
	lg, err := events.Open(dir, events.Options{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	write := func(r events.Record) {
		clock = r.Time
		lg.Write(&r)
	}
	for i := 0; i < n; i++ {
		write(events.Record{Type: events.Reception, Time: base, ID: fmt.Sprintf("m%d", i), Sender: "news@sender.test"})
	}
	gap := time.Hour / time.Duration(perHour)
	at := base.Add(time.Second)
	// Messages in sending order: a refused one goes back to the end.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	hourSent := map[int64]int{}
	nextWait := at
	for k := 0; k < len(order) && k < 10*n; k++ {
		id := fmt.Sprintf("m%d", order[k])
		if connWait && !at.Before(nextWait) && k < len(order)-10 {
			write(events.Record{Type: events.QuotaWait, Time: at, Site: site, Rule: rule, Reason: advisor.WaitConnections})
			nextWait = nextWait.Add(5 * time.Minute)
		}
		h := at.Sub(base) / time.Hour
		hourSent[int64(h)]++
		if refusedPerHour > 0 && hourSent[int64(h)] > perHour-refusedPerHour {
			write(events.Record{Type: events.TransientFailure, Time: at, ID: id, Site: site, Rule: rule, SourceIP: "192.0.2.1",
				Code: 421, Reason: "refused", Text: "4.7.0 [TS01] Messages temporarily deferred due to user complaints"})
			if hourSent[int64(h)] == perHour-refusedPerHour+1 {
				write(events.Record{Type: events.FlowControl, Time: at, Site: site, State: "backoff", Status: "normal -> backoff", Detail: "error ratio 0.3 over 5m"})
				write(events.Record{Type: events.FlowControl, Time: at.Add(time.Minute), Site: site, State: "normal", Status: "backoff -> normal", Detail: "recovered"})
			}
			order = append(order, order[k])
		} else {
			write(events.Record{Type: events.Delivery, Time: at, ID: id, Site: site, Rule: rule, SourceIP: "192.0.2.1", Recipient: id + "@" + site})
		}
		at = at.Add(gap)
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
}

func opts() whatif.Options {
	return whatif.Options{Since: base.Add(-time.Hour), Until: base.Add(24 * time.Hour),
		Retry: []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute}}
}

func run(t *testing.T, dir string, cur, prop whatif.Limits, o whatif.Options) whatif.SiteResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := whatif.Run(ctx, dir, map[string]whatif.Limits{"r": cur}, map[string]whatif.Limits{"r": prop}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sites) != 1 {
		t.Fatalf("sites = %+v", res.Sites)
	}
	return res.Sites[0]
}

// TestRaiseAtCapFinishesSooner: a site held at its cap with no error: the
// model bounds nothing, the current limits reproduce the recorded time,
// and a higher limit finishes sooner with no more deferrals.
func TestRaiseAtCapFinishesSooner(t *testing.T) {
	dir := t.TempDir()
	campaign(t, dir, "bulk.test", "r", 300, 100, 0, false)
	sr := run(t, dir, whatif.Limits{MaxConnections: 5, MessagesPerHour: 100}, whatif.Limits{MaxConnections: 5, MessagesPerHour: 150}, opts())
	if sr.Model.PerHour != 0 || sr.Model.ThrottleHours != 0 || sr.Model.FromReception != 300 || sr.Messages != 300 {
		t.Errorf("model = %+v, messages %d", sr.Model, sr.Messages)
	}
	c, p := sr.Current, sr.Proposed
	t.Logf("recorded %+v\ncurrent %+v\nproposed %+v", sr.Recorded, c, p)
	if c.Delivered != 300 || p.Delivered != 300 || c.Undelivered+p.Undelivered != 0 || c.Stopped+p.Stopped != "" {
		t.Fatalf("current %+v\nproposed %+v", c, p)
	}
	// The simulated receiver counted every message it took.
	if c.Accepted != 300 || p.Accepted != 300 {
		t.Errorf("sim accepted %d and %d", c.Accepted, p.Accepted)
	}
	// The model reproduces the record within 5%.
	if d := c.Finish - sr.Recorded.Finish; d < -sr.Recorded.Finish/20 || d > sr.Recorded.Finish/20 {
		t.Errorf("current replay finishes in %s, the record in %s", c.Finish, sr.Recorded.Finish)
	}
	if p.Finish >= c.Finish*3/4 || p.MeanWait >= c.MeanWait {
		t.Errorf("proposed finishes in %s (mean %s), current in %s (mean %s)", p.Finish, p.MeanWait, c.Finish, c.MeanWait)
	}
	if p.Deferrals > c.Deferrals {
		t.Errorf("deferrals: proposed %d, current %d", p.Deferrals, c.Deferrals)
	}
}

// TestRaiseWhenThrottledDefersMore: a site throttled at its level: the
// model's tolerance is what it let through in those hours, and a higher
// limit gives more deferrals than the current one.
func TestRaiseWhenThrottledDefersMore(t *testing.T) {
	dir := t.TempDir()
	campaign(t, dir, "touchy.test", "r", 300, 100, 8, false)
	sr := run(t, dir, whatif.Limits{MaxConnections: 5, MessagesPerHour: 100}, whatif.Limits{MaxConnections: 5, MessagesPerHour: 150}, opts())
	if sr.Model.PerHour != 92 || sr.Model.ThrottleHours < 3 {
		t.Errorf("model = %+v", sr.Model)
	}
	if sr.Recorded.Deferrals == 0 || sr.Recorded.Delivered != 300 {
		t.Errorf("recorded = %+v", sr.Recorded)
	}
	c, p := sr.Current, sr.Proposed
	t.Logf("recorded %+v\ncurrent %+v\nproposed %+v", sr.Recorded, c, p)
	if c.Delivered != 300 || p.Delivered != 300 {
		t.Fatalf("current %+v\nproposed %+v", c, p)
	}
	if p.Deferrals <= c.Deferrals {
		t.Errorf("deferrals: proposed %d, current %d; want more at the higher limit", p.Deferrals, c.Deferrals)
	}
	// The receiver's own count: never more than its tolerance in an hour,
	// so the raise buys little time.
	if p.Finish < c.Finish*3/4 {
		t.Errorf("proposed finishes in %s, current in %s: the tolerance did not hold", p.Finish, c.Finish)
	}
	// A lower limit, under the tolerance, defers nothing.
	lower := run(t, dir, whatif.Limits{MaxConnections: 5, MessagesPerHour: 100}, whatif.Limits{MaxConnections: 5, MessagesPerHour: 80}, opts())
	if lower.Proposed.Deferrals != 0 || lower.Proposed.Delivered != 300 {
		t.Errorf("lower: %+v", lower.Proposed)
	}
}

// TestReplayBounded: the replay stops at its bounds in count (messages,
// attempts), virtual time (horizon) and wall time (ctx), and says so.
func TestReplayBounded(t *testing.T) {
	dir := t.TempDir()
	campaign(t, dir, "touchy.test", "r", 300, 100, 8, false)
	lim := whatif.Limits{MaxConnections: 5, MessagesPerHour: 100}

	o := opts()
	o.MaxMessages = 40
	sr := run(t, dir, lim, lim, o)
	if sr.Messages != 40 || sr.Truncated != 260 || sr.Current.Delivered+sr.Current.Undelivered+sr.Current.Bounced != 40 {
		t.Errorf("max messages: %+v", sr)
	}
	// The recorded column covers the same 40; the model learns from all.
	if sr.Recorded.Delivered+sr.Recorded.Bounced+sr.Recorded.Undelivered != 40 || sr.Model.PerHour != 92 {
		t.Errorf("max messages: recorded %+v, model %+v", sr.Recorded, sr.Model)
	}

	o = opts()
	o.MaxAttempts = 25
	sr = run(t, dir, lim, lim, o)
	if sr.Current.Attempts != 25 || sr.Current.Undelivered != 275 || sr.Current.Stopped == "" {
		t.Errorf("max attempts: %+v", sr.Current)
	}

	o = opts()
	o.Until = base.Add(2 * time.Hour)
	o.Horizon = time.Minute
	slow := whatif.Limits{MaxConnections: 5, MessagesPerHour: 50}
	sr = run(t, dir, slow, slow, o)
	// About 200 messages recorded, 2 h of virtual time at 50/h.
	if sr.Messages < 150 || sr.Current.Delivered > 102 || sr.Current.Undelivered < 50 || sr.Current.Stopped == "" {
		t.Errorf("horizon: %d messages, %+v", sr.Messages, sr.Current)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := whatif.Run(ctx, dir, map[string]whatif.Limits{"r": lim}, nil, opts())
	if err == nil && (len(res.Sites) != 1 || res.Sites[0].Current.Stopped == "" || res.Sites[0].Current.Delivered == 300) {
		t.Errorf("cancelled: %+v", res.Sites)
	}
}

// TestNothingToReplay: a period or a site with no mail is an error that
// says so; a rule the configuration lost is named.
func TestNothingToReplay(t *testing.T) {
	dir := t.TempDir()
	campaign(t, dir, "bulk.test", "r", 10, 100, 0, false)
	lim := map[string]whatif.Limits{"r": {MaxConnections: 5}}
	o := opts()
	o.Site = "other.test"
	if _, err := whatif.Run(context.Background(), dir, lim, lim, o); !errors.Is(err, whatif.ErrNoMail) {
		t.Errorf("other site: %v", err)
	}
	if _, err := whatif.Run(context.Background(), dir, map[string]whatif.Limits{}, lim, opts()); err == nil {
		t.Error("a site under a rule the configuration lost was replayed")
	}
}

// TestConnectionBound: QuotaWait samples showed mail waiting on all 4
// connections at 60 an hour: a message holds a connection 4 min, and 6
// connections finish in about two thirds of the time.
func TestConnectionBound(t *testing.T) {
	dir := t.TempDir()
	campaign(t, dir, "wide.test", "r", 180, 60, 0, true)
	sr := run(t, dir, whatif.Limits{MaxConnections: 4}, whatif.Limits{MaxConnections: 6}, opts())
	if !sr.Model.ConnBound || sr.Model.Service != 4*time.Minute {
		t.Fatalf("model = %+v", sr.Model)
	}
	c, p := sr.Current, sr.Proposed
	t.Logf("recorded %+v\ncurrent %+v\nproposed %+v", sr.Recorded, c, p)
	if c.Delivered != 180 || p.Delivered != 180 || p.Deferrals != 0 {
		t.Fatalf("current %+v\nproposed %+v", c, p)
	}
	if d := c.Finish - sr.Recorded.Finish; d < -sr.Recorded.Finish/10 || d > sr.Recorded.Finish/10 {
		t.Errorf("current replay finishes in %s, the record in %s", c.Finish, sr.Recorded.Finish)
	}
	if r := float64(p.Finish) / float64(c.Finish); r < 0.6 || r > 0.75 {
		t.Errorf("proposed/current finish = %.2f (%s / %s), want about 2/3", r, p.Finish, c.Finish)
	}
}

// TestFromAdvice: the advisor's raise and lower change the named key of
// the named rule; other kinds change nothing.
func TestFromAdvice(t *testing.T) {
	cur := map[string]whatif.Limits{"a": {MaxConnections: 4, MessagesPerHour: 100}, "b": {MaxConnections: 10, MessagesPerHour: 600}}
	got := whatif.FromAdvice(cur, []advisor.Recommendation{
		{Kind: advisor.Raise, Rule: "a", Key: "messages_per_hour", From: 100, To: 150},
		{Kind: advisor.Raise, Rule: "a", Key: "max_connections", From: 4, To: 6},
		{Kind: advisor.Lower, Rule: "b", Key: "messages_per_hour", From: 600, To: 244},
		{Kind: advisor.Unreached, Rule: "b", Key: "messages_per_hour", From: 600},
		{Kind: advisor.Raise, Rule: "gone", Key: "messages_per_hour", To: 9},
	})
	if got["a"] != (whatif.Limits{MaxConnections: 6, MessagesPerHour: 150}) || got["b"] != (whatif.Limits{MaxConnections: 10, MessagesPerHour: 244}) || len(got) != 2 {
		t.Errorf("got %+v", got)
	}
	if cur["a"].MessagesPerHour != 100 {
		t.Error("current changed")
	}
}
