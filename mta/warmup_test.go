package mta_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/warmup"
)

// warmClock is the warm-up's clock: tests move it a day at a time.
type warmClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *warmClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *warmClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const warmDay = time.Hour // on the warm-up's own clock, moved by hand

// warmSetup: sources ip2 (127.0.0.2, warm) and ip3 (127.0.0.3, warming
// for rule "yahoo" on schedule) in pool "main"; withWarm false leaves ip2
// out of the pool.
func warmSetup(withWarm bool, schedule ...int) func(*config.Config) {
	return func(c *config.Config) {
		c.Sources = []config.Source{{Name: "ip2", IP: "127.0.0.2"}, {Name: "ip3", IP: "127.0.0.3"}}
		p := config.Pool{Name: "main", Sources: []config.PoolSource{{Source: "ip3"}}}
		if withWarm {
			p.Sources = append(p.Sources, config.PoolSource{Source: "ip2"})
		}
		c.Pools = []config.Pool{p}
		c.Delivery.DefaultPool = "main"
		c.MXRules = append(c.MXRules, rule("yahoo", "*.yahoo.test", "source", 4, 3, 0))
		c.Warmups = []config.Warmup{{Source: "ip3", Rule: "yahoo", Schedule: schedule}}
		c.ApplyDefaults()
	}
}

func warmHarness(t *testing.T, w *sim.World, clk *warmClock, dir string, mutate func(*config.Config)) *harness {
	t.Helper()
	cfg := testConfig(t, w, dir)
	mutate(cfg)
	h := &harness{t: t, world: w, cfg: cfg, opts: mta.Options{WarmupNow: clk.Now, WarmupDay: warmDay}}
	h.start()
	return h
}

func warmStatus(t *testing.T, h *harness) warmup.Status {
	t.Helper()
	st := h.m.Warmup()
	if len(st) != 1 {
		t.Fatalf("warm-up statuses: %+v", st)
	}
	return st[0]
}

// The warming source sends its day's volume and no more; the rest goes
// through the warm source of the pool. The receiving side counts by
// client IP.
func TestWarmupSpillsOverToWarmSource(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "ok"}, []string{"yahoo.test"}, "mx1.yahoo.test")
	if err != nil {
		t.Fatal(err)
	}
	clk := &warmClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	h := warmHarness(t, w, clk, t.TempDir(), warmSetup(true, 5, 10))
	h.sendMany(40, 4, func(i int) string { return fmt.Sprintf("u%d@yahoo.test", i) })
	waitDelivered(t, p, 40, 60*time.Second)
	by := p.Stats().DeliveredBy
	if by["127.0.0.3"] > 5 || by["127.0.0.2"] < 35 || by["127.0.0.2"]+by["127.0.0.3"] != 40 {
		t.Fatalf("delivered by source %v: the warming 127.0.0.3 may send 5, the warm 127.0.0.2 the rest", by)
	}
	if st := warmStatus(t, h); st.Sent != by["127.0.0.3"] || st.Limit != 5 {
		t.Fatalf("status %+v, the provider saw %d from 127.0.0.3", st, by["127.0.0.3"])
	}
	t.Logf("delivered by source: %v", by)
}

// With no warm source the mail waits with the warm-up status and its
// numbers; the next day (after a healthy one) frees it, a step up; a
// restart keeps the state.
func TestWarmupWaitsAdvancesAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "ok"}, []string{"yahoo.test"}, "mx1.yahoo.test")
	if err != nil {
		t.Fatal(err)
	}
	clk := &warmClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	h := warmHarness(t, w, clk, dir, warmSetup(false, 5, 10))
	h.sendMany(12, 2, func(i int) string { return fmt.Sprintf("u%d@yahoo.test", i) })
	waitDelivered(t, p, 5, 30*time.Second)
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "the warm-up status", func() bool {
		ex = h.m.Queue.Explain(context.Background(), "yahoo.test")
		return ex.Site != nil && ex.Site.ByStatus[queue.StatusWarmup] == 7
	})
	wt := ex.Site.Wait
	if wt == nil || wt.Status != queue.StatusWarmup || !strings.Contains(wt.Detail, "source ip3") ||
		!strings.Contains(wt.Detail, "5 of 5") || !wt.Until.Equal(clk.Now().Add(warmDay)) {
		t.Fatalf("wait %+v", wt)
	}
	if got := p.Delivered(); got != 5 {
		t.Fatalf("delivered %d while the volume is 5", got)
	}
	// A claim the warm-up refused put its job back: the running totals
	// still count it (they once lost one per refusal).
	if tot := h.m.Queue.Totals(); tot.Queued != 7 {
		t.Fatalf("totals say %d queued, 7 wait", tot.Queued)
	}
	// The day's health has heard the 5 deliveries (the delivery log's
	// subscribers run on their own).
	waitFor(t, 10*time.Second, "5 deliveries in the day's health", func() bool { return warmStatus(t, h).Today.Delivered == 5 })
	// The next day: step 2 (10 a day) frees the 7.
	clk.Add(warmDay)
	waitDelivered(t, p, 12, 30*time.Second)
	st := warmStatus(t, h)
	if st.Day != 2 || st.Step != 2 || st.Limit != 10 || st.Sent != 7 || len(st.LastDecisions) != 1 ||
		st.LastDecisions[0].Action != warmup.Advance || st.LastDecisions[0].Health.Delivered != 5 {
		t.Fatalf("day 2: %+v", st)
	}
	if by := p.Stats().DeliveredBy; by["127.0.0.3"] != 12 {
		t.Fatalf("by source %v", by)
	}
	h.stop()
	h2 := warmHarness(t, w, clk, dir, warmSetup(false, 5, 10))
	if st2 := warmStatus(t, h2); st2.Step != 2 || st2.Sent != 7 || st2.Day != 2 || len(st2.LastDecisions) != 1 {
		t.Fatalf("after restart: %+v", st2)
	}
}

