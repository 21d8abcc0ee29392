package queue

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// waitLending waits (bounded) until a connection lingers where another
// site's job can be lent to it.
func (f *fixture) waitLending(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f.q.yields.anyIdle() {
		if time.Now().After(deadline) {
			t.Fatal("no connection lingers to take another site's job")
		}
		time.Sleep(time.Millisecond)
	}
}

// connsHeld lists the connection leases held in the fixture's quota store.
func (f *fixture) connsHeld() []string {
	var out []string
	for _, u := range f.q.deps.Quotas.(*quota.Local).Snapshot() {
		if u.Kind == quota.KindConn && u.InUse > 0 {
			out = append(out, fmt.Sprintf("%s=%d", u.Key, u.InUse))
		}
	}
	return out
}

// secondSite sends a message to two.test while one.test's connection
// lingers, and checks it was delivered over wantConns connections in all,
// with wantShared handovers.
func (f *fixture) secondSite(t *testing.T, wantConns int64, wantShared uint64, why string) {
	t.Helper()
	f.lingeringOne(t)
	f.waitLending(t)
	f.send(t, "b@two.test")
	if out := f.out.wait(t, 2); !out[1].Delivered {
		t.Fatalf("two.test: %+v, want delivered", out[1])
	}
	if st := f.prov.Stats(); st.Connections != wantConns {
		t.Errorf("provider saw %d connections, want %d (%s)", st.Connections, wantConns, why)
	}
	if n := f.q.SessionsShared(); n != wantShared {
		t.Errorf("SessionsShared = %d, want %d", n, wantShared)
	}
}

// Two domains with MX names of their own at one address (a hosting
// provider's shape): the idle connection of the first carries the
// second's mail and then belongs to it, lease and all, and back again
// (before, each site dialled its own connection, and with a receiver
// serving few sessions, closed the other's).
func TestIdleSessionTakesAnotherSitesJob(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.shared.test"})
	recs, stop := f.q.deps.Log.Subscribe(64)
	defer stop()
	f.secondSite(t, 1, 1, "two.test's mail on one.test's idle connection")
	// The connection is two.test's now: its lease, its active session.
	f.waitIdle(t, "two.test")
	held := f.connsHeld()
	if len(held) != 1 || !strings.Contains(held[0], "mx.two.test") {
		t.Errorf("connection leases held %v, want one, two.test's (one.test's released)", held)
	}
	if s := f.q.findSite("one.test"); s != nil {
		s.mu.Lock()
		active := s.active
		s.mu.Unlock()
		if active != 0 {
			t.Errorf("one.test still counts %d active sessions after its connection went to two.test", active)
		}
	}

	// The next message of one.test rides the same connection back.
	f.waitLending(t)
	f.send(t, "c@one.test")
	if out := f.out.wait(t, 3); !out[2].Delivered {
		t.Fatalf("one.test again: %+v, want delivered", out[2])
	}
	if st := f.prov.Stats(); st.Connections != 1 || st.Delivered != 3 {
		t.Errorf("provider: %d delivered over %d connections, want 3 over 1", st.Delivered, st.Connections)
	}
	if n := f.q.SessionsShared(); n != 2 {
		t.Errorf("SessionsShared = %d, want 2", n)
	}
	// The delivery log says so: the three transactions' places on the
	// one connection (Postfix's conn_use).
	use := map[string]int{}
	deadline := time.After(10 * time.Second)
	for len(use) < 3 {
		select {
		case r := <-recs:
			if r.Type == events.Delivery {
				use[r.Recipient] = r.ConnUse
			}
		case <-deadline:
			t.Fatalf("delivery records seen: %v, want 3", use)
		}
	}
	if want := map[string]int{"a@one.test": 1, "b@two.test": 2, "c@one.test": 3}; !maps.Equal(use, want) {
		t.Errorf("conn_use by recipient %v, want %v", use, want)
	}
}

// stsTesting gives every domain in it an MTA-STS policy in testing mode.
type stsTesting map[string]bool

func (p stsTesting) Policy(_ context.Context, domain string) tlspolicy.Policy {
	if p[domain] {
		return tlspolicy.Policy{Source: tlspolicy.SourceSTS, Mode: tlspolicy.ModeTesting, MX: []string{"mx." + domain}}
	}
	return tlspolicy.Policy{Source: tlspolicy.SourceNone, Mode: tlspolicy.ModeNone}
}

// A site whose domain has an MTA-STS policy checks its own MX host name
// on a connection of its own: it never takes one made for another name.
func TestPolicySiteDialsItsOwnConnection(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.shared.test"})
	f.q.deps.TLSPolicy = stsTesting{"two.test": true}
	f.secondSite(t, 2, 0, "two.test dials its own")
}

// A site flow control holds borrows nothing: its runner claims no job,
// so none is lent, and the mail waits with the hold's status.
func TestHeldSiteBorrowsNoConnection(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.shared.test"})
	fl := &holdFlow{}
	f.q.deps.Flow = fl
	f.lingeringOne(t)
	f.waitLending(t)
	fl.hold.Store(true)
	f.send(t, "b@two.test")
	f.waitStatus(t, "two.test", StatusFlowControl, 1)
	if n := f.q.SessionsShared(); n != 0 {
		t.Errorf("SessionsShared = %d, want 0 (two.test is held)", n)
	}
	if st := f.prov.Stats(); st.Delivered != 1 {
		t.Errorf("provider: %d delivered, want 1 (two.test's held)", st.Delivered)
	}
}

