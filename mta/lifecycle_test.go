package mta_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// ownGoroutines returns the stacks of the goroutines that belong to a
// running node: any with a frame in Penstock's packages or in an HTTP or
// SMTP server, leaving out the simulated world (it outlives the node) and
// the test itself.
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		if len(buf) >= 64<<20 {
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "penstock/sim.") {
			continue
		}
		if strings.Contains(g, "github.com/penstock-mta/penstock/") || strings.Contains(g, "net/http.(*conn).serve") ||
			strings.Contains(g, "net/http.(*Server).Serve") {
			out = append(out, g)
		}
	}
	return out
}

// After Shutdown returns, no goroutine of the node is left: every one has an
// owner that stopped it and waited for it (listeners, the ticker, the
// queue, the delivery-log subscribers that feed the dashboard, the metrics
// and the bounce statistics).
func TestShutdownLeavesNoGoroutine(t *testing.T) {
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "alpha"}, []string{"alpha.test"}, "mx.alpha.test")
	if err != nil {
		t.Fatal(err)
	}
	if left := ownGoroutines(); len(left) > 0 {
		t.Fatalf("%d goroutines of an earlier node before the test:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	h := newHarness(t, w, nil)
	h.sendMany(20, 4, func(i int) string { return "user" + string(rune('a'+i)) + "@alpha.test" })
	waitDelivered(t, p, 20, 30*time.Second)
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == 20 })
	var tl any
	if code := h.api("GET", "/api/v1/timeline?minutes=5", &tl); code != 200 {
		t.Fatalf("timeline: HTTP %d", code)
	}
	if len(ownGoroutines()) == 0 {
		t.Fatal("no goroutine of the running node found: the check cannot see them")
	}
	h.stop()
	// Shutdown has returned: what it owns has stopped. A goroutine it
	// waited for may still be on its way out (the spool's committer closes
	// its done channel as it returns: seen once under load), and
	// connections the test itself opened take a moment to be torn down
	// (the HTTP client's idle connection), hence a short bounded wait: a
	// goroutine that leaked is still there after it.
	left := ownGoroutines()
	deadline := time.Now().Add(5 * time.Second)
	for len(left) > 0 && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond) // a bounded poll, not a synchronisation
		left = ownGoroutines()
	}
	if len(left) > 0 {
		t.Fatalf("%d goroutines of the node left after Shutdown:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
