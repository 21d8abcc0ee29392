package quota

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
)

// TestRedisTakeRateWindows: two nodes taking connection-open tokens of
// "10/1s" for 3 s never pass N + burst in any second, and get close to
// the rate.
func TestRedisTakeRateWindows(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := newNodes(t, srv, 2, 5*time.Second)
	r := Rate{N: 10, Per: time.Second}
	var mu sync.Mutex
	var grants []time.Time
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := nodes[w%2]
			for i := 0; i < 10000 && time.Since(start) < 3*time.Second; i++ {
				ok, retry, err := n.TakeRate(ctx, "open|rule|r", r)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					mu.Lock()
					grants = append(grants, time.Now())
					mu.Unlock()
					continue
				}
				if retry <= 0 || retry > time.Second {
					t.Errorf("retryIn %v", retry)
					return
				}
				time.Sleep(retry) // the dispatcher's pacing, not synchronisation
			}
		}()
	}
	wg.Wait()
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	// +1: a grant is timed when its answer arrives.
	if n, limit := maxInWindow(grants, time.Second), r.N+RateBurst(r)+1; n > limit {
		t.Errorf("%d opens in a 1s window, limit %d", n, limit)
	}
	if len(grants) < 25 {
		t.Errorf("%d opens in 3s at 10/s", len(grants))
	}
}

// TestRedisTakeDaily: the day's count is shared by the nodes, refused
// past N with a retryIn of about 24 h, kept in one hash.
func TestRedisTakeDaily(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := newNodes(t, srv, 2, 5*time.Second)
	for i := range 5 {
		if ok, _, err := nodes[i%2].TakeDaily(ctx, "day|rule|r", 5); !ok || err != nil {
			t.Fatalf("message %d: ok=%v err=%v", i+1, ok, err)
		}
	}
	for _, n := range nodes {
		ok, retry, err := n.TakeDaily(ctx, "day|rule|r", 5)
		if ok || err != nil || retry < 24*time.Hour-time.Minute || retry > 24*time.Hour+DayBucket {
			t.Errorf("node %s past the quota: ok=%v retry=%v err=%v", n.Node(), ok, retry, err)
		}
		var day *Usage
		for _, u := range n.Snapshot() {
			if u.Kind == KindDay {
				day = &u
			}
		}
		if day == nil || day.Limit != 5 || day.NextSlot.IsZero() {
			t.Errorf("node %s snapshot has no day usage: %+v", n.Node(), n.Snapshot())
		}
	}
	c := redisClient(t, srv)
	h, err := c.HGetAll(ctx, "penstock:day:day|rule|r").Result()
	if err != nil || len(h) != 1 {
		t.Errorf("day hash %v err %v, want one bucket", h, err)
	}
	if ok, _, _ := nodes[0].TakeDaily(ctx, "day|rule|other", 5); !ok {
		t.Error("another key is refused")
	}
}

// TestRedisShapingDegraded: with Redis down, each node counts its share
// of the daily quota and of the connection-open rate locally; a node that
// never reached Redis opens nothing.
func TestRedisShapingDegraded(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := newNodes(t, srv, 2, time.Second)
	srv.Stop()
	for _, r := range nodes {
		// The first call notices the outage and answers from the share.
		if ok, _, err := r.TakeDaily(ctx, "day|rule|d", 4); !ok || err != nil {
			t.Fatalf("node %s: first degraded message refused: %v", r.Node(), err)
		}
		waitMode(t, r, "degraded", 3*time.Second)
		if ok, _, _ := r.TakeDaily(ctx, "day|rule|d", 4); !ok {
			t.Fatalf("node %s: second message of its share (2) refused", r.Node())
		}
		if ok, retry, _ := r.TakeDaily(ctx, "day|rule|d", 4); ok || retry < 23*time.Hour {
			t.Fatalf("node %s: past its share of the day: ok=%v retry=%v", r.Node(), ok, retry)
		}
		// 4/1m over 2 nodes: 2/1m each, burst 1.
		if ok, _, _ := r.TakeRate(ctx, "open|rule|d", Rate{N: 4, Per: time.Minute}); !ok {
			t.Fatalf("node %s: first open refused", r.Node())
		}
		if ok, retry, _ := r.TakeRate(ctx, "open|rule|d", Rate{N: 4, Per: time.Minute}); ok || retry < 20*time.Second {
			t.Fatalf("node %s: second open at once: ok=%v retry=%v, want about 30s", r.Node(), ok, retry)
		}
	}
	lonely, err := NewRedis(redisClient(t, srv), RedisOptions{Node: "lonely", LeaseTTL: 500 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lonely.Close() })
	if ok, _, _ := lonely.TakeDaily(ctx, "day|rule|d", 4); ok {
		t.Error("daily granted with no membership known")
	}
	if ok, _, _ := lonely.TakeRate(ctx, "open|rule|d", Rate{N: 4, Per: time.Minute}); ok {
		t.Error("open granted with no membership known")
	}
}

// TestRedisCapShared: a cap's keys (scope "cap") are counted by the nodes
// together like a rule's: 3 connections in all, its message rate shared;
// with Redis away each node has its share of the cap, never the whole.
func TestRedisCapShared(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	nodes := newNodes(t, srv, 2, 5*time.Second)
	conn := CapKey("group").String()
	var held []Lease
	for i := range 6 {
		l, _, ok, err := nodes[i%2].TryConn(ctx, conn, 3)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			held = append(held, l)
		}
	}
	if len(held) != 3 {
		t.Fatalf("%d cap leases granted over two nodes, the cap is 3", len(held))
	}
	for _, l := range held {
		l.Release()
	}
	// 120 an hour: a burst of 1 for both nodes together.
	rate := CapKey("group").Rate().String()
	if ok, _, err := nodes[0].TakeMessage(ctx, rate, 120); !ok || err != nil {
		t.Fatalf("first cap token refused: %v", err)
	}
	if ok, retry, _ := nodes[1].TakeMessage(ctx, rate, 120); ok || retry < 20*time.Second {
		t.Fatalf("the other node took a second token at once: ok=%v retry=%v", ok, retry)
	}
	srv.Stop()
	other := CapKey("other").Rate().String()
	for _, r := range nodes {
		// A first call notices the outage; then the node answers from its
		// share: 240 an hour over 2 nodes is 120 each, one token every
		// 30 s (the whole cap would give one every 15 s), the first one
		// interval after the outage began.
		r.TakeMessage(ctx, CapKey("poke").Rate().String(), 240)
		waitMode(t, r, "degraded", 3*time.Second)
		if ok, retry, err := r.TakeMessage(ctx, other, 240); ok || err != nil || retry < 20*time.Second || retry > 31*time.Second {
			t.Fatalf("node %s: degraded cap token: ok=%v retry=%v err=%v, want a wait of about 30 s (its share)", r.Node(), ok, retry, err)
		}
	}
}
