package quota

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manual clock, safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var ctx = context.Background()

func TestTryConnLimitAndRelease(t *testing.T) {
	q := NewLocal(newFakeClock())
	var leases []Lease
	for i := 1; i <= 3; i++ {
		l, u, ok, err := q.TryConn(ctx, "yahoo|src1", 3)
		if err != nil || !ok {
			t.Fatalf("TryConn %d: ok=%v err=%v", i, ok, err)
		}
		if u.InUse != i || u.Limit != 3 || u.Kind != KindConn || l.Key() != "yahoo|src1" {
			t.Errorf("TryConn %d: usage %+v key %q", i, u, l.Key())
		}
		leases = append(leases, l)
	}
	l, u, ok, err := q.TryConn(ctx, "yahoo|src1", 3)
	if err != nil || ok || l != nil {
		t.Fatalf("4th TryConn: lease=%v ok=%v err=%v, want denied", l, ok, err)
	}
	if u.InUse != 3 || u.Limit != 3 {
		t.Errorf("denied usage %+v", u)
	}
	// Other keys are independent.
	if _, _, ok, _ := q.TryConn(ctx, "yahoo|src2", 3); !ok {
		t.Errorf("other key denied")
	}
	if got := q.Conns("yahoo|src1"); got != 3 {
		t.Errorf("Conns = %d, want 3", got)
	}

	// Release is idempotent: a double release frees one slot, not two.
	leases[0].Release()
	leases[0].Release()
	if got := q.Conns("yahoo|src1"); got != 2 {
		t.Fatalf("after double Release: Conns = %d, want 2", got)
	}
	if _, _, ok, _ := q.TryConn(ctx, "yahoo|src1", 3); !ok {
		t.Fatalf("slot freed by Release not available")
	}
	if _, _, ok, _ := q.TryConn(ctx, "yahoo|src1", 3); ok {
		t.Fatalf("double Release freed a second slot")
	}
	// A lowered limit (reload) revokes nothing but admits nobody until below.
	if _, u, ok, _ := q.TryConn(ctx, "yahoo|src1", 1); ok || u.InUse != 3 || u.Limit != 1 {
		t.Errorf("lowered limit: ok=%v usage %+v", ok, u)
	}

	// Bad input.
	if _, _, _, err := q.TryConn(ctx, "k", 0); !errors.Is(err, ErrBadLimit) {
		t.Errorf("limit 0: err = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, ok, err := q.TryConn(cctx, "fresh", 5); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: ok=%v err=%v", ok, err)
	}
	if ok, _, err := q.TakeMessage(cctx, "fresh", 5); ok || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled ctx: TakeMessage ok=%v err=%v", ok, err)
	}
}

func TestKeyForgottenWhenIdle(t *testing.T) {
	q := NewLocal(newFakeClock())
	l, _, _, _ := q.TryConn(ctx, "k", 1)
	l.Release()
	l.Release()
	if n := countKeys(q); n != 0 {
		t.Errorf("%d keys left after the last release", n)
	}
	if got := q.Conns("k"); got != 0 {
		t.Errorf("Conns = %d", got)
	}
	if _, _, ok, _ := q.TryConn(ctx, "k", 1); !ok {
		t.Errorf("key unusable after being forgotten")
	}
}

func countKeys(q *Local) int {
	n := 0
	for i := range q.shards {
		sh := &q.shards[i]
		sh.mu.Lock()
		n += len(sh.conns) + len(sh.rates)
		sh.mu.Unlock()
	}
	return n
}

// 100 goroutines compete for 7 slots; an atomic counter of sessions in
// progress (raised after TryConn, lowered before Release) never exceeds 7.
func TestTryConnConcurrentNeverExceedsLimit(t *testing.T) {
	const (
		workers = 100
		rounds  = 200
		limit   = 7
	)
	q := NewLocal(RealClock())
	var cur, peak, granted atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				l, u, ok, err := q.TryConn(ctx, "site", limit)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					if u.InUse > limit {
						t.Errorf("usage %+v above limit", u)
					}
					runtime.Gosched()
					continue
				}
				granted.Add(1)
				n := cur.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				if h := q.Conns("site"); h > limit {
					t.Errorf("Conns = %d above limit", h)
				}
				runtime.Gosched()
				cur.Add(-1)
				l.Release()
				if i%3 == 0 {
					l.Release() // stray double releases must not free extra slots
				}
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("peak %d sessions with limit %d", p, limit)
	}
	if peak.Load() < 2 || granted.Load() < rounds {
		t.Errorf("little concurrency exercised: peak %d, granted %d", peak.Load(), granted.Load())
	}
	if got := q.Conns("site"); got != 0 {
		t.Errorf("Conns = %d after all releases", got)
	}
}

