package mta_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
)

// twoSources adds sources 127.0.0.10 and 127.0.0.11 in the default pool.
func twoSources(c *config.Config) {
	c.Sources = []config.Source{{Name: "s10", IP: "127.0.0.10"}, {Name: "s11", IP: "127.0.0.11"}}
	c.Pools = []config.Pool{{Name: "main", Sources: []config.PoolSource{{Source: "s10"}, {Source: "s11"}}}}
	c.Delivery.DefaultPool = "main"
}

func rule(name, mx, scope string, conns, perConn, perHour int) config.MXRule {
	return config.MXRule{Name: name, MX: config.Patterns{mx}, Scope: scope, MaxConnections: conns,
		MaxMessagesPerConnection: perConn, MessagesPerHour: perHour}
}

func withRules(rs ...config.MXRule) func(*config.Config) {
	return func(c *config.Config) {
		c.MXRules = append(c.MXRules, rs...)
		c.ApplyDefaults()
	}
}

func both(fs ...func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		for _, f := range fs {
			f(c)
		}
	}
}

// A slow provider keeps connections open long enough to overlap.
var slow = sim.Behavior{Name: "slow", StallAt: sim.AtDot, StallFor: 3 * time.Millisecond}

func TestMaxConnectionsScopeSource(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(slow, []string{"conn.test"}, "mx1.conn.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, both(twoSources, withRules(rule("three", "*.conn.test", "source", 3, 10, 0))))
	h.sendMany(500, 20, func(i int) string { return fmt.Sprintf("u%d@conn.test", i) })
	waitDelivered(t, p, 500, 60*time.Second)
	st := p.Stats()
	if len(st.MaxOpenBySource) != 2 {
		t.Fatalf("sources seen: %v, want both", st.MaxOpenBySource)
	}
	for src, n := range st.MaxOpenBySource {
		if n > 3 {
			t.Errorf("source %s had %d connections at once, limit 3", src, n)
		}
	}
	t.Logf("max open by source %v, total max %d, %d connections", st.MaxOpenBySource, st.MaxOpen, st.Connections)
}

func TestMaxConnectionsScopePath(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(slow, []string{"path.test"}, "mx1.path.test", "mx2.path.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, both(twoSources, withRules(rule("paths", "*.path.test", "path", 3, 10, 0))))
	h.sendMany(600, 20, func(i int) string { return fmt.Sprintf("u%d@path.test", i) })
	waitDelivered(t, p, 600, 60*time.Second)
	st := p.Stats()
	for path, n := range st.MaxOpenByPath {
		if n > 3 {
			t.Errorf("path %s had %d connections at once, limit 3", path, n)
		}
	}
	if len(st.MaxOpenByPath) != 4 {
		t.Errorf("paths used: %v, want all four (2 sources x 2 MX IPs)", st.MaxOpenByPath)
	}
	t.Logf("max open by path %v", st.MaxOpenByPath)
}

func TestMaxConnectionsScopeRule(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	// One provider behind two sites (each domain has its own MX host), so
	// that it counts the connections of both.
	p, err := w.AddProvider(slow, []string{"r1.test"}, "mx.r1.rule.test", "mx.r2.rule.test")
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetMX("r1.test", sim.MXRecord{Host: "mx.r1.rule.test", Pref: 10})
	w.DNS.SetMX("r2.test", sim.MXRecord{Host: "mx.r2.rule.test", Pref: 10})
	h := newHarness(t, w, both(twoSources, withRules(rule("whole", "*.rule.test", "rule", 3, 10, 0))))
	// Two sites and two sources: the rule's 3 connections are shared by all.
	h.sendMany(600, 20, func(i int) string { return fmt.Sprintf("u%d@r%d.test", i, 1+i%2) })
	waitDelivered(t, p, 600, 60*time.Second)
	st := p.Stats()
	if st.MaxOpen > 3 {
		t.Fatalf("%d connections at once across sites and sources, rule allows 3", st.MaxOpen)
	}
	if len(st.MaxOpenByPath) < 3 {
		t.Errorf("paths used: %v, want both sites and sources", st.MaxOpenByPath)
	}
	t.Logf("max open %d; by path %v", st.MaxOpen, st.MaxOpenByPath)
}

func TestMaxMessagesPerConnection(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "fast"}, []string{"mpc.test"}, "mx.mpc.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, withRules(rule("five", "*.mpc.test", "source", 2, 5, 0)))
	h.sendMany(500, 20, func(i int) string { return fmt.Sprintf("u%d@mpc.test", i) })
	waitDelivered(t, p, 500, 60*time.Second)
	st := p.Stats()
	if st.MaxMsgsPerConn > 5 {
		t.Fatalf("a connection carried %d messages, limit 5", st.MaxMsgsPerConn)
	}
	if st.MaxOpen > 2 {
		t.Fatalf("%d connections at once, limit 2", st.MaxOpen)
	}
	if st.Connections < 100 {
		t.Fatalf("%d connections for 500 messages at 5 per connection", st.Connections)
	}
}

// messages_per_hour = 7200 over a 35 s run: any 30 s window holds at most
// 7200×30/3600 + burst = 70 arrivals, and the rate is at least 90% of the
// quota. The quota paces one message per emission interval (0.5 s here), so
// 30 s at 7200/h checks what 60 s at 3600/h would, with the same counts, in
// half the time.
func TestMessagesPerHour(t *testing.T) {
	if testing.Short() {
		t.Skip("a 35 s run")
	}
	t.Parallel()
	const perHour, win = 7200, 30 * time.Second
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "rate"}, []string{"rate.test"}, "mx.rate.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, withRules(rule("hourly", "*.rate.test", "source", 5, 100, perHour)))
	start := time.Now()
	h.sendMany(150, 10, func(i int) string { return fmt.Sprintf("u%d@rate.test", i) })
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "hourly quota status", func() bool {
		h.api("GET", "/api/v1/explain?domain=rate.test", &ex)
		return ex.Site != nil && ex.Site.Wait != nil && ex.Site.Wait.Status == queue.StatusHourlyQuota
	})
	if ex.Site.Wait.Limit != perHour || ex.Site.Wait.Until.IsZero() || !strings.Contains(ex.Site.Wait.Detail, fmt.Sprintf("%d messages per hour", perHour)) {
		t.Fatalf("hourly wait lacks its numbers: %+v", ex.Site.Wait)
	}
	run := win + 5*time.Second
	waitFor(t, run+5*time.Second, "35 s of sending", func() bool { return time.Since(start) >= run })
	st := p.Stats()
	burst := quota.Burst(perHour)
	inWin := int(perHour * win / time.Hour)
	maxW := sim.MaxInWindow(st.Arrivals, win)
	if maxW > inWin+burst {
		t.Fatalf("%d arrivals in a %s window, quota allows %d + burst %d", maxW, win, inWin, burst)
	}
	// In the first window after the first arrival the rate must be near quota.
	first := st.Arrivals[0]
	n := 0
	for _, a := range st.Arrivals {
		if a.Sub(first) < win {
			n++
		}
	}
	if n*10 < inWin*9 {
		t.Fatalf("only %d arrivals in the first %s, want at least 90%% of %d", n, win, inWin)
	}
	t.Logf("max %d arrivals in any %s window (limit %d); %d in the first %s", maxW, win, inWin+burst, n, win)
}

