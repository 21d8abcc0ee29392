package flow

import (
	"fmt"
	"time"
)

// Reset returns a site to normal at once (operator resume).
func (c *Controller) Reset(key string) {
	var changes []Change
	c.mu.Lock()
	if s := c.sites[key]; s != nil && s.state != Normal {
		changes = append(changes, c.to(key, s, Normal, c.opts.Now(), time.Time{}, "resumed by operator"))
		s.suspends = 0
	}
	if s := c.sites[key]; s != nil && s.limit != nil {
		changes = append(changes, Change{Time: c.opts.Now(), Site: key, From: Limited, To: s.state,
			Reason: fmt.Sprintf("limit of pattern `%s` ended by operator", s.limit.pattern)})
		s.limit = nil
	}
	for _, s := range c.sources[key] {
		if s.state != Normal {
			changes = append(changes, c.to(key, s, Normal, c.opts.Now(), time.Time{}, "resumed by operator"))
			s.suspends = 0
		}
		s.limit, s.consec = nil, 0
	}
	c.mu.Unlock()
	c.emit(changes, nil)
}

// Suspend forces a suspension (operator action) for d.
func (c *Controller) Suspend(key string, d time.Duration, reason string) {
	now := c.opts.Now()
	c.mu.Lock()
	ch := c.to(key, c.site(key), Suspended, now, now.Add(d), reason)
	c.mu.Unlock()
	c.emit([]Change{ch}, nil)
}

// Adopt applies a state change decided elsewhere (another node of the
// cluster): the site takes the state, its until and reason, without
// emitting a change of its own (no echo).
func (c *Controller) Adopt(ch Change) {
	if ch.To != Normal && ch.To != Backoff && ch.To != Suspended {
		return
	}
	if ch.From == Limited {
		// The end of another node's timed limit says nothing about the
		// state: adopting its "normal" would end our backoff.
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.site(ch.Site)
	if ch.Source != "" {
		s = c.source(ch.Site, ch.Source)
	}
	if s.state == ch.To && !ch.Until.After(s.until) {
		return
	}
	c.to(ch.Site, s, ch.To, ch.Time, ch.Until, ch.Reason+" (on another node)")
}