func TestWait(t *testing.T) {
	q := NewLocal(newFakeClock())
	isClosed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	// Unknown key, or a free slot: closed at once.
	if !isClosed(q.Wait("k")) {
		t.Fatal("Wait on unknown key blocks")
	}
	a, _, _, _ := q.TryConn(ctx, "k", 2)
	if !isClosed(q.Wait("k")) {
		t.Fatal("Wait blocks with a slot free")
	}
	b, _, _, _ := q.TryConn(ctx, "k", 2)
	w1, w2 := q.Wait("k"), q.Wait("k")
	if isClosed(w1) || isClosed(w2) {
		t.Fatal("Wait closed while the quota is met")
	}
	// Many waiters, each holding the channel before the release, wake on one
	// release.
	const waiters = 20
	var woke sync.WaitGroup
	for i := 0; i < waiters; i++ {
		ch := q.Wait("k")
		if ch != w1 {
			t.Fatal("waiters on one key do not share the channel")
		}
		woke.Add(1)
		go func() {
			defer woke.Done()
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Error("waiter not woken by Release")
			}
		}()
	}
	a.Release()
	select {
	case <-w1:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait channel not closed by Release")
	}
	woke.Wait()
	// After the release a slot is free again; fill it and a new channel is made.
	c, _, ok, _ := q.TryConn(ctx, "k", 2)
	if !ok {
		t.Fatal("freed slot not available")
	}
	w3 := q.Wait("k")
	if isClosed(w3) || w3 == w1 {
		t.Fatal("Wait after refill: channel closed or reused")
	}
	a.Release() // double release: no wake-up
	if isClosed(w3) {
		t.Fatal("double Release woke waiters")
	}
	b.Release()
	if !isClosed(w3) {
		t.Fatal("Release did not close the new channel")
	}
	c.Release()
}

func TestBurst(t *testing.T) {
	for _, tt := range []struct{ perHour, burst int }{
		{0, 0}, {-1, 0}, {1, 1}, {100, 1}, {119, 1}, {120, 1}, {240, 2}, {600, 5},
		{1200, 10}, {3600, 10}, {1_000_000, 10},
	} {
		if got := Burst(tt.perHour); got != tt.burst {
			t.Errorf("Burst(%d) = %d, want %d", tt.perHour, got, tt.burst)
		}
	}
}

// GCRA with a fake clock: 3600/h asked every 100 ms for 10 simulated minutes.
// Every 60 s window holds at most 60 + burst grants, and the total is at
// least 95% of the quota for the period.
func TestTakeMessageWindows(t *testing.T) {
	for _, perHour := range []int{3600, 1200, 100, 7} {
		t.Run(fmt.Sprint(perHour), func(t *testing.T) {
			clk := newFakeClock()
			q := NewLocal(clk)
			const step = 100 * time.Millisecond
			const period = 10 * time.Minute
			if perHour < 60 {
				// A slow rate needs a longer run to show its average.
				checkWindows(t, q, clk, perHour, step*10, 10*time.Hour)
				return
			}
			checkWindows(t, q, clk, perHour, step, period)
		})
	}
}

func checkWindows(t *testing.T, q *Local, clk *fakeClock, perHour int, step, period time.Duration) {
	t.Helper()
	start := clk.Now()
	var grants []time.Time
	for clk.Now().Sub(start) < period {
		ok, retry, err := q.TakeMessage(ctx, "k", perHour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			grants = append(grants, clk.Now())
			continue // ask again at the same instant: the burst is taken at once
		}
		if retry <= 0 {
			t.Fatalf("denied with retryIn %v", retry)
		}
		clk.Add(step)
	}
	burst := Burst(perHour)
	for _, w := range []time.Duration{60 * time.Second, 10 * time.Minute, time.Hour} {
		if w > period {
			continue
		}
		limit := float64(perHour)*w.Seconds()/3600 + float64(burst)
		// Slide the window start over every grant: the worst window starts at one.
		j := 0
		for i := range grants {
			for j < len(grants) && grants[j].Sub(grants[i]) < w {
				j++
			}
			if n := j - i; float64(n) > limit {
				t.Fatalf("%d grants in the %v window from %v, limit %.1f", n, w, grants[i].Sub(start), limit)
			}
		}
	}
	quota := float64(perHour) * period.Hours()
	if float64(len(grants)) < 0.95*quota {
		t.Fatalf("%d grants in %v, want at least 95%% of %.0f", len(grants), period, quota)
	}
	// The first instant takes exactly the burst.
	n := 0
	for n < len(grants) && grants[n].Equal(start) {
		n++
	}
	if n != burst {
		t.Errorf("%d grants at the first instant, want burst %d", n, burst)
	}
}

