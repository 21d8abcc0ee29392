package quota

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestRateBurst(t *testing.T) {
	for _, tc := range []struct {
		r    Rate
		want int
	}{
		{Rate{10, time.Second}, 2},
		{Rate{30, time.Minute}, 7},
		{Rate{1, time.Minute}, 1},
		{Rate{600, time.Hour}, Burst(600)},
		{Rate{100000, time.Hour}, Burst(100000)},
		{Rate{}, 0},
	} {
		if got := RateBurst(tc.r); got != tc.want {
			t.Errorf("RateBurst(%v) = %d, want %d", tc.r, got, tc.want)
		}
	}
}

// TestTakeRateWindows: with a fake clock and callers at random moments,
// no window of the rate's period holds more than N + burst opens, and a
// busy caller gets close to the full rate.
func TestTakeRateWindows(t *testing.T) {
	for _, r := range []Rate{{10, time.Second}, {30, time.Minute}, {5, 10 * time.Second}} {
		clk := newFakeClock()
		q := NewLocal(clk)
		var grants []time.Time
		end := clk.Now().Add(10 * r.Per)
		for i := 0; i < 1_000_000 && clk.Now().Before(end); i++ {
			ok, retry, err := q.TakeRate(ctx, "open|rule|r", r)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				grants = append(grants, clk.Now())
			} else if retry <= 0 || retry > r.Per {
				t.Fatalf("%v: retryIn %v", r, retry)
			}
			// Callers come at random moments, up to T/10 apart: with a
			// burst of 1 a late grant delays the next (GCRA), so the
			// rate used is about 95% of the limit.
			clk.Add(time.Duration(rand.Int64N(int64(r.Per) / int64(r.N) / 10)))
		}
		limit := r.N + RateBurst(r)
		if n := maxInWindow(grants, r.Per); n > limit {
			t.Errorf("%v: %d opens in one period, limit %d", r, n, limit)
		}
		if want := 10 * r.N; len(grants) < want*85/100 {
			t.Errorf("%v: %d opens in 10 periods, want about %d", r, len(grants), want)
		}
	}
}

func TestTakeRateSnapshot(t *testing.T) {
	clk := newFakeClock()
	q := NewLocal(clk)
	r := Rate{10, time.Second}
	for range RateBurst(r) {
		if ok, _, _ := q.TakeRate(ctx, "open|rule|r", r); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, retry, _ := q.TakeRate(ctx, "open|rule|r", r)
	if ok || retry <= 0 || retry > 100*time.Millisecond {
		t.Fatalf("past the burst: ok=%v retry=%v", ok, retry)
	}
	snap := q.Snapshot()
	if len(snap) != 1 || snap[0].Kind != KindOpen || snap[0].Limit != 10 || snap[0].Per != time.Second ||
		snap[0].InUse != snap[0].Burst || !snap[0].NextSlot.Equal(clk.Now().Add(retry)) {
		t.Errorf("snapshot %+v (retry %v)", snap, retry)
	}
}

// TestTakeDailyRolling: a day quota never lets more than N through in
// any rolling 24 hours, frees when its oldest bucket leaves the window
// (retryIn says exactly when), and forgets idle keys.
func TestTakeDailyRolling(t *testing.T) {
	clk := newFakeClock()
	q := NewLocal(clk)
	const n = 50
	var grants []time.Time
	end := clk.Now().Add(5 * 24 * time.Hour)
	for i := 0; i < 100_000 && clk.Now().Before(end); i++ {
		ok, retry, err := q.TakeDaily(ctx, "day|rule|r", n)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			grants = append(grants, clk.Now())
			clk.Add(time.Duration(rand.Int64N(int64(40 * time.Minute))))
			continue
		}
		if retry <= 0 || retry > 24*time.Hour+DayBucket {
			t.Fatalf("retryIn %v", retry)
		}
		// Just before retryIn it is still refused; at retryIn it passes.
		clk.Add(retry - time.Millisecond)
		if ok, _, _ := q.TakeDaily(ctx, "day|rule|r", n); ok {
			t.Fatalf("granted %v before retryIn", time.Millisecond)
		}
		clk.Add(time.Millisecond)
	}
	sort.Slice(grants, func(i, j int) bool { return grants[i].Before(grants[j]) })
	if got := maxInWindow(grants, 24*time.Hour); got > n {
		t.Errorf("%d messages in a rolling 24 h, limit %d", got, n)
	}
	if len(grants) < 4*n {
		t.Errorf("%d messages in 5 days at %d/day: the quota does not free", len(grants), n)
	}
	clk.Add(25*time.Hour + sweepEvery)
	q.TakeDaily(ctx, "day|rule|other", n) // runs the sweep
	if got := len(q.Snapshot()); got != 1 {
		t.Errorf("%d keys after a quiet day, want only the new one", got)
	}
}

func TestTakeDailySnapshot(t *testing.T) {
	clk := newFakeClock()
	q := NewLocal(clk)
	for range 3 {
		if ok, _, _ := q.TakeDaily(ctx, "day|rule|r", 3); !ok {
			t.Fatal("refused under the limit")
		}
	}
	ok, retry, _ := q.TakeDaily(ctx, "day|rule|r", 3)
	if ok || retry < 24*time.Hour || retry > 24*time.Hour+DayBucket {
		t.Fatalf("met: ok=%v retry=%v", ok, retry)
	}
	snap := q.Snapshot()
	if len(snap) != 1 || snap[0].Kind != KindDay || snap[0].InUse != 3 || snap[0].Limit != 3 ||
		!snap[0].NextSlot.Equal(clk.Now().Add(retry)) {
		t.Errorf("snapshot %+v, retry %v", snap, retry)
	}
}
