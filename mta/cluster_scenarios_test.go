package mta_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
)

// startCluster starts a redis-server and three node processes n1, n2, n3
// (sources 127.0.0.11-13), and waits until all share the quotas.
func startCluster(t *testing.T, w *sim.World, scenario string) (*redistest.Server, []*clusterNode) {
	t.Helper()
	srv := redistest.Start(t)
	e := clusterEnv{world: w, redisURL: srv.URL(), scenario: scenario}
	dir := t.TempDir()
	var nodes []*clusterNode
	for i, name := range []string{"n1", "n2", "n3"} {
		nodes = append(nodes, startNode(t, e, name, fmt.Sprintf("127.0.0.%d", 11+i), filepath.Join(dir, name)))
	}
	for _, n := range nodes {
		// The first node creates the cluster's epoch and waits one fence.
		n.waitMode("shared", 3*clusterLeaseTTL+5*time.Second)
	}
	return srv, nodes
}

func sendAll(nodes []*clusterNode, batches [][]string) {
	var wg sync.WaitGroup
	for i, n := range nodes {
		if len(batches[i]) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.send(batches[i], 4)
		}()
	}
	wg.Wait()
}

// max_connections = 4, scope rule, three nodes: the provider never sees
// more than 4 connections at once, the nodes use the 4 together, and
// every message arrives.
func TestClusterConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "conns", StallAt: sim.AtDot, StallFor: 30 * time.Millisecond},
		[]string{"conns.test"}, "mx.conns.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	_, nodes := startCluster(t, w, "conns")
	var all []string
	var batches [][]string
	for _, n := range nodes {
		b := rcpts(n.name+"-", "conns.test", 150)
		batches = append(batches, b)
		all = append(all, b...)
	}
	start := time.Now()
	sendAll(nodes, batches)
	waitDelivered(t, p, int64(len(all)), 90*time.Second)
	waitFor(t, 10*time.Second, "every recipient", func() bool { return len(missing(p.Stats(), all)) == 0 })
	st := p.Stats()
	t.Logf("%d messages from 3 nodes in %s: at most %d connections at once (limit 4); per node %v",
		len(all), time.Since(start).Round(time.Millisecond), st.MaxOpen, st.MaxOpenBySource)
	if st.MaxOpen > 4 {
		t.Fatalf("%d connections at once across the nodes, max_connections = 4", st.MaxOpen)
	}
	if st.MaxOpen < 4 {
		t.Errorf("at most %d connections at once: the shared quota was not used", st.MaxOpen)
	}
	for _, n := range nodes {
		if st.MaxOpenBySource[n.source] == 0 {
			t.Errorf("node %s never connected", n.name)
		}
	}
}

