package campaigns

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/queue"
)

// viewAt is a delivery of total recipients, delivered as deliver says
// (seconds after t0 -> how many), seen through view at t0+at.
func viewAt(total int, deliver map[int]int, at time.Duration) (*Store, *record, time.Time) {
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	now := t0.Add(at)
	d := &Store{d: Deps{Now: func() time.Time { return now }}, byID: map[string]*record{}}
	dm := &record{ID: "d1", Created: t0, Total: total, mu: &sync.Mutex{}}
	for _, s := range slices.Sorted(maps.Keys(deliver)) {
		for range deliver[s] {
			ts := t0.Add(time.Duration(s) * time.Second)
			if dm.First.IsZero() || ts.Before(dm.First) {
				dm.First = ts
			}
			dm.Recent.add(ts)
			dm.Counts.Delivered++
		}
	}
	return d, dm, now
}

// TestDeliveryRateYoung: three seconds in, 2,322 delivered is 46,440/min
// (not 2,322/min, the count so far), and the ETA follows from it.
func TestDeliveryRateYoung(t *testing.T) {
	d, dm, now := viewAt(5000, map[int]int{0: 774, 1: 774, 2: 774}, 3*time.Second)
	v := d.view(dm)
	if v.RatePerMinute != 46440 {
		t.Errorf("rate = %.0f/min, want 46440", v.RatePerMinute)
	}
	remaining, rate := float64(5000-2322), 46440.0
	want := now.Add(time.Duration(remaining / rate * float64(time.Minute)))
	if v.ETA == nil || v.ETA.Sub(want).Abs() > time.Millisecond {
		t.Errorf("ETA = %v, want %v", v.ETA, want)
	}
}

// TestDeliveryRateWindow: the rate is the last minute's, not the average
// since the start: a fast first minute, then a slow one.
func TestDeliveryRateWindow(t *testing.T) {
	deliver := map[int]int{}
	for s := range 60 {
		deliver[s] = 100 // 6,000 in the first minute
	}
	for s := 61; s < 120; s += 6 {
		deliver[s] = 1 // 10 in the second
	}
	d, dm, _ := viewAt(100000, deliver, 120*time.Second)
	if v := d.view(dm); v.RatePerMinute != 10 {
		t.Errorf("rate = %.1f/min, want 10 (the last minute's)", v.RatePerMinute)
	}
	// Nothing in the last minute: no rate, no ETA, and why.
	d, dm, _ = viewAt(100000, map[int]int{0: 50}, 5*time.Minute)
	if v := d.view(dm); v.RatePerMinute != 0 || v.ETA != nil || !strings.Contains(v.ETANote, "nothing finished in the last minute") {
		t.Errorf("stalled: %+v", v)
	}
	// Thousands a second are all counted (a list cut to a fixed length
	// would not).
	d, dm, _ = viewAt(1000000, map[int]int{0: 20000, 1: 20000}, 2*time.Second)
	if v := d.view(dm); v.RatePerMinute != 1200000 {
		t.Errorf("fast: rate = %.0f/min, want 1200000", v.RatePerMinute)
	}
}

// TestDeliveryETAHeld: recipients held by a suspended site or flow control
// are left out of the ETA, which says so; when all are held there is no
// ETA and the note names why.
func TestDeliveryETAHeld(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 3, 0, time.UTC)
	by := map[string]int{queue.StatusSuspended: 2000, queue.StatusFlowControl: 500, queue.StatusDue: 178, queue.StatusInFlight: 0}
	eta, held, note := deliveryETA(now, 2678, 46440, by)
	unheld, rate := 178.0, 46440.0
	want := now.Add(time.Duration(unheld / rate * float64(time.Minute)))
	if eta == nil || !eta.Equal(want) || held != 2500 {
		t.Errorf("ETA %v held %d, want %v and 2500", eta, held, want)
	}
	if note != "for the 178 recipients not held; 2500 held (dynamic flow control 500, suspended site 2000) have no ETA" {
		t.Errorf("note = %q", note)
	}
	eta, held, note = deliveryETA(now, 2500, 46440, map[string]int{queue.StatusSuspended: 2000, queue.StatusMXFailed: 500})
	if eta != nil || held != 2500 || note != "unknown: all 2500 queued recipients are held (MX lookup failed 500, suspended site 2000)" {
		t.Errorf("all held: %v %d %q", eta, held, note)
	}
	if eta, held, note := deliveryETA(now, 0, 100, by); eta != nil || held != 0 || note != "" {
		t.Errorf("nothing queued: %v %d %q", eta, held, note)
	}
}
