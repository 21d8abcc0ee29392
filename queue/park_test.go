package queue

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

// sendAt spools a message to one recipient whose first attempt is at due.
func (f *fixture) sendAt(t *testing.T, to string, due time.Time) {
	t.Helper()
	now := time.Now()
	m := &spool.Message{Sender: "sender@example.org", Received: now, Expires: now.Add(24 * time.Hour),
		Recipients: []spool.Recipient{{Addr: to, NextAttempt: due}}}
	body := []byte("Subject: later\r\n\r\nhello\r\n")
	m.Size = int64(len(body))
	if err := f.sp.Put(context.Background(), m, body); err != nil {
		t.Fatal(err)
	}
	f.q.Enqueue(m)
}

// goroutinesIn counts the goroutines with any of frames on their stack.
func goroutinesIn(frames ...string) int {
	buf := make([]byte, 8<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		for _, f := range frames {
			if strings.Contains(g, f) {
				count++
				break
			}
		}
	}
	return count
}

// waitParked waits, bounded, until domain's site is parked.
func (f *fixture) waitParked(t *testing.T, domain string) {
	t.Helper()
	f.waitSite(t, domain, "parking", func(s *site) bool { return s.parked && !s.running })
}

// Sites holding mail that is not due for a while keep no goroutine: 200
// of them, and no runner is left once they parked.
func TestHeldSitesKeepNoRunner(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.any.test"})
	later := time.Now().Add(time.Hour)
	const sites = 200
	for i := range sites {
		f.sendAt(t, fmt.Sprintf("a@d%d.test", i), later)
	}
	for i := range sites {
		f.waitParked(t, fmt.Sprintf("d%d.test", i))
	}
	if n := goroutinesIn("queue.(*site).run("); n != 0 {
		t.Errorf("%d runner goroutines for %d sites holding mail due in an hour, want none", n, sites)
	}
	if got := f.q.Totals().Queued; got != sites {
		t.Errorf("Totals().Queued = %d, want %d (parked, not lost)", got, sites)
	}
}

// A parked site's timer starts its runner when the mail is due.
func TestParkedSiteSendsWhenDue(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.soon.test"})
	due := time.Now().Add(parkAfter + 500*time.Millisecond)
	f.sendAt(t, "a@soon.test", due)
	f.waitParked(t, "soon.test")
	if out := f.out.wait(t, 1); !out[0].Delivered {
		t.Fatalf("%+v, want delivered", out[0])
	}
	if now := time.Now(); now.Before(due) {
		t.Errorf("delivered %s before it was due", due.Sub(now))
	}
}

// An operator's retry makes a parked site's mail due now: the runner
// starts at once, not at the timer.
func TestRetryStartsParkedSite(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.later.test"})
	f.sendAt(t, "a@later.test", time.Now().Add(time.Hour))
	f.waitParked(t, "later.test")
	if n, err := f.q.Retry("later.test", "test"); err != nil || n != 1 {
		t.Fatalf("Retry: %d, %v; want 1", n, err)
	}
	if out := f.out.wait(t, 1); !out[0].Delivered {
		t.Fatalf("%+v, want delivered", out[0])
	}
}