func TestTakeMessageRetryIn(t *testing.T) {
	clk := newFakeClock()
	q := NewLocal(clk)
	const perHour = 360 // T = 10s, burst 3
	for i := 0; i < Burst(perHour); i++ {
		if ok, _, _ := q.TakeMessage(ctx, "k", perHour); !ok {
			t.Fatalf("burst grant %d refused", i)
		}
	}
	ok, retry, _ := q.TakeMessage(ctx, "k", perHour)
	if ok || retry != 10*time.Second {
		t.Fatalf("after the burst: ok=%v retryIn=%v, want refused, 10s", ok, retry)
	}
	snap := q.Snapshot()
	if len(snap) != 1 || snap[0].Kind != KindRate || snap[0].InUse != 3 || snap[0].Burst != 3 ||
		snap[0].Limit != perHour || !snap[0].NextSlot.Equal(clk.Now().Add(10*time.Second)) {
		t.Errorf("snapshot %+v", snap)
	}
	clk.Add(retry - time.Nanosecond)
	if ok, r, _ := q.TakeMessage(ctx, "k", perHour); ok || r != time.Nanosecond {
		t.Fatalf("1ns early: ok=%v retryIn=%v", ok, r)
	}
	clk.Add(time.Nanosecond)
	if ok, _, _ := q.TakeMessage(ctx, "k", perHour); !ok {
		t.Fatal("refused at retryIn")
	}
	// Unlimited.
	for i := 0; i < 1000; i++ {
		if ok, _, err := q.TakeMessage(ctx, "free", 0); !ok || err != nil {
			t.Fatal("perHour 0 is not unlimited")
		}
	}
}

func TestIdleRateKeysSwept(t *testing.T) {
	clk := newFakeClock()
	q := NewLocal(clk)
	for i := 0; i < 100; i++ {
		q.TakeMessage(ctx, fmt.Sprint("site", i), 60)
	}
	if n := countKeys(q); n != 100 {
		t.Fatalf("%d keys, want 100", n)
	}
	if n := len(q.Snapshot()); n != 100 {
		t.Fatalf("snapshot has %d keys", n)
	}
	clk.Add(2 * time.Minute) // T = 60s: every TAT is now in the past
	if n := len(q.Snapshot()); n != 0 {
		t.Errorf("snapshot lists %d idle keys", n)
	}
	q.TakeMessage(ctx, "active", 60) // the next call sweeps
	if n := countKeys(q); n != 1 {
		t.Errorf("%d keys after the sweep, want 1", n)
	}
	// A key swept and used again behaves as fresh: full burst.
	if ok, _, _ := q.TakeMessage(ctx, "site0", 60); !ok {
		t.Error("swept key refused")
	}
}

func TestSnapshotConns(t *testing.T) {
	q := NewLocal(newFakeClock())
	l1, _, _, _ := q.TryConn(ctx, "b", 4)
	q.TryConn(ctx, "b", 4)
	l3, _, _, _ := q.TryConn(ctx, "a", 1)
	got := q.Snapshot()
	want := []Usage{{Key: "a", Kind: KindConn, InUse: 1, Limit: 1}, {Key: "b", Kind: KindConn, InUse: 2, Limit: 4}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Snapshot = %+v, want %+v", got, want)
	}
	l1.Release()
	l3.Release()
	if got := q.Snapshot(); len(got) != 1 || got[0].InUse != 1 {
		t.Errorf("after release: %+v", got)
	}
}

func BenchmarkTryConn(b *testing.B) {
	q := NewLocal(RealClock())
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("rule%d|10.0.0.%d", i%8, i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l, _, ok, _ := q.TryConn(ctx, keys[i%len(keys)], 1000)
			if ok {
				l.Release()
			}
			i++
		}
	})
}

func BenchmarkTakeMessage(b *testing.B) {
	q := NewLocal(RealClock())
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = fmt.Sprintf("rule%d|10.0.0.%d", i%8, i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			q.TakeMessage(ctx, keys[i%len(keys)], 3600)
			i++
		}
	})
}
