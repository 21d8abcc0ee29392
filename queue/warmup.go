package queue

import (
	"time"

	"github.com/penstock-mta/penstock/warmup"
)

// StatusWarmup: every source of the site's pool that may send to it is
// warming up and has spent its volume for now (docs/ARCHITECTURE.md §4).
const StatusWarmup = "Messages queued (warm-up quota met)"

// warmupRecheck bounds a wait on a warm-up window: the day rolls over (or
// a cluster peer's count changes) without anybody poking the runner.
const warmupRecheck = time.Minute

// warmRetake is the pause after a source's volume ran out at a claim.
const warmRetake = 10 * time.Millisecond

// Warmup gates a source's messages to a provider group while it warms up
// (package warmup). Check answers without counting; Take counts one
// message that may go.
type Warmup interface {
	Check(source, rule string, hosts []string) warmup.Verdict
	Take(source, rule string, hosts []string) warmup.Verdict
	// Changed is closed when a warm-up window ends.
	Changed() <-chan struct{}
}

// warmSources keeps the pool's sources that may send to the site now: a
// warming source whose volume is spent is left out, so its mail spills
// over to the pool's other sources. With none left it records the wait
// and returns how long to sleep, or until what. Caller does not hold s.mu.
func (s *site) warmSources(lim limits, pool []Source) ([]Source, time.Duration, <-chan struct{}) {
	w := s.q.deps.Warmup
	if w == nil {
		return pool, 0, nil
	}
	changed := w.Changed() // before the checks: a window ending after them still wakes
	hosts := s.hostNames()
	kept := make([]Source, 0, len(pool))
	var refused warmup.Verdict
	for _, src := range pool {
		v := w.Check(src.Name, lim.match.Rule.Name, hosts)
		if v.OK {
			kept = append(kept, src)
		} else if refused.Until.IsZero() || v.Until.Before(refused.Until) {
			refused = v
		}
	}
	if len(kept) > 0 {
		return kept, 0, nil
	}
	s.mu.Lock()
	s.setWait(warmWait(lim, refused))
	s.mu.Unlock()
	return nil, min(max(refused.Retry, time.Millisecond), warmupRecheck), changed
}

func warmWait(lim limits, v warmup.Verdict) Wait {
	return Wait{Status: StatusWarmup, Rule: lim.match.Rule.Name, Key: v.Source + "|" + v.Group,
		Limit: int(v.Limit), InUse: int(v.Count), Until: v.Until, Detail: v.Detail()}
}

// takeWarm counts a claimed job against its source's warm-up volume
// (one per message). Refused, the job goes back and the wait is recorded;
// the runner steps again at once and waits in warmSources, where the
// window's end wakes it.
func (s *site) takeWarm(lim limits, j *job) (time.Duration, bool) {
	w := s.q.deps.Warmup
	if w == nil || lim.source == "" {
		return 0, true
	}
	v := w.Take(lim.source, lim.match.Rule.Name, s.hostNames())
	if v.OK {
		return 0, true
	}
	s.refuse(j, warmWait(lim, v))
	return warmRetake, false
}