// SIGKILL of a node that holds every lease: its leases are gone within
// lease_ttl, the two others take over the quota, and after a restart on
// its spool its mail arrives too.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "slow", StallAt: sim.AtDot, StallFor: 300 * time.Millisecond},
		[]string{"kill.test"}, "mx.kill.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	srv, nodes := startCluster(t, w, "kill")
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	watch, err := cluster.Dial(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Close() })
	held := func() map[string]int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := cluster.ReadStatus(ctx, watch, "")
		if err != nil {
			t.Fatal(err)
		}
		return st.PerRule()["shared"]
	}

	// The mail of both batches waits, tenant-suspended, until it is all
	// queued: n1's then goes at once and holds the 4 leases for seconds
	// however slowly a loaded machine injects; n2's and n3's is let go
	// while n1 holds them, to wait for the quota.
	for _, tenant := range []string{"first", "later"} {
		if code, res := n1.post("/api/v1/tenants/" + tenant + "/suspend"); code != 200 || res["suspended"] != true {
			t.Fatalf("suspend %s on n1: HTTP %d %v", tenant, code, res)
		}
	}
	for _, n := range nodes {
		n.waitSusp("tenant/first,tenant/later", 10*time.Second)
	}
	first := rcpts("n1-", "kill.test", 40)
	n1.sendTenantTo("first", first)
	var later []string
	for _, n := range []*clusterNode{n2, n3} {
		b := rcpts(n.name+"-", "kill.test", 20)
		n.sendTenantTo("later", b)
		later = append(later, b...)
	}
	if code, res := n1.post("/api/v1/tenants/first/resume"); code != 200 || res["recipients"] != float64(len(first)) {
		t.Fatalf("resume first on n1: HTTP %d %v, want its %d recipients made due", code, res, len(first))
	}
	var seen map[string]int
	defer func() {
		if t.Failed() {
			n1.modeMu.Lock()
			t.Logf("the leases last seen: %v; n1's quota mode %q", seen, n1.mode)
			n1.modeMu.Unlock()
		}
	}()
	waitFor(t, 20*time.Second, "n1 to hold all 4 leases", func() bool {
		seen = held()
		return seen["n1"] == 4
	})
	// n2's and n3's mail now waits for the quota n1 holds.
	if code, res := n2.post("/api/v1/tenants/later/resume"); code != 200 || res["recipients"] != float64(20) {
		t.Fatalf("resume later on n2: HTTP %d %v, want its 20 recipients made due", code, res)
	}
	n1.kill()
	killed := time.Now()
	// The leases were still there when the last status that showed them
	// was asked for: that is the bound a slow poll cannot stretch.
	var lasted time.Duration
	waitFor(t, 2*clusterLeaseTTL, "n1's leases to expire", func() bool {
		asked := time.Since(killed)
		if held()["n1"] == 0 {
			return true
		}
		lasted = asked
		return false
	})
	gone := time.Since(killed)
	waitFor(t, 5*time.Second, "n2 and n3 to take the quota over", func() bool {
		h := held()
		return h["n2"]+h["n3"] == 4
	})
	takeover := time.Since(killed)
	if lasted > clusterLeaseTTL+50*time.Millisecond {
		t.Errorf("n1's leases were held %s after SIGKILL, lease_ttl %s", lasted, clusterLeaseTTL)
	}
	waitFor(t, 60*time.Second, "n2's and n3's mail", func() bool { return len(missing(p.Stats(), later)) == 0 })

	// n1 again, on its spool: nothing it acknowledged is lost.
	n1.start()
	n1.waitMode("shared", 5*time.Second)
	waitFor(t, 60*time.Second, "n1's mail after its restart", func() bool { return len(missing(p.Stats(), first)) == 0 })
	st := p.Stats()
	dups := 0
	for _, c := range st.RcptSeen {
		dups += c - 1
	}
	if st.MaxOpen > 4 {
		t.Errorf("%d connections at once, max_connections = 4", st.MaxOpen)
	}
	if dups > 4 {
		t.Errorf("%d duplicates: more than the 4 messages in flight at the kill", dups)
	}
	t.Logf("SIGKILL of a node holding 4 leases: its leases gone after %s (lease_ttl %s), the others held all 4 after %s; "+
		"max %d connections at once; %d duplicate(s) after its restart", gone.Round(time.Millisecond), clusterLeaseTTL,
		takeover.Round(time.Millisecond), st.MaxOpen, dups)
}

// messages_per_hour = 14400 shared by three nodes that each have more
// mail than the quota: over any 30 s window the provider receives at
// most 14400×30/3600 + burst = 130 messages, and close to that. (One
// message every 0.25 s: the counts of 60 s at 7200/h in half the time.)
func TestClusterSharedRate(t *testing.T) {
	if testing.Short() {
		t.Skip("a 35 s run")
	}
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "rate"}, []string{"rate.test"}, "mx.rate.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	_, nodes := startCluster(t, w, "rate")
	var batches [][]string
	for _, n := range nodes {
		batches = append(batches, rcpts(n.name+"-", "rate.test", 100))
	}
	sendAll(nodes, batches)
	// 10 at once (the burst), then one every 0.25 s: the 130th arrives
	// about 30 s after the first.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.WaitMessages(ctx, 131); err != nil {
		t.Fatalf("%d messages after 60 s: %v", p.Delivered(), err)
	}
	st := p.Stats()
	const win = 30 * time.Second
	bound := clusterRatePerHour*int(win/time.Second)/3600 + quota.Burst(clusterRatePerHour)
	n30 := sim.MaxInWindow(st.Arrivals, win)
	n5 := sim.MaxInWindow(st.Arrivals, 5*time.Second)
	from := map[string]int{}
	for r := range st.RcptSeen {
		from[r[:2]]++
	}
	t.Logf("%d/h over 3 nodes: at most %d arrivals in a 30 s window (bound %d), %d in 5 s; from each node %v",
		clusterRatePerHour, n30, bound, n5, from)
	if n30 > bound {
		t.Fatalf("%d arrivals in a 30 s window, bound %d", n30, bound)
	}
	if n30 < bound-10 {
		t.Errorf("only %d arrivals in the best 30 s window: the nodes do not use the shared rate", n30)
	}
	for _, n := range nodes {
		if from[n.name] == 0 {
			t.Errorf("node %s delivered nothing", n.name)
		}
	}
}

