package queue

import (
	"testing"
	"time"

	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/sim"
)

// waitIdle waits (bounded) until a session of domain's site lingers.
func (f *fixture) waitIdle(t *testing.T, domain string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := f.q.findSite(domain); s != nil {
			s.mu.Lock()
			idle := s.idle
			s.mu.Unlock()
			if idle > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session of %s looking for a job", domain)
		}
		time.Sleep(time.Millisecond)
	}
}

// An idle connection gives up a connection quota another site needs: two
// sites share one rule-scoped connection; the first one's session lingers
// (here for an hour) after its message, and the second site's mail goes
// out at once instead of waiting for the linger to end.
func TestIdleConnectionYieldsQuota(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.yield.test"})
	rules, err := mxrule.New([]mxrule.Rule{{Name: "shared", Patterns: []string{"*"}, Scope: mxrule.ScopeRule, MaxConnections: 1}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := *f.q.config()
	cfg.Rules = rules
	f.q.SetConfig(&cfg)
	f.q.lingerFor = time.Hour // before any session starts

	f.send(t, "a@one.test")
	f.out.wait(t, 1)
	f.waitIdle(t, "one.test")
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

// contend tells every session lingering under the key and nobody else,
// and registrations leave nothing behind.
func TestYieldsRegistry(t *testing.T) {
	var y yields
	a := y.watch([]string{"k1", "k2"})
	b := y.watch([]string{"k2"})
	if y.contend("k3") {
		t.Error("contend on a key nobody holds reported a yield")
	}
	if !y.contend("k2") {
		t.Error("contend on k2 reported no yield")
	}
	for _, w := range []*yieldWatch{a, b} {
		select {
		case <-w.ch:
		default:
			t.Error("a session lingering under k2 was not told to yield")
		}
	}
	y.unwatch(a)
	y.unwatch(b)
	c := y.watch([]string{"k1"})
	y.unwatch(c)
	if y.contend("k1") {
		t.Error("an unwatched session was told to yield")
	}
	if len(y.byKey) != 0 {
		t.Errorf("registry keeps %d keys after every session left", len(y.byKey))
	}
}