// Many sites on one address, with sessions lingering briefly: every
// message is delivered once, connections are shared, and when all is
// done no session is counted and no lease is held (the accounting of
// handovers racing lingers' ends, the queue's close and each other),
// under the shipped default rule (leases handed over) and under a
// rule-scoped quota of 3 connections (jobs riding a held lease).
func TestSharedSessionsLeaveNothingBehind(t *testing.T) {
	for name, own := range map[string][]mxrule.Rule{
		"default":    nil,
		"rule-scope": {{Name: "three", Patterns: []string{"*.test"}, Scope: mxrule.ScopeRule, MaxConnections: 3}},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixtureRules(t, sim.Behavior{Name: "mx.shared.test"}, own...)
			f.q.lingerFor = 50 * time.Millisecond
			const domains, each = 40, 5
			n := 0
			for round := range each {
				for d := range domains {
					f.send(t, fmt.Sprintf("u%d@d%d.test", round, d))
					n++
				}
			}
			out := f.out.wait(t, n)
			for i, o := range out {
				if !o.Delivered {
					t.Fatalf("outcome %d: %+v, want delivered", i, o)
				}
			}
			waitClosed(t, f.prov)
			st := f.prov.Stats()
			if st.Delivered != int64(n) {
				t.Errorf("provider: %d delivered, want %d", st.Delivered, n)
			}
			if own != nil && st.MaxOpen > 3 {
				t.Errorf("provider saw %d connections at once, the rule allows 3", st.MaxOpen)
			}
			t.Logf("%d messages of %d sites over %d connections (at most %d at once), %d handovers",
				n, domains, st.Connections, st.MaxOpen, f.q.SessionsShared())
			// A session releases its lease just after its QUIT closes the
			// connection: wait (bounded) for the last ones.
			var left []string
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if left = f.sessionsLeft(); len(left) == 0 {
					break
				}
			}
			if len(left) != 0 {
				t.Errorf("10 s after every connection closed: %v", left)
			}
		})
	}
}

// A quota met under a key both sites count under (scope rule or path,
// max_connections 1): the second site's job rides the first site's idle
// connection under the lease it holds, instead of that connection closing
// for the second site to dial (before: two connections, one after the
// other).
func TestHeldQuotaKeyCarriesAnotherSitesJob(t *testing.T) {
	for _, scope := range []mxrule.Scope{mxrule.ScopeRule, mxrule.ScopePath} {
		t.Run(scope.String(), func(t *testing.T) {
			f := newFixtureRules(t, sim.Behavior{Name: "mx.shared.test"},
				mxrule.Rule{Name: "one", Patterns: []string{"*.test"}, Scope: scope, MaxConnections: 1})
			f.secondSite(t, 1, 1, "the quota's one connection carried both")
			f.waitIdle(t, "two.test")
			if held := f.connsHeld(); len(held) != 1 || !strings.HasSuffix(held[0], "=1") {
				t.Errorf("connection leases held %v, want the one key, once", held)
			}
			for _, d := range []string{"one.test", "two.test"} {
				if s := f.q.findSite(d); s != nil {
					s.mu.Lock()
					active := s.active
					s.mu.Unlock()
					if want := map[string]int{"one.test": 0, "two.test": 1}[d]; active != want {
						t.Errorf("%s counts %d active sessions, want %d", d, active, want)
					}
				}
			}
		})
	}
}

// sessionsLeft lists the connection leases still held and the sites that
// still count sessions.
func (f *fixture) sessionsLeft() []string {
	left := f.connsHeld()
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	for key, s := range f.q.sites {
		s.mu.Lock()
		if s.active != 0 || s.idle != 0 {
			left = append(left, fmt.Sprintf("site %s: %d active, %d idle", key, s.active, s.idle))
		}
		s.mu.Unlock()
	}
	return left
}

// Under a rule with tls "verify", a connection carries another site's mail
// only when the certificate it verified names that site's MX host too: one
// for mx.one.test alone says nothing of mx.two.test, whose own connection
// then fails verification; one naming both carries both.
func TestVerifiedConnectionCarriesOnlyNamesItsCertificateHolds(t *testing.T) {
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names     []string
		delivered bool
		conns     int64
		shared    uint64
	}{
		{[]string{"mx.one.test"}, false, 2, 0},
		{[]string{"mx.one.test", "mx.two.test"}, true, 1, 1},
	} {
		t.Run(strings.Join(tc.names, ","), func(t *testing.T) {
			leaf, err := ca.Leaf(tc.names, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			f := newFixtureRules(t, sim.Behavior{Name: "mx.verify.test", STARTTLS: true, Certificate: &leaf},
				mxrule.Rule{Name: "verify", Patterns: []string{"*.test"}, TLS: "verify"})
			f.q.deps.TLSConfig = &tls.Config{RootCAs: ca.Pool()}
			f.lingeringOne(t)
			f.waitLending(t)
			f.send(t, "b@two.test")
			if out := f.out.wait(t, 2); out[1].Delivered != tc.delivered {
				t.Errorf("two.test: %+v, want delivered %v", out[1], tc.delivered)
			}
			if st := f.prov.Stats(); st.Connections != tc.conns {
				t.Errorf("provider saw %d connections, want %d", st.Connections, tc.conns)
			}
			if n := f.q.SessionsShared(); n != tc.shared {
				t.Errorf("SessionsShared = %d, want %d", n, tc.shared)
			}
		})
	}
}
