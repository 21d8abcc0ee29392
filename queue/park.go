package queue

import "time"

// A site whose mail is not due for a while has no runner. A runner is a
// goroutine, and a goroutine's stack stays grown while it sleeps: 100,000
// sites holding mail for a retry slept in 394 MiB of stacks, more than
// their queued mail took. Such a site is parked instead: step ends the
// runner and a timer (a few words, no stack) starts it again at the next
// due time. Whatever else may want the runner before then starts it as it
// would start an ended one: a push (enqueueLocked, refuse) finds it not
// running; an operator's retry, resume, suspend or purge, and a resumed
// tenant or campaign, call nudge. A site parks only with no session open
// and no job claimed, so nothing of its own can change its heap meanwhile.

// parkAfter is the shortest wait for which the runner parks rather than
// sleeps.
const parkAfter = time.Second

// parkLocked ends the runner (step returns -1 after it) and arms the timer
// that starts it again in d. Caller holds s.mu.
func (s *site) parkLocked(d time.Duration) {
	s.running, s.parked = false, true
	if s.park == nil {
		s.park = time.AfterFunc(d, s.unpark)
	} else {
		s.park.Reset(d)
	}
}

// claimRunnerLocked reports whether the caller is to start the runner (go
// s.run()): none runs and the queue is open (the runner counts in q.wg).
// The site is then running, and parked no longer. Caller holds s.mu.
func (s *site) claimRunnerLocked() bool {
	if s.running || !s.q.addLive() {
		return false
	}
	s.running, s.parked = true, false
	return true
}

// unpark starts the runner of a parked site; of any other site it does
// nothing.
func (s *site) unpark() {
	s.mu.Lock()
	start := s.parked && s.claimRunnerLocked()
	s.mu.Unlock()
	if start {
		go s.run()
	}
}

// nudge makes the runner look again: it starts a parked one and pokes
// one that sleeps.
func (s *site) nudge() {
	s.unpark()
	s.poke()
}

// stopPark disarms the timer of a parked site (the queue is closing).
func (s *site) stopPark() {
	s.mu.Lock()
	if s.park != nil {
		s.park.Stop()
	}
	s.mu.Unlock()
}
