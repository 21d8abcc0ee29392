package dns

import "time"

// workers runs lookups on goroutines kept between them. Unpacking a reply
// (miekg/dns's name decoding) needs more stack than a new goroutine
// starts with, and the runtime grows a stack by copying it, doubling at a
// time: on a fresh goroutine for every query that was ~5 µs a query, 7%
// of Penstock's CPU for a campaign whose every recipient was at a new
// domain (four queries each). A kept goroutine has grown its stack
// already. Nothing bounds how many run at once: as many as lookups are in
// flight, as before; one left idle for workerIdle ends.
type workers struct {
	idle chan func() // unbuffered: a send succeeds only into an idle worker
}

// workerIdle is how long a worker waits for the next lookup before it
// ends.
const workerIdle = 10 * time.Second

var lookups = workers{idle: make(chan func())}

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
		}
	}
}
