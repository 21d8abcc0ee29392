package queue

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/sim"
)

// waitSite waits, bounded, until domain's site exists and ok holds of it
// (called with the site's lock held), and returns the site; it fails the
// test saying what never came.
func (f *fixture) waitSite(t *testing.T, domain, what string, ok func(s *site) bool) *site {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := f.q.findSite(domain); s != nil {
			s.mu.Lock()
			yes := ok(s)
			s.mu.Unlock()
			if yes {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never came", domain, what)
		}
		time.Sleep(time.Millisecond) // a bounded poll of the queue's own state
	}
}

// waitIdle waits (bounded) until a session of domain's site lingers.
func (f *fixture) waitIdle(t *testing.T, domain string) {
	t.Helper()
	f.waitSite(t, domain, "a session looking for a job", func(s *site) bool { return s.idle > 0 })
}

// unsharedRule gives two.test an MX rule of its own, so that a connection
// of one.test (under the shipped default rule) never carries its mail.
var unsharedRule = mxrule.Rule{Name: "two", Patterns: []string{"mx.two.test"}}

// lingeringOne sends a message to one.test and waits until its session
// idles on the connection, which it keeps for an hour (set before any
// session starts) unless asked to close.
func (f *fixture) lingeringOne(t *testing.T) {
	t.Helper()
	f.q.lingerFor = time.Hour
	f.send(t, "a@one.test")
	f.out.wait(t, 1)
	f.waitIdle(t, "one.test")
}

