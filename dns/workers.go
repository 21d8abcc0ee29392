package dns

import (
	"sync"
	"time"
)

// workers runs lookups on goroutines kept between them. Unpacking a reply
// (miekg/dns's name decoding) needs more stack than a new goroutine
// starts with, and the runtime grows a stack by copying it, doubling at a
// time: on a fresh goroutine for every query that was ~5 µs a query, 7%
// of Penstock's CPU for a campaign whose every recipient was at a new
// domain (four queries each). A kept goroutine has grown its stack
// already. Nothing bounds how many run at once: as many as lookups are in
// flight, as before. One left idle for workerIdle ends; close ends the
// idle ones at once (a busy one ends with its lookup, which its callers'
// contexts bound), and lookups after it get a goroutine each.
type workers struct {
	idle chan func()   // unbuffered: a send succeeds only into an idle worker
	quit chan struct{} // closed by close
	once sync.Once
}

// workerIdle is how long a worker waits for the next lookup before it
// ends.
const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{idle: make(chan func()), quit: make(chan struct{})}
}

// run calls f on an idle worker, or on a new one.
func (w *workers) run(f func()) {
	select {
	case w.idle <- f:
	default:
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-w.idle:
		case <-t.C:
			return
		case <-w.quit:
			return
		}
	}
}

// close ends the idle workers; it may be called more than once.
func (w *workers) close() { w.once.Do(func() { close(w.quit) }) }
