package dns

import (
	"io"
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
	idle chan func() // unbuffered: a send succeeds only into an idle worker
	mu   sync.Mutex
	quit chan struct{} // closed by close
	done bool
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
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.done = true
		close(w.quit)
	}
}

// Close ends the client's idle lookup goroutines and closes the sockets it
// kept for reuse. A lookup made afterwards still gets its answer.
func (c *client) Close() error {
	c.w.close()
	for _, ch := range c.idle {
		for drained := false; !drained; {
			select {
			case conn := <-ch:
				conn.Close()
			default:
				drained = true
			}
		}
	}
	return nil
}

// Close ends the cache's idle lookup goroutines, then closes the resolver
// it wraps when that is an io.Closer.
func (c *cache) Close() error {
	c.w.close()
	return closeResolver(c.r)
}

// Close closes the resolver the guard wraps when that is an io.Closer.
func (g *Guard) Close() error { return closeResolver(g.r) }

// Close ends the TLSA cache's idle lookup goroutines and closes the
// resolver it wraps when that is an io.Closer.
func (t *tlsaCache) Close() error {
	t.c.w.close()
	return closeResolver(t.r)
}

func closeResolver(r any) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
