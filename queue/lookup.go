package queue

import "sync"

// MX lookups are queued, and at most maxLookups workers serve the queue.
// A goroutine per domain waiting its turn was 4-8 KB of stack each: a
// restart with 100,000 domains, or a campaign's first minute, started
// 100,000 of them at once. A domain whose lookup failed waits for its
// next one on a timer, not in a goroutine (resolve).
type lookupQueue struct {
	mu      sync.Mutex
	waiting []*domainState
	workers int
}

// add queues d's lookup and starts a worker if fewer than maxLookups run.
// After Close it does nothing: the jobs are in the spool, and the next
// start looks their domains up again.
func (l *lookupQueue) add(q *Queue, d *domainState) {
	if q.isClosed() {
		return // a failed lookup's timer may fire after Close
	}
	l.mu.Lock()
	l.waiting = append(l.waiting, d)
	start := l.workers < maxLookups && q.addLive()
	if start {
		l.workers++
	}
	l.mu.Unlock()
	if start {
		go l.work(q)
	}
}

// work resolves queued domains until none is left or the queue closes.
func (l *lookupQueue) work(q *Queue) {
	defer q.wg.Done()
	for {
		l.mu.Lock()
		if len(l.waiting) == 0 || q.isClosed() {
			l.workers--
			l.mu.Unlock()
			return
		}
		d := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		l.mu.Unlock()
		q.resolve(d)
	}
}