// While mail is held by a connection quota, explain and the API say so with
// the numbers.
func TestExplainConnectionQuota(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "stall", StallAt: sim.AtDot, StallFor: time.Second}, []string{"held.test"}, "mx.held.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, withRules(rule("one", "*.held.test", "source", 1, 1, 0)))
	h.sendMany(4, 4, func(i int) string { return fmt.Sprintf("u%d@held.test", i) })
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "connection quota status", func() bool {
		h.api("GET", "/api/v1/explain?address=u3@held.test", &ex)
		return ex.Site != nil && ex.Site.Wait != nil && ex.Site.Wait.Status == queue.StatusConnQuota
	})
	wt := ex.Site.Wait
	if wt.Rule != "one" || wt.Limit != 1 || wt.InUse != 1 || !strings.Contains(wt.Detail, "1 of 1") {
		t.Fatalf("wait lacks numbers: %+v", wt)
	}
	if !strings.HasPrefix(ex.Verdict, queue.StatusConnQuota) {
		t.Fatalf("verdict %q", ex.Verdict)
	}
	if ex.Site.ByStatus[queue.StatusConnQuota] == 0 {
		t.Fatalf("no recipient counted under the status: %v", ex.Site.ByStatus)
	}
	found := false
	for _, r := range ex.Recipients {
		if r.Recipient == "u3@held.test" && (r.Status == queue.StatusConnQuota || r.Status == queue.StatusInFlight) {
			found = true
		}
	}
	if !found {
		t.Fatalf("recipient view: %+v", ex.Recipients)
	}
	waitDelivered(t, p, 4, 30*time.Second)
}

