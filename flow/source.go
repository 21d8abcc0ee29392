package flow

import (
	"slices"
	"sort"
	"strings"
	"time"
)

// SourceDecision is flow control's answer for one source at a site.
type SourceDecision struct {
	Source string `json:"source"`
	Decision
}

// troubled: a source state that changes how the source may be used.
func (s *siteState) troubled() bool {
	return s.state != Normal || s.consec > 0 || s.limit != nil
}

// Sources returns the decisions of a site's sources that are out of
// normal (a backoff, a suspension, errors in a row, a timed limit),
// sorted by source; nil when every source may be used at the site's
// limits. It takes no probe slot (TakeProbe does). It is on the
// scheduler's path: the decisions are lean (no Detail, Diagnosis or last
// errors, which SourcesAll gives), and with every source normal it
// allocates nothing.
func (c *Controller) Sources(key string, now time.Time) []SourceDecision {
	var changes []Change
	var out []SourceDecision
	c.mu.Lock()
	for src, s := range c.sources[key] {
		if !s.troubled() {
			continue
		}
		changes = c.advance(key, s, now, changes)
		if s.troubled() {
			out = append(out, SourceDecision{Source: src, Decision: c.gate(s, now)})
		}
	}
	c.mu.Unlock()
	c.emit(changes, nil)
	if len(out) > 1 {
		slices.SortFunc(out, func(a, b SourceDecision) int { return strings.Compare(a.Source, b.Source) })
	}
	return out
}

// SourcesAll is Sources with every source that has recent attempts,
// healthy ones included (for explain).
func (c *Controller) SourcesAll(key string, now time.Time) []SourceDecision {
	var changes []Change
	var out []SourceDecision
	c.mu.Lock()
	for src, s := range c.sources[key] {
		var d Decision
		d, changes = c.decideState(key, s, now, false, changes)
		out = append(out, SourceDecision{Source: src, Decision: d})
	}
	c.mu.Unlock()
	c.emit(changes, nil)
	slices.SortFunc(out, func(a, b SourceDecision) int { return strings.Compare(a.Source, b.Source) })
	return out
}

// TakeProbe takes a suspended source's probe slot when one is due (the
// next comes one probe_interval later); it reports whether the caller
// may open the probe connection.
func (c *Controller) TakeProbe(key, src string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sources[key][src]
	if s == nil {
		return true
	}
	if s.state == Suspended {
		if now.Before(s.nextProbe) {
			return false
		}
		s.nextProbe = now.Add(c.cfg.ProbeInterval)
	}
	return true
}

// SourceStates counts (site, source) states per state (for metrics):
// the sources flow control knows of, with recent attempts.
func (c *Controller) SourceStates() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{Normal: 0, Backoff: 0, Suspended: 0}
	for _, m := range c.sources {
		for _, s := range m {
			out[s.state]++
		}
	}
	return out
}

// SourcesNotNormal lists the (site, source) pairs not in the normal
// state, as "site source", sorted.
func (c *Controller) SourcesNotNormal() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, m := range c.sources {
		for src, s := range m {
			if s.state != Normal {
				out = append(out, k+" "+src)
			}
		}
	}
	sort.Strings(out)
	return out
}