// One node meets 421 [TSS04]: the site goes into backoff on all three,
// visible in each node's explain, within a second.
func TestClusterFlowBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "flow", RcptReply: func(r string) string {
		if strings.HasPrefix(r, "throttle") {
			return "421 4.7.0 [TSS04] Messages from 127.0.0.11 temporarily deferred due to unexpected volume or user complaints"
		}
		return ""
	}}, []string{"flow.test"}, "mx.flow.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	_, nodes := startCluster(t, w, "flow")
	// Every node knows the site (explain shows known sites).
	var warm []string
	var batches [][]string
	for _, n := range nodes {
		b := rcpts(n.name+"-", "flow.test", 2)
		batches = append(batches, b)
		warm = append(warm, b...)
	}
	sendAll(nodes, batches)
	waitFor(t, 20*time.Second, "warm-up mail", func() bool { return len(missing(p.Stats(), warm)) == 0 })
	for _, n := range nodes {
		if st := n.explain("flow.test").Site.Flow.State; st != flow.Normal {
			t.Fatalf("node %s: flow state %s before the 421", n.name, st)
		}
	}

	nodes[0].send([]string{"throttle0@flow.test"}, 1)
	seen := map[string]time.Time{}
	waitFor(t, 20*time.Second, "backoff on every node", func() bool {
		for _, n := range nodes {
			if _, ok := seen[n.name]; ok {
				continue
			}
			// [TSS04] names the source: the source's state backs off,
			// on every node.
			if _, ok := sourceIn(n.explain("flow.test"), flow.Backoff); ok {
				seen[n.name] = time.Now()
			}
		}
		return len(seen) == len(nodes)
	})
	for _, n := range nodes[1:] {
		lag := seen[n.name].Sub(seen["n1"])
		d, _ := sourceIn(n.explain("flow.test"), flow.Backoff)
		t.Logf("node %s: backoff %s after n1; %s", n.name, lag.Round(time.Millisecond), d.Detail)
		if lag > time.Second {
			t.Errorf("node %s in backoff %s after n1, want within 1 s", n.name, lag)
		}
		if !strings.Contains(d.Detail, "on another node") {
			t.Errorf("node %s: detail does not say the backoff came from another node: %s", n.name, d.Detail)
		}
	}
}

// sourceIn is the first source of explain's site in a state.
func sourceIn(ex queue.Explanation, state string) (flow.SourceDecision, bool) {
	if ex.Site == nil {
		return flow.SourceDecision{}, false
	}
	for _, d := range ex.Site.Sources {
		if d.State == state {
			return d, true
		}
	}
	return flow.SourceDecision{}, false
}