// TestWarmupDashboard: the dashboard's warm-up panel shows the warming
// source with its day, step and today's count, as the API has them.
func TestWarmupDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("browser run")
	}
	b := browser{t: t, bin: findBrowser(t)}
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "ok"}, []string{"yahoo.test"}, "mx1.yahoo.test")
	if err != nil {
		t.Fatal(err)
	}
	clk := &warmClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	const token = "dashboard-warmup-token"
	h := warmHarness(t, w, clk, t.TempDir(), both(warmSetup(false, 5, 10), func(c *config.Config) { c.HTTP.Token = token }))
	h.sendMany(8, 2, func(i int) string { return fmt.Sprintf("u%d@yahoo.test", i) })
	waitDelivered(t, p, 5, 30*time.Second)
	addr := h.m.HTTPAddr()
	var list struct {
		Sources []warmup.Status `json:"sources"`
	}
	waitFor(t, 10*time.Second, "5 sent in the API", func() bool {
		getJSON(t, addr, token, "/api/v1/warmup", &list)
		return len(list.Sources) == 1 && list.Sources[0].Sent == 5
	})
	pg := b.dom("http://" + addr + "/#token=" + token)
	rows := pg.all("warmup-row")
	if len(rows) != 1 {
		t.Fatalf("%d warm-up rows, want 1", len(rows))
	}
	if s, _ := attr(rows[0], "data-source"); s != "ip3" {
		t.Errorf("row for %q, want ip3", s)
	}
	for id, want := range map[string]int64{"warmup-sent": 5, "warmup-day": 1} {
		if ns := within(rows[0], id); len(ns) != 1 || nodeNumber(t, "warm-up panel", ns[0]) != want {
			t.Errorf("%s is not %d", id, want)
		}
	}
	var shown int64
	for _, n := range pg.all("status-count") {
		if s, _ := attr(n, "data-status"); s == queue.StatusWarmup {
			v, _ := attr(n, "data-value")
			shown, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if shown != 3 {
		t.Errorf("the dashboard shows %d recipients as %q, want 3", shown, queue.StatusWarmup)
	}
}

// TestWarmupSimulatedWeek sends from a cold IP for a simulated week, over
// real SMTP, the receiving side deferring on some days: the schedule
// advances after healthy days, holds after an unhealthy one (deferral
// ratio over the threshold) and steps back after a bad one (over twice
// it), then reaches warm. The log shows the progression day by day.
func TestWarmupSimulatedWeek(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var calls, deferEvery atomic.Int64
	beh := sim.Behavior{Name: "yahoo", DataReply: func(int64) string {
		n := calls.Add(1)
		if k := deferEvery.Load(); k > 0 && n%k == 0 {
			return "451 4.3.0 try again later"
		}
		return ""
	}}
	p, err := w.AddProvider(beh, []string{"yahoo.test"}, "mx1.yahoo.test")
	if err != nil {
		t.Fatal(err)
	}
	clk := &warmClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	h := warmHarness(t, w, clk, t.TempDir(), both(warmSetup(false, 4, 8, 16, 32), func(c *config.Config) {
		c.FlowControl.Enabled = false // the deferrals are the warm-up's to judge here
	}))
	days := []struct {
		send       int
		deferEvery int64 // the provider defers every n-th attempt (0: none)
		deferred   int64 // deferrals that makes
		action     string
		step       int // 1-based, after the day
	}{
		{4, 0, 0, warmup.Advance, 2},
		{8, 0, 0, warmup.Advance, 3},
		{12, 6, 2, warmup.Hold, 3},    // 2 of 14 attempts deferred: 0.14, over 0.10
		{6, 2, 5, warmup.StepBack, 2}, // 5 of 11: 0.45, over twice 0.10
		{8, 0, 0, warmup.Advance, 3},
		{16, 0, 0, warmup.Advance, 4},
		{32, 0, 0, warmup.Advance, 5}, // past the schedule: warm
	}
	total := int64(0)
	for i, d := range days {
		calls.Store(0)
		deferEvery.Store(d.deferEvery)
		base := total
		h.sendMany(d.send, 2, func(j int) string { return fmt.Sprintf("d%d-u%d@yahoo.test", i+1, j) })
		total += int64(d.send)
		waitDelivered(t, p, total, 30*time.Second)
		waitFor(t, 10*time.Second, fmt.Sprintf("day %d's outcomes in its health", i+1), func() bool {
			td := warmStatus(t, h).Today
			return td.Delivered == total-base && td.Deferred == d.deferred
		})
		clk.Add(warmDay)
		st := warmStatus(t, h)
		last := st.LastDecisions[len(st.LastDecisions)-1]
		t.Logf("day %d: sent %d (limit %d), delivered %d, deferred %d (ratio %.2f): %s, step %d -> %d (%s)",
			i+1, last.Health.Sent, last.LimitWas, last.Health.Delivered, last.Health.Deferred, last.Health.DeferralRatio(),
			last.Action, last.From+1, last.To+1, last.Reason)
		if last.Action != d.action || st.Step != d.step {
			t.Fatalf("day %d: %s to step %d, want %s to step %d", i+1, last.Action, st.Step, d.action, d.step)
		}
	}
	if st := warmStatus(t, h); !st.Warm || st.Limit != -1 {
		t.Fatalf("after the week: %+v", st)
	}
	if by := p.Stats().DeliveredBy; by["127.0.0.3"] != total {
		t.Fatalf("by source %v, want all %d from the cold 127.0.0.3", by, total)
	}
}

// TestWarmupClusterSharesTheDay: two nodes on a real Redis send from the
// same warming source; together they send the day's volume once.
func TestWarmupClusterSharesTheDay(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "ok"}, []string{"yahoo.test"}, "mx1.yahoo.test")
	if err != nil {
		t.Fatal(err)
	}
	clk := &warmClock{t: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}
	node := func(name string) *harness {
		return warmHarness(t, w, clk, t.TempDir(), both(warmSetup(false, 6, 12), func(c *config.Config) {
			c.Cluster = config.Cluster{Redis: fmt.Sprintf("redis://127.0.0.1:%d/0", srv.Port), Node: name, LeaseTTL: config.Duration(5 * time.Second)}
		}))
	}
	a, b := node("warm-a"), node("warm-b")
	a.sendMany(8, 2, func(i int) string { return fmt.Sprintf("a%d@yahoo.test", i) })
	b.sendMany(8, 2, func(i int) string { return fmt.Sprintf("b%d@yahoo.test", i) })
	waitDelivered(t, p, 6, 30*time.Second)
	waitFor(t, 10*time.Second, "both nodes waiting on the warm-up", func() bool {
		for _, h := range []*harness{a, b} {
			ex := h.m.Queue.Explain(context.Background(), "yahoo.test")
			if ex.Site == nil || ex.Site.Wait == nil || ex.Site.Wait.Status != queue.StatusWarmup {
				return false
			}
		}
		return true
	})
	if got := p.Delivered(); got != 6 {
		t.Fatalf("two nodes delivered %d, the day's volume is 6", got)
	}
	if sa, sb := warmStatus(t, a), warmStatus(t, b); sa.Sent != 6 || sb.Sent != 6 || sa.Degraded || sb.Degraded {
		t.Fatalf("a %+v\nb %+v", sa, sb)
	}
	// The next day both judge it once (step 2: 12) and the 10 left go.
	clk.Add(warmDay)
	waitDelivered(t, p, 16, 30*time.Second)
	if sa, sb := warmStatus(t, a), warmStatus(t, b); sa.Step != 2 || sb.Step != 2 || sa.Sent != 10 {
		t.Fatalf("day 2: a %+v\nb %+v", sa, sb)
	}
}