// An idle connection gives up a connection quota another site needs: two
// sites share one rule-scoped connection; the first one's session lingers
// (here for an hour) after its message, and the second site's mail goes
// out at once instead of waiting for the linger to end. The second site's
// domain has an MTA-STS policy, so it cannot ride the first one's
// connection (share.go) and needs one of its own.
func TestIdleConnectionYieldsQuota(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.yield.test"})
	f.q.deps.TLSPolicy = stsTesting{"two.test": true}
	rules, err := mxrule.New([]mxrule.Rule{{Name: "shared", Patterns: []string{"*"}, Scope: mxrule.ScopeRule, MaxConnections: 1}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := *f.q.config()
	cfg.Rules = rules
	f.q.SetConfig(&cfg)
	f.lingeringOne(t)
	f.send(t, "b@two.test")
	out := f.out.wait(t, 2)
	for i, o := range out {
		if !o.Delivered {
			t.Errorf("outcome %d: %+v, want delivered", i, o)
		}
	}
	if st := f.prov.Stats(); st.Connections != 2 || st.MaxOpen != 1 {
		t.Errorf("provider saw %d connections, at most %d at once; want 2, 1 (the rule allows one)", st.Connections, st.MaxOpen)
	}
}

// contend tells one idle connection of another site holding the key to
// close, and nobody else; registrations leave nothing behind.
func TestYieldsContend(t *testing.T) {
	var y yields
	own, other := &site{key: "own"}, &site{key: "other"}
	busy := y.watch(other, []string{"k1", "k2"})
	mine := y.watch(own, []string{"k2"})
	idle1 := y.watch(other, []string{"k2"})
	idle2 := y.watch(other, []string{"k2"})
	y.setIdle(mine, true)
	y.setIdle(idle1, true)
	y.setIdle(idle2, true)
	told := func(w *yieldWatch) bool {
		select {
		case <-w.ch:
			return true
		default:
			return false
		}
	}
	if y.contend("k3", own) {
		t.Error("contend on a key nobody holds reported a yield")
	}
	if !y.contend("k2", own) {
		t.Fatal("contend on k2 found no idle connection of another site")
	}
	if told(busy) || told(mine) || told(idle1) == told(idle2) {
		t.Errorf("told: busy %v, own site %v, idle %v and %v; want exactly one idle connection of the other site",
			told(busy), told(mine), told(idle1), told(idle2))
	}
	if !y.contend("k2", own) || !told(idle1) || !told(idle2) {
		t.Error("a second refusal did not reach the other idle connection")
	}
	if y.contend("k2", own) {
		t.Error("a third refusal found an idle connection; only the refusing site's own is left")
	}
	for _, w := range []*yieldWatch{busy, mine, idle1, idle2} {
		y.unwatch(w)
	}
	if len(y.byKey) != 0 {
		t.Errorf("registry keeps %d keys after every connection left", len(y.byKey))
	}
}

// holdFlow is flow control that holds every site once hold is set.
type holdFlow struct{ hold atomic.Bool }

func (h *holdFlow) Check(site string, now time.Time) flow.Decision { return h.Peek(site, now) }
func (h *holdFlow) Peek(string, time.Time) flow.Decision {
	if h.hold.Load() {
		return flow.Decision{State: flow.Suspended, Hold: true, Detail: "held by the test"}
	}
	return flow.Decision{State: flow.Normal, ConnFactor: 1, RateFactor: 1}
}
func (h *holdFlow) Holds(site string, now time.Time) bool              { return h.Peek(site, now).Hold }
func (h *holdFlow) Record(flow.Event)                                  {}
func (h *holdFlow) Reset(string)                                       {}
func (h *holdFlow) Local() (bool, flow.LocalProblem)                   { return false, flow.LocalProblem{} }
func (h *holdFlow) Sources(string, time.Time) []flow.SourceDecision    { return nil }
func (h *holdFlow) SourcesAll(string, time.Time) []flow.SourceDecision { return nil }
func (h *holdFlow) TakeProbe(string, string, time.Time) bool           { return false }

// A lingering session claims no job of a site flow control held while it
// idled: it closes, and the mail waits as the runner's check says (before,
// the idle connection sent it: a hold stopped a session only after a
// message).
func TestLingeringSessionStopsWhenHeld(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.hold.test"})
	fl := &holdFlow{}
	f.q.deps.Flow = fl
	f.q.lingerFor = time.Hour // before any session starts

	f.send(t, "a@hold.test")
	f.out.wait(t, 1)
	f.waitIdle(t, "hold.test")
	fl.hold.Store(true)
	f.send(t, "b@hold.test")
	waitClosed(t, f.prov) // the lingering connection, after the hold
	f.waitStatus(t, "hold.test", StatusFlowControl, 1)
	if st := f.prov.Stats(); st.Delivered != 1 || st.Connections != 1 {
		t.Errorf("provider: %d delivered over %d connections; want 1 over 1 (b held)", st.Delivered, st.Connections)
	}
}

// A new connection to an MX host resumes the TLS session of the last one
// (before, every connection made a full handshake).
func TestTLSSessionResumed(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.resume.test", STARTTLS: true})
	f.q.lingerFor = 0 // each message on its own connection
	for i := range 3 {
		f.send(t, fmt.Sprintf("u%d@resume.test", i))
		f.out.wait(t, i+1)
		waitClosed(t, f.prov)
	}
	if st := f.prov.Stats(); st.Connections != 3 || st.TLSConns != 3 || st.TLSResumed != 2 {
		t.Errorf("provider: %d connections, %d over TLS, %d resumed; want 3, 3, 2", st.Connections, st.TLSConns, st.TLSResumed)
	}
}

// waitClosed waits (bounded) until the provider has no connection open.
func waitClosed(t *testing.T, p *sim.Provider) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().OpenNow > 0 {
		if time.Now().After(deadline) {
			t.Fatal("a connection stayed open")
		}
		time.Sleep(time.Millisecond)
	}
}

// A receiver serving its limit of sessions leaves a new connection in its
// listen queue without a greeting (smtp-sink at -m, a server whose
// processes are all busy). When those sessions are our own idle ones of
// other sites on the same address, the new connection asks them to close
// instead of waiting for their linger (an hour here; before, the second
// message waited for it and the test timed out). The two sites match
// different MX rules, so the idle connection cannot take the other's
// mail (share.go).
func TestStalledGreetingClosesIdleConnectionsToTheAddress(t *testing.T) {
	f := newFixtureRules(t, sim.Behavior{Name: "mx.full.test", MaxSessions: 1}, unsharedRule)
	f.lingeringOne(t)
	start := time.Now()
	f.send(t, "b@two.test")
	out := f.out.wait(t, 2)
	for i, o := range out {
		if !o.Delivered {
			t.Errorf("outcome %d: %+v, want delivered", i, o)
		}
	}
	st := f.prov.Stats()
	if st.Waited != 1 || st.Connections != 2 || st.MaxOpen != 1 {
		t.Errorf("provider: %d connections waited for a session, %d served, at most %d at once; want 1, 2, 1",
			st.Waited, st.Connections, st.MaxOpen)
	}
	if took := time.Since(start); took < greetPatience {
		t.Errorf("delivered after %v, before the greeting patience (%v) ran out: the idle connection closed too early", took, greetPatience)
	}
}

// nudge asks nothing at once of a receiver not known to be full, one idle
// connection each time its interval runs out (marking the receiver full),
// and, while it counts as full, one at once; a full mark lapses.
func TestYieldsNudge(t *testing.T) {
	var y yields
	own, other := &site{key: "own"}, &site{key: "other"}
	var ws []*yieldWatch
	for range 3 {
		w := y.watch(other, []string{"addr|192.0.2.1"})
		y.setIdle(w, true)
		ws = append(ws, w)
	}
	told := func() (n int) {
		for _, w := range ws {
			select {
			case <-w.ch:
				n++
			default:
			}
		}
		return n
	}
	stop := y.nudge("addr|192.0.2.1", own, time.Hour)
	stop()
	if n := told(); n != 0 {
		t.Fatalf("a nudge of a receiver not known to be full closed %d idle connections at once", n)
	}
	// The interval runs out while the greeting is still missing.
	stop = y.nudge("addr|192.0.2.1", own, time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); told() < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	stop()
	if n := told(); n < 2 {
		t.Fatalf("a stalled greeting closed %d idle connections in 10 s, want one per interval", n)
	}
	if !y.isFull("addr|192.0.2.1", time.Now()) {
		t.Fatal("a receiver that kept a greeting waiting is not marked full")
	}
	n := told()
	stop = y.nudge("addr|192.0.2.1", own, time.Hour)
	stop()
	if told() != min(n+1, 3) {
		t.Errorf("a new connection to a full receiver closed %d idle connections at once, want 1", told()-n)
	}
	if y.isFull("addr|192.0.2.1", time.Now().Add(fullFor+time.Second)) {
		t.Error("the full mark does not lapse")
	}
}

// A receiver that refuses a connection at its greeting ("421 Too many
// connections", as Postfix's per-client limit says it) while one of our
// idle connections of another site is open to it: that one closes, the
// receiver counts as full, and the refused connection is tried again
// (before, the message was deferred to its retry, an hour here, and the
// idle connection stayed). As above, the sites cannot share a connection.
func TestRefusedGreetingClosesAnIdleConnectionToTheAddress(t *testing.T) {
	f := newFixtureRules(t, sim.Behavior{Name: "mx.percap.test", MaxConnsPerIP: 1}, unsharedRule)
	f.lingeringOne(t)
	f.send(t, "b@two.test")
	out := f.out.wait(t, 2)
	if !out[1].Delivered {
		t.Errorf("second message: %+v, want delivered on the second try", out[1])
	}
	// The sim counts a refused connection as open until it hangs up.
	if st := f.prov.Stats(); st.RejectedConns != 1 || st.Connections != 3 || st.MaxOpen != 2 {
		t.Errorf("provider: %d refused, %d connections, at most %d at once; want 1, 3, 2", st.RejectedConns, st.Connections, st.MaxOpen)
	}
	if !f.q.yields.isFull(addrKey(netip.MustParseAddr("127.0.0.1")), time.Now()) {
		t.Error("a receiver that refused at the greeting does not count as full")
	}
}

// With none of ours to close, a refusal at the greeting stands: the
// message waits for its retry.
func TestRefusedGreetingWithoutIdleConnectionsStands(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.percap.test", Greeting: "421 4.7.0 Try later"})
	f.send(t, "a@one.test")
	if out := f.out.wait(t, 1); out[0].Delivered || out[0].Final {
		t.Errorf("outcome %+v, want deferred", out[0])
	}
	if st := f.prov.Stats(); st.Connections != 1 {
		t.Errorf("provider saw %d connections, want 1 (no second try)", st.Connections)
	}
}
