package quota

import (
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
)

// Redis dies under three nodes: each goes degraded, opens nothing for the
// fence (lease TTL), then works on its share of each quota (7 connections:
// 3, 2, 2 in name order; the rate ÷ 3 with no initial burst), counting the
// leases it held before. Redis comes back empty (restarted without
// persistence): the nodes register what they hold, wait the fence again
// and share the quotas again.
func TestRedisDegradedAndBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const ttl = time.Second
	nodes := newNodes(t, srv, 3, ttl)
	a, b, c := nodes[0], nodes[1], nodes[2]
	const key, limit = "conn|rule|yahoo", 7
	var aHeld []Lease
	for range 3 {
		l, _, ok, _ := a.TryConn(ctx, key, limit)
		if !ok {
			t.Fatal("a denied in shared mode")
		}
		aHeld = append(aHeld, l)
	}
	if ok, _, _ := a.TakeMessage(ctx, "rate|rule|yahoo", 36000); !ok {
		t.Fatal("shared rate refused")
	}

	srv.Stop()
	stopped := time.Now()
	for _, r := range nodes {
		// A call notices at once; an idle node within a renewal period
		// or when its subscription breaks.
		r.TryConn(ctx, "poke", 1)
		waitMode(t, r, "degraded", 3*time.Second)
	}
	if !b.Degraded() {
		t.Fatal("Degraded() false in degraded mode")
	}
	// The fence: nothing new until the TTL has passed.
	_, u, ok, err := b.TryConn(ctx, key, limit)
	if ok || err != nil || u.NextSlot.IsZero() {
		t.Fatalf("degraded, inside the fence: ok=%v err=%v usage %+v, want denied until the fence", ok, err, u)
	}
	// Shared-mode leases lose their validity with the lease TTL.
	waitCond(t, 3*time.Second, "the fence to pass", func() bool { return time.Now().After(u.NextSlot) }, b)
	if since := time.Since(stopped); since < ttl {
		t.Fatalf("fence passed %s after the outage, lease TTL %s", since, ttl)
	}
	for _, l := range aHeld {
		if l.(*redisLease).Valid() {
			t.Error("a shared lease still valid after the fence")
		}
	}
	// Each node noticed the outage at its own moment (later under load):
	// wait until every node's fence has passed before counting shares.
	for _, r := range nodes {
		fence := r.State().FenceUntil
		waitCond(t, 5*time.Second, "node "+r.Node()+"'s fence to pass", func() bool { return time.Now().After(fence) }, r)
	}
	// Shares: a 3 (it already holds 3), b 2, c 2.
	grants := map[string]int{}
	var degradedLeases []Lease
	for _, r := range nodes {
		for range limit {
			l, u, ok, err := r.TryConn(ctx, key, limit)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				if want := map[string]int{"a": 3, "b": 2, "c": 2}[r.Node()]; u.Limit != want {
					t.Errorf("node %s: share %d, want %d", r.Node(), u.Limit, want)
				}
				break
			}
			grants[r.Node()]++
			degradedLeases = append(degradedLeases, l)
		}
	}
	if grants["a"] != 0 || grants["b"] != 2 || grants["c"] != 2 {
		t.Fatalf("degraded grants %v, want a 0 (holds its share already), b 2, c 2", grants)
	}
	aHeld[0].Release()
	if _, _, ok, _ := a.TryConn(ctx, key, limit); !ok {
		t.Fatal("a below its share after a release, still denied")
	}
	// The rate share: 36000/h ÷ 3 = one every 300 ms, no burst at first.
	ok, retry, err := c.TakeMessage(ctx, "rate|rule|yahoo", 36000)
	if ok || err != nil || retry <= 0 || retry > 300*time.Millisecond {
		t.Fatalf("degraded rate at once: ok=%v retry=%v err=%v, want refused for up to 300ms", ok, retry, err)
	}

	// Redis comes back, empty.
	srv.Restart()
	back := time.Now()
	watch := redisClient(t, srv)
	for _, r := range nodes {
		waitMode(t, r, "rejoining", 5*time.Second)
	}
	// Everything held is registered again: a 3 (2 + 1), b 2, c 2. (A
	// renewal racing the re-registration may count a lease twice for a
	// moment; the node settles it at its next renewal.)
	var held map[string]int
	settled := func() bool {
		held = liveLeases(t, watch, key)
		return held["a"] == 3 && held["b"] == 2 && held["c"] == 2
	}
	deadline := time.Now().Add(ttl)
	for !settled() && time.Now().Before(deadline) {
		<-time.After(50 * time.Millisecond)
	}
	if !settled() {
		t.Errorf("leases in Redis after the rejoin: %v, want a 3, b 2, c 2", held)
	}
	for _, r := range nodes {
		waitMode(t, r, "shared", 5*time.Second)
	}
	took := time.Since(back)
	if took < ttl {
		t.Errorf("shared again %s after Redis returned empty, before the fence (%s)", took, ttl)
	}
	if a.Degraded() {
		t.Error("Degraded() true in shared mode")
	}
	// Shared again: the quota is the cluster's, 7 in all.
	for _, l := range degradedLeases {
		l.Release()
	}
	n := 0
	for range limit {
		if _, _, ok, _ := b.TryConn(ctx, key, limit); ok {
			n++
		}
	}
	if want := limit - 3; n != want {
		t.Errorf("b took %d in shared mode with a holding 3, want %d", n, want)
	}
	t.Logf("degraded %s after the outage; shared again %s after Redis returned", time.Since(stopped)-time.Since(back), took.Round(time.Millisecond))
}

