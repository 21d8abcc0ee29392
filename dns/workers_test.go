package dns

import (
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/sim"
)

// goroutineID is the calling goroutine's number, from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}

// alive reports whether goroutine id still exists.
func alive(id string) bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Contains(string(buf[:n]), "goroutine "+id+" [")
}

// One lookup after another runs on the one kept goroutine; close ends it.
func TestWorkersKeepOneGoroutineAndCloseEndsIt(t *testing.T) {
	w := newWorkers()
	ids := make(chan string)
	report := func() { ids <- goroutineID() }
	w.run(report)
	first := <-ids
	for i := 2; i <= 5; i++ {
		// What run does when a worker idles, waiting (bounded) for the
		// worker that just answered to be back at its receive.
		deadline := time.Now().Add(5 * time.Second)
		for sent := false; !sent; {
			select {
			case w.idle <- report:
				sent = true
			default:
				if time.Now().After(deadline) {
					t.Fatalf("lookup %d: the kept worker never came back", i)
				}
				time.Sleep(time.Millisecond) // a bounded wait for it
			}
		}
		if id := <-ids; id != first {
			t.Fatalf("lookup %d ran on goroutine %s, the first on %s: want the same", i, id, first)
		}
	}
	w.close()
	w.close() // twice is fine
	deadline := time.Now().Add(5 * time.Second)
	for alive(first) {
		if time.Now().After(deadline) {
			t.Fatal("the idle worker is still there after close")
		}
		time.Sleep(5 * time.Millisecond) // a bounded wait for it to return
	}
	// Closed, it still runs what it is given.
	w.run(report)
	<-ids
}

// A cache's Close ends its workers and closes what it wraps, down to the
// client; a lookup afterwards still gets its answer.
func TestCloseReachesTheClient(t *testing.T) {
	s, r := world(t)
	s.SetMX("one.test", sim.MXRecord{Host: "mx.one.test", Pref: 10})
	c := NewCache(NewGuard(r, GuardConfig{}), 0, nil)
	if _, err := c.LookupMX(ctxT(t), "one.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]*workers{"cache": c.(*cache).w, "client": r.(*client).w} {
		select {
		case <-w.quit:
		default:
			t.Errorf("the %s's workers are not closed", name)
		}
	}
	s.SetMX("two.test", sim.MXRecord{Host: "mx.two.test", Pref: 10})
	if res, err := c.LookupMX(ctxT(t), "two.test"); err != nil || len(res.Hosts) != 1 {
		t.Fatalf("a lookup after Close: %+v, %v; want its answer", res, err)
	}
}
