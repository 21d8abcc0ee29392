package queue

import (
	"time"

	"github.com/penstock-mta/penstock/quota"
)

// benchGate is the gate part of site.step, without the session.
func benchGate(q *Queue, s *site, cfg *Config) (*job, quota.Lease, bool) {
	now := time.Now()
	s.mu.Lock()
	lim := s.limits(cfg, q.flowCheck(s.key, now))
	plan := s.planPool(lim, cfg.Pools[""], q.flowSources(s.key, now))
	s.mu.Unlock()
	lease, _, _, lim, _, ok := s.acquire(cfg, lim, s.hosts, plan)
	if !ok {
		return nil, nil, false
	}
	j, _ := s.claim(lim, lease.Key())
	if j == nil {
		lease.Release()
		return nil, nil, false
	}
	return j, lease, true
}