// A node that never reached Redis knows no membership: it opens nothing
// until Redis answers, then joins.
func TestRedisNeverContacted(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	srv.Stop()
	r, err := NewRedis(redisClient(t, srv), RedisOptions{Node: "lonely", LeaseTTL: 500 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if !r.Degraded() {
		t.Fatal("not degraded with Redis down")
	}
	if _, u, ok, _ := r.TryConn(ctx, "k", 10); ok || u.Limit != 0 {
		t.Fatalf("granted with no membership known: usage %+v", u)
	}
	if ok, _, _ := r.TakeMessage(ctx, "rate|k", 3600); ok {
		t.Fatal("rate granted with no membership known")
	}
	srv.Restart()
	waitMode(t, r, "shared", 5*time.Second)
	if _, _, ok, err := r.TryConn(ctx, "k", 10); !ok || err != nil {
		t.Fatalf("denied after joining: %v", err)
	}
}

// After an outage longer than the lease TTL, a node that rejoins must not
// take the shares of the nodes that are not back yet: while it waits for
// them its share counts them.
func TestRedisRejoinCountsMissingNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	var nodes []*Redis
	for i, ttl := range []time.Duration{time.Second, time.Second, 3 * time.Second} {
		r, err := NewRedis(redisClient(t, srv), RedisOptions{Node: string(rune('a' + i)), LeaseTTL: ttl, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		nodes = append(nodes, r)
	}
	for _, r := range nodes {
		waitMode(t, r, "shared", 10*time.Second)
		waitCond(t, 5*time.Second, "membership", func() bool { return len(r.State().Nodes) == 3 }, r)
	}
	a, c := nodes[0], nodes[2]
	srv.Stop()
	a.TryConn(ctx, "poke", 1)
	waitMode(t, a, "degraded", 3*time.Second)
	c.halt() // c stays away: it will never renew
	// Outage longer than a's TTL: its view of the others' heartbeats is
	// stale when Redis returns.
	st := a.State()
	waitCond(t, 5*time.Second, "the fence", func() bool { return time.Now().After(st.FenceUntil.Add(time.Second)) }, a)
	srv.Restart()
	waitMode(t, a, "rejoining", 5*time.Second)
	st = a.State()
	waitCond(t, 5*time.Second, "the rejoin fence", func() bool { return a.State().FenceUntil.IsZero() || time.Now().After(a.State().FenceUntil) }, a)
	granted := 0
	for range 7 {
		if _, _, ok, _ := a.TryConn(ctx, "conn|rule|x", 7); ok {
			granted++
		}
	}
	if mode := a.State().Mode; mode != "rejoining" {
		t.Skipf("a left rejoining (%s) before the check; nodes %v", mode, st.Nodes)
	}
	if granted > 3 {
		t.Fatalf("a rejoining took %d of 7 while c (not back) may hold its degraded share; want at most a's share 3 (nodes %v)", granted, a.State().Nodes)
	}
	// c gives no sign of life: a stops waiting after c's TTL.
	waitMode(t, a, "shared", 10*time.Second)
}
