package queue

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/quota"
)

func testPool() []Source {
	return []Source{
		{Name: "ip1", IP: netip.MustParseAddr("10.0.0.1"), Weight: 1},
		{Name: "ip2", IP: netip.MustParseAddr("10.0.0.2"), Weight: 3},
		{Name: "ip3", IP: netip.MustParseAddr("10.0.0.3"), Weight: 1},
	}
}

// TestPlanPool: a held source leaves the pool, a source in backoff sends
// under its own cut limits, a due probe goes first with one connection and
// one message, and the others keep the rule's limits.
func TestPlanPool(t *testing.T) {
	s := newSite(New(&Config{}, Deps{}), "mx.example", nil)
	lim := limits{maxConns: 10, maxMsgs: 100, perHour: 1000}
	if p := s.planPool(lim, testPool(), nil); len(p.usable) != 3 || p.per != nil {
		t.Fatalf("all normal: %+v", p)
	}
	decs := []flow.SourceDecision{
		{Source: "10.0.0.1", Decision: flow.Decision{State: flow.Suspended, Hold: true, Until: time.Now().Add(time.Minute)}},
		{Source: "10.0.0.2", Decision: flow.Decision{State: flow.Backoff, ConnFactor: 0.5, RateFactor: 0.5}},
	}
	p := s.planPool(lim, testPool(), decs)
	if len(p.usable) != 2 || p.usable[0].Name != "ip2" || p.usable[1].Name != "ip3" || len(p.held) != 1 {
		t.Fatalf("plan %+v", p)
	}
	if l := p.per[netip.MustParseAddr("10.0.0.2")]; l.maxConns != 5 || l.perHour != 500 || l.flowState != flow.Backoff {
		t.Errorf("backoff source limits %+v", l)
	}
	if _, ok := p.per[netip.MustParseAddr("10.0.0.3")]; ok {
		t.Errorf("a normal source got its own limits")
	}
	decs[0].Probe = true
	p = s.planPool(lim, testPool(), decs)
	if len(p.probes) != 1 || p.probes[0].Name != "ip1" || len(p.held) != 0 {
		t.Fatalf("probe plan %+v", p)
	}
	if l := p.per[netip.MustParseAddr("10.0.0.1")]; l.maxConns != 1 || l.maxMsgs != 1 || !l.srcProbe {
		t.Errorf("probe limits %+v", l)
	}
	// A probe already open is not doubled.
	s.probingSrc = map[string]bool{"10.0.0.1": true}
	if p = s.planPool(lim, testPool(), decs); len(p.probes) != 0 || len(p.held) != 1 {
		t.Fatalf("second probe: %+v", p)
	}
}

// TestAcquireSkipsHeldSource: with one source suspended, every lease
// goes to the others, their weights re-normalised (ip2 weighs 3 of 4).
func TestAcquireSkipsHeldSource(t *testing.T) {
	fc := flow.New(flow.Config{}, flow.Options{})
	q := benchQueueNew(t)
	q.deps.Flow = fc
	q.deps.Quotas = quota.NewLocal(quota.RealClock())
	s := benchSites(q, 1)[0]
	now := time.Now()
	fc.Adopt(flow.Change{Time: now, Site: s.key, Source: "10.0.0.1", From: flow.Normal, To: flow.Suspended, Until: now.Add(time.Hour), Reason: "test"})
	cfg := benchRulesConfig(t, testPool(), 1000)
	lim := s.limits(cfg, q.flowCheck(s.key, now))
	plan := s.planPool(lim, testPool(), q.flowSources(s.key, now))
	counts := map[string]int{}
	for range 400 {
		lease, p, _, _, _, ok := s.acquire(cfg, lim, s.hosts, plan)
		if !ok {
			t.Fatal("no lease")
		}
		counts[p.src.Name]++
		lease.Release()
	}
	if counts["ip1"] != 0 {
		t.Fatalf("suspended source used %d times", counts["ip1"])
	}
	// ip2 leads the order 3 times in 4: about 300 of 400.
	if counts["ip2"] < 240 || counts["ip2"] > 360 {
		t.Errorf("weights not re-normalised over the healthy sources: %v", counts)
	}
	// Every source held: the wait names each source.
	fc.Adopt(flow.Change{Time: now, Site: s.key, Source: "10.0.0.2", From: flow.Normal, To: flow.Suspended, Until: now.Add(time.Hour), Reason: "test"})
	fc.Adopt(flow.Change{Time: now, Site: s.key, Source: "10.0.0.3", From: flow.Normal, To: flow.Suspended, Until: now.Add(time.Hour), Reason: "test"})
	all := fc.SourcesAll(s.key, now)
	d := heldDetail(all, s.planPool(lim, testPool(), q.flowSources(s.key, now)).held)
	for _, ip := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"} {
		if !strings.Contains(d, "source "+ip) {
			t.Errorf("held detail does not name %s: %s", ip, d)
		}
	}
}

// TestAcquireProbeFirst: a source whose probe is due is tried before the
// healthy sources. Behind them it got a connection only when they were all
// full, so under light traffic a suspended source never recovered (found
// when lingering sessions took the trickle of mail the test sent).
func TestAcquireProbeFirst(t *testing.T) {
	q := benchQueueNew(t)
	q.deps.Quotas = quota.NewLocal(quota.RealClock())
	s := benchSites(q, 1)[0]
	cfg := benchRulesConfig(t, testPool(), 1000)
	lim := limits{maxConns: 10, maxMsgs: 100, match: s.limits(cfg, q.flowCheck(s.key, time.Now())).match}
	decs := []flow.SourceDecision{{Source: "10.0.0.1", Decision: flow.Decision{State: flow.Suspended, Probe: true}}}
	for range 20 {
		plan := s.planPool(lim, testPool(), decs)
		lease, p, _, l, _, ok := s.acquire(cfg, lim, s.hosts, plan)
		if !ok {
			t.Fatal("no lease")
		}
		lease.Release()
		if p.src.Name != "ip1" || !l.srcProbe {
			t.Fatalf("took %s (probe %v) while ip1's probe was due", p.src.Name, l.srcProbe)
		}
	}
}