func TestTLSRequiredWithoutSTARTTLSDefers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "plain"}, []string{"plain.test"}, "mx.plain.test")
	if err != nil {
		t.Fatal(err)
	}
	r := rule("must-tls", "*.plain.test", "source", 2, 10, 0)
	r.TLS = "required"
	h := newHarness(t, w, withRules(r))
	if err := h.send("s@penstock.test", []string{"a@plain.test"}, message("s@penstock.test", "a@plain.test", "tls", 300)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "transient failure", func() bool { return countType(h.records(), events.TransientFailure) > 0 })
	for _, rec := range h.records() {
		if rec.Type == events.TransientFailure {
			if !strings.Contains(rec.Text, "STARTTLS") {
				t.Fatalf("status does not say why: %+v", rec)
			}
			break
		}
	}
	if st := p.Stats(); st.Delivered != 0 {
		t.Fatal("delivered in clear text despite tls = required")
	}
}

func TestTLSDisabledNeverStartsTLS(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "tls", STARTTLS: true}, []string{"tls.test"}, "mx.tls.test")
	if err != nil {
		t.Fatal(err)
	}
	r := rule("no-tls", "*.tls.test", "source", 2, 10, 0)
	r.TLS = "disabled"
	h := newHarness(t, w, withRules(r))
	h.sendMany(5, 1, func(i int) string { return fmt.Sprintf("u%d@tls.test", i) })
	waitDelivered(t, p, 5, 10*time.Second)
	if st := p.Stats(); st.TLSConns != 0 {
		t.Fatalf("%d STARTTLS with tls = disabled", st.TLSConns)
	}
	// And opportunistic (the default) uses it when offered.
	w2 := newWorld(t)
	p2, _ := w2.AddProvider(sim.Behavior{Name: "tls2", STARTTLS: true}, []string{"tls.test"}, "mx.tls.test")
	h2 := newHarness(t, w2, nil)
	h2.sendMany(2, 1, func(i int) string { return fmt.Sprintf("u%d@tls.test", i) })
	waitDelivered(t, p2, 2, 10*time.Second)
	if st := p2.Stats(); st.TLSConns == 0 {
		t.Fatal("opportunistic TLS did not use STARTTLS")
	}
	for _, rec := range h2.records() {
		if rec.Type == events.Delivery && !rec.TLS {
			t.Fatalf("delivery record without tls: %+v", rec)
		}
	}
}

// A reload applies new rules; a bad one is refused and the old rules stay.
func TestReload(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, withRules(rule("before", "*.reload.test", "source", 2, 10, 0)))
	good := *h.cfg
	good.MXRules = []config.MXRule{rule("after", "*.reload.test", "source", 7, 10, 0)}
	good.ApplyDefaults()
	if err := h.m.Reload(&good); err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.MXRules = []config.MXRule{rule("broken", "*.reload.test", "sideways", 7, 10, 0)}
	if err := h.m.Reload(&bad); err == nil {
		t.Fatal("a rule with scope sideways was accepted")
	}
	if got := h.m.Config().MXRules[0].Name; got != "after" {
		t.Fatalf("running rules are %q after a refused reload", got)
	}
}

// A reload names each changed key that waits for a restart (DNS settings
// used to keep their old values while the reload said it succeeded).
func TestReloadNamesRestartKeys(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, nil)
	next := *h.cfg
	next.DNS.Nameservers = []string{"127.0.0.1:1"}
	next.DNS.Timeout = config.Duration(time.Second)
	next.Delivery.Retry = []config.Duration{config.Duration(time.Minute)} // live
	if err := h.m.Reload(&next); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(h.m.RestartNeeded(), ",")
	if got != "dns.nameservers,dns.timeout" {
		t.Fatalf("restart needed for %q, want dns.nameservers,dns.timeout", got)
	}
}