// Redis stops mid-run: the nodes go degraded and keep sending within
// their shares of max_connections = 4 (2, 1, 1 by name), never more than 4
// in all, as the providers count. Redis restarts (empty): shared mode
// returns, and no message is lost.
func TestClusterRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	t.Parallel()
	w := newWorld(t)
	var ps []*sim.Provider
	for i := 1; i <= 3; i++ {
		p, err := w.AddProvider(sim.Behavior{Name: fmt.Sprintf("out%d", i), StallAt: sim.AtDot, StallFor: 50 * time.Millisecond},
			[]string{fmt.Sprintf("out%d.test", i)}, fmt.Sprintf("mx.out%d.cluster.test", i))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	srv, nodes := startCluster(t, w, "outage")

	// Phase 1, shared: 180 messages, Redis dies under them.
	var b1 [][]string
	var all []string
	for _, n := range nodes {
		b := rcpts(n.name+"-", "out1.test", 60)
		b1 = append(b1, b)
		all = append(all, b...)
	}
	sendAll(nodes, b1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ps[0].WaitMessages(ctx, 40); err != nil {
		t.Fatal(err)
	}
	// Connections open at once across the three providers, sampled from
	// the stop until the end of the outage (a bounded poll of the
	// providers' counters).
	stopSampling := make(chan struct{})
	sampled := make(chan int, 1)
	go func() {
		peak := 0
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		limit := time.After(2 * time.Minute)
		for {
			open := 0
			for _, p := range ps {
				open += p.Stats().OpenNow
			}
			peak = max(peak, open)
			select {
			case <-tick.C:
			case <-stopSampling:
				sampled <- peak
				return
			case <-limit:
				sampled <- peak
				return
			}
		}
	}()
	srv.Stop()
	stopped := time.Now()
	for _, n := range nodes {
		n.waitMode("degraded", 5*time.Second)
	}
	detected := time.Since(stopped)

	// Phase 2, degraded: new mail to every node; it all arrives.
	var b2 [][]string
	var during []string
	for _, n := range nodes {
		b := rcpts(n.name+"-", "out2.test", 30)
		b2 = append(b2, b)
		during = append(during, b...)
	}
	sendAll(nodes, b2)
	all = append(all, during...)
	waitFor(t, 60*time.Second, "mail sent during the outage", func() bool {
		return len(missing(ps[0].Stats(), all[:180])) == 0 && len(missing(ps[1].Stats(), during)) == 0
	})
	close(stopSampling)
	peak := <-sampled
	st2 := ps[1].Stats()
	for _, n := range nodes {
		n.waitMode("degraded", time.Second) // still: Redis is down
	}
	share := map[string]int{"n1": 2, "n2": 1, "n3": 1}
	t.Logf("outage: degraded %s after the stop; mail sent meanwhile: at most %d connections at once (%v per node), %d across all providers",
		detected.Round(time.Millisecond), st2.MaxOpen, st2.MaxOpenBySource, peak)
	if peak > 4 || st2.MaxOpen > 4 {
		t.Errorf("degraded: %d connections at once (%d to the outage's provider), max_connections = 4", peak, st2.MaxOpen)
	}
	for _, n := range nodes {
		if got := st2.MaxOpenBySource[n.source]; got > share[n.name] || got == 0 {
			t.Errorf("degraded node %s: %d connections at once, share %d", n.name, got, share[n.name])
		}
	}

	// Phase 3: Redis is back (empty): shared again; n3 alone may use the
	// whole quota, not its degraded share of 1.
	srv.Restart()
	back := time.Now()
	for _, n := range nodes {
		n.waitMode("shared", 3*clusterLeaseTTL+5*time.Second)
	}
	rejoined := time.Since(back)
	b3 := rcpts("n3-", "out3.test", 60)
	nodes[2].send(b3, 4)
	all = append(all, b3...)
	waitFor(t, 60*time.Second, "mail after the outage", func() bool { return len(missing(ps[2].Stats(), b3)) == 0 })
	st3 := ps[2].Stats()
	if got := st3.MaxOpenBySource[nodes[2].source]; got <= share["n3"] {
		t.Errorf("after Redis returned, n3 opened at most %d connections: still on its degraded share", got)
	}
	lost := 0
	for _, p := range ps {
		st := p.Stats()
		if st.MaxOpen > 4 {
			t.Errorf("provider %v: %d connections at once", p.Addrs(), st.MaxOpen)
		}
	}
	seen := map[string]bool{}
	for _, p := range ps {
		for r := range p.Stats().RcptSeen {
			seen[r] = true
		}
	}
	for _, r := range all {
		if !seen[r] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d messages never arrived", lost, len(all))
	}
	t.Logf("Redis back: shared mode again after %s; n3 alone then opened %d connections; %d messages, none lost",
		rejoined.Round(time.Millisecond), st3.MaxOpenBySource[nodes[2].source], len(all))
}
