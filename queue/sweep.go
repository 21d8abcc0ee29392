package queue

import "time"

// Sites and domains the queue no longer needs are forgotten. Without this
// a campaign to 100,000 domains kept a site (its heap, counters and
// fair-share tags) and a domain record for each for as long as the
// process ran, ~2 KB a domain, and every garbage collection marked them
// all: 60,000 domains, one message each, left 280 MB of live heap.
//
// Sweep looks at every site each sweepEvery. A site with nothing to do
// (no job queued or claimed, no session, no runner, no operator
// suspension, no tenant hold) counts a quiet sweep; a push sets the count
// back to zero. After idleSweeps quiet sweeps in a row (an hour) the site
// is marked gone and dropped, with every domain record that points at it
// and waits for nothing. Both happen under q.mu and the site's lock. Route
// and resolve push after they let q.mu go, so a push may still reach a
// site just dropped: it finds it gone and routes the job again, which
// finds the domain's record cleared and makes its site anew (the MX
// answer is in the resolver's cache). Flow control keeps its own state
// of the site (it forgets a quiet, healthy one on its own terms); the
// site's counters and recent replies, all older than the hour, go with
// it.
const (
	sweepEvery = 5 * time.Minute
	idleSweeps = 12
)

// Sweep forgets the sites idle for idleSweeps sweeps and their domains'
// records; the owner calls it periodically (it does nothing within
// sweepEvery of the last sweep). It returns how many sites it dropped.
func (q *Queue) Sweep(now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.swept.IsZero() && now.Sub(q.swept) < sweepEvery {
		return 0
	}
	q.swept = now
	n := 0
	for key, s := range q.sites {
		s.mu.Lock()
		if !s.emptyLocked() {
			s.quiet = 0
		} else if s.quiet++; s.quiet >= idleSweeps {
			s.gone = true
			delete(q.sites, key)
			n++
		}
		s.mu.Unlock()
	}
	if n == 0 {
		return 0
	}
	for key, d := range q.domains {
		if d.site == nil || !d.site.gone {
			continue
		}
		d.site = nil // route resolves it again
		if !d.resolving && len(d.pending) == 0 {
			delete(q.domains, key)
		}
	}
	return n
}

// emptyLocked reports whether the site has nothing to do and nothing an
// operator or a tenant quota set on it. Caller holds s.mu.
func (s *site) emptyLocked() bool {
	return s.idleLocked() && !s.opSuspended && len(s.holds) == 0
}

// idleLocked reports whether the site has no job queued or claimed, no
// session, no runner and no probe. Caller holds s.mu.
func (s *site) idleLocked() bool {
	return len(s.jobs) == 0 && s.inflight == 0 && s.active == 0 && !s.running &&
		!s.probing && len(s.probingSrc) == 0
}
