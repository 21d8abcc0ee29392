package queue

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

// waitQuiet waits, bounded, until domain's site has nothing to do: its
// session has lingered and closed, its runner ended.
func (f *fixture) waitQuiet(t *testing.T, domain string) *site {
	t.Helper()
	return f.waitSite(t, domain, "quiet", (*site).idleLocked)
}

// quietOneTest is a fixture that delivered one message to one.test, whose
// site has gone quiet since.
func quietOneTest(t *testing.T) (*fixture, *site) {
	t.Helper()
	f := newFixture(t, sim.Behavior{Name: "mx.one.test"})
	f.q.lingerFor = 20 * time.Millisecond
	f.send(t, "a@one.test")
	f.out.wait(t, 1)
	return f, f.waitQuiet(t, "one.test")
}

// sweeps runs n sweeps, sweepEvery apart, from *at on.
func (f *fixture) sweeps(at *time.Time, n int) (dropped int) {
	for range n {
		*at = at.Add(sweepEvery)
		dropped += f.q.Sweep(*at)
	}
	return dropped
}

// A site with nothing to do for idleSweeps sweeps is forgotten, with its
// domain's record; the domain's next message makes it anew and goes out.
func TestSweepForgetsIdleSites(t *testing.T) {
	f, old := quietOneTest(t)

	at := time.Now()
	if n := f.sweeps(&at, idleSweeps-1); n != 0 || f.q.findSite("one.test") != old {
		t.Fatalf("dropped %d sites after %d quiet sweeps, want none yet", n, idleSweeps-1)
	}
	// Sweeps closer together than sweepEvery count once.
	if n := f.q.Sweep(at.Add(time.Second)); n != 0 {
		t.Fatalf("a sweep a second after the last dropped %d", n)
	}
	if n := f.sweeps(&at, 1); n != 1 {
		t.Fatalf("sweep %d dropped %d sites, want one.test's", idleSweeps, n)
	}
	f.q.mu.Lock()
	_, site := f.q.sites[old.key]
	_, dom := f.q.domains["one.test"]
	f.q.mu.Unlock()
	if site || dom {
		t.Fatalf("after the sweep: site kept %v, domain record kept %v; want both gone", site, dom)
	}
	if vs := f.q.Sites(); len(vs) != 0 {
		t.Errorf("Sites() lists %+v after the sweep", vs)
	}
	if err := f.q.Suspend("one.test", 0, "test"); !ErrUnknownSite(err) {
		t.Errorf("Suspend of a forgotten site: %v, want the unknown-site error", err)
	}

	f.send(t, "b@one.test")
	if out := f.out.wait(t, 2); !out[1].Delivered {
		t.Fatalf("the forgotten domain's next message: %+v, want delivered", out[1])
	}
	if s := f.q.findSite("one.test"); s == nil || s == old {
		t.Fatalf("after the next message the site is %p (the old one %p), want a new one", s, old)
	}
}

// The race the gone mark closes: route (or resolve) took the site under
// q.mu and pushes after letting it go; a sweep dropped the site in
// between. The push finds it gone and routes the job again: the message
// goes out through a new site, not into a heap nobody runs.
func TestPushToSweptSiteRoutesAgain(t *testing.T) {
	f, old := quietOneTest(t)
	at := time.Now()
	if n := f.sweeps(&at, idleSweeps); n != 1 {
		t.Fatalf("dropped %d sites, want 1", n)
	}

	now := time.Now()
	m := &spool.Message{Sender: "sender@example.org", Received: now, Expires: now.Add(time.Hour),
		Recipients: []spool.Recipient{{Addr: "b@one.test"}}}
	body := []byte("Subject: late push\r\n\r\nhello\r\n")
	m.Size = int64(len(body))
	if err := f.sp.Put(t.Context(), m, body); err != nil {
		t.Fatal(err)
	}
	e := entryOf(m)
	e.pending = 1
	old.push(&job{e: e, domain: unique.Make("one.test"), rcpts: []int{0}, index: -1})

	if out := f.out.wait(t, 2); !out[1].Delivered {
		t.Fatalf("pushed to the swept site: %+v, want delivered through a new one", out[1])
	}
	// Through a site the queue knows: the operator sees it, and it counts
	// (the count follows the outcome hook).
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, ok := f.q.Site("one.test")
		if ok && v.Delivered == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("one.test's site after the late push: known %v, %+v; want known with 1 delivered", ok, v)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll of the queue's own view
	}
	old.mu.Lock()
	n, delivered := len(old.jobs), old.stats.delivered
	old.mu.Unlock()
	if n != 0 || delivered != 1 {
		t.Errorf("the swept site holds %d jobs and counts %d delivered since it was swept, want 0 and its 1 from before", n, delivered)
	}
}

// A site with mail waiting, or one an operator suspended, is never
// forgotten, however many sweeps pass.
func TestSweepKeepsSitesWithMailOrSuspension(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.later.test", RcptReply: func(string) string { return "451 4.3.0 later" }})
	f.q.lingerFor = 20 * time.Millisecond
	f.send(t, "a@later.test")
	f.out.wait(t, 1)
	f.waitStatus(t, "later.test", StatusRetry, 1)

	at := time.Now()
	if n := f.sweeps(&at, 3*idleSweeps); n != 0 {
		t.Fatalf("dropped %d sites; later.test has a message waiting for its retry", n)
	}
	f.waitStatus(t, "later.test", StatusRetry, 1)

	if _, err := f.q.Purge("later.test", "test"); err != nil {
		t.Fatal(err)
	}
	f.out.wait(t, 2)
	if err := f.q.Suspend("later.test", 0, "test"); err != nil {
		t.Fatal(err)
	}
	f.waitQuiet(t, "later.test") // quiet, and suspended
	if n := f.sweeps(&at, 3*idleSweeps); n != 0 {
		t.Fatalf("dropped %d sites; later.test is suspended by an operator", n)
	}
	if f.q.findSite("later.test") == nil {
		t.Fatal("the suspended site is gone")
	}
}

// Sweeps race with mail flowing to the same domains, on a clock that runs
// an hour ahead between messages: sites are dropped and made anew while
// jobs route to them. Every message is delivered, once, and at the end the
// queue counts nothing queued. Under -race this is the check of the locks.
func TestSweepWhileMailFlows(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.any.test"})
	f.q.lingerFor = time.Millisecond
	const messages, domains = 400, 20
	stop := make(chan struct{})
	swept := make(chan int)
	go func() {
		at, n := time.Now(), 0
		for {
			select {
			case <-stop:
				swept <- n
				return
			default:
			}
			n += f.sweeps(&at, 1)
			runtime.Gosched()
		}
	}()
	for i := range messages {
		f.send(t, fmt.Sprintf("r%d@d%d.test", i, i%domains))
	}
	outs := f.out.wait(t, messages)
	close(stop)
	dropped := <-swept
	for i, o := range outs {
		if !o.Delivered {
			t.Fatalf("outcome %d: %+v, want delivered", i, o)
		}
	}
	if st := f.prov.Stats(); st.Delivered != messages {
		t.Errorf("the provider got %d messages, want %d once each", st.Delivered, messages)
	}
	if got := f.q.Totals().Queued; got != 0 {
		t.Errorf("Totals().Queued = %d after every message went out", got)
	}
	t.Logf("%d sites dropped while mail flowed", dropped)
}
