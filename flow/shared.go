package flow

import (
	"time"
)

// Shared error windows (a cluster). Each node keeps its own windows and,
// when sharing is on, the counts its attempts added since the last sync
// (per site or (site, source) and bucket). The cluster bridge takes them
// (PendingWindows), adds them to a store every node sees, and hands back
// what the other nodes counted in the same buckets (AdoptWindows): the
// thresholds then see the sum, so errors spread over nodes add up. When
// the store is unreachable the bridge says so (WindowsDegraded): the
// others' counts are dropped, each node judges by its own window again,
// and every decision's detail says so.

// SlotCount is one bucket's counts: Slot is the bucket's number (time in
// nanoseconds divided by the bucket's span, window/30), the same on every
// node with the same window.
type SlotCount struct {
	Slot     int64 `json:"slot"`
	Attempts int32 `json:"attempts"`
	Errors   int32 `json:"errors"`
}

// WindowCounts are counts of one state's window: Source "" for a site.
type WindowCounts struct {
	Site   string
	Source string
	Slots  []SlotCount
}

type pendingKey struct {
	site, source string
	slot         int64
}

// others are the counts of a window's buckets by the other nodes.
type others struct {
	stamp    [buckets]int64
	attempts [buckets]int32
	errors   [buckets]int32
}

// Window is the error window's length (flow_control.window).
func (c *Controller) Window() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.Window
}

// ShareWindows turns on the tracking of counts for other nodes.
func (c *Controller) ShareWindows() {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = map[pendingKey]*[2]int32{}
	}
	c.mu.Unlock()
}

// pend notes an attempt for the other nodes. Caller holds c.mu.
func (c *Controller) pend(site, source string, s *siteState, t time.Time, isErr bool) {
	if c.pending == nil {
		return
	}
	k := pendingKey{site, source, t.UnixNano() / int64(s.win.span)}
	p := c.pending[k]
	if p == nil {
		p = new([2]int32)
		c.pending[k] = p
	}
	p[0]++
	if isErr {
		p[1]++
	}
}

// PendingWindows drains the counts added since the last call, one entry
// for every window with attempts in the window (Slots empty when nothing
// was added), so that the caller fetches the others' counts of each.
func (c *Controller) PendingWindows(now time.Time) []WindowCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	idx := map[[2]string]int{}
	var out []WindowCounts
	entry := func(site, source string) int {
		k := [2]string{site, source}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, WindowCounts{Site: site, Source: source})
		}
		return i
	}
	for k, p := range c.pending {
		i := entry(k.site, k.source)
		out[i].Slots = append(out[i].Slots, SlotCount{Slot: k.slot, Attempts: p[0], Errors: p[1]})
		delete(c.pending, k)
	}
	for site, s := range c.sites {
		if now.Sub(s.win.last()) <= c.cfg.Window || s.shared != nil || s.state != Normal {
			entry(site, "")
		}
	}
	for site, m := range c.sources {
		for src, s := range m {
			if now.Sub(s.win.last()) <= c.cfg.Window || s.shared != nil || s.state != Normal {
				entry(site, src)
			}
		}
	}
	return out
}

// AdoptWindows sets what the other nodes counted in each window's
// buckets (a window missing from the list keeps its last counts), and
// applies the transitions the sums call for.
func (c *Controller) AdoptWindows(now time.Time, counts []WindowCounts) {
	var changes []Change
	c.mu.Lock()
	c.windowsDown = false
	for _, wc := range counts {
		var s *siteState
		if wc.Source == "" {
			s = c.site(wc.Site)
		} else {
			s = c.source(wc.Site, wc.Source)
		}
		_, before, _ := s.win.sums(now)
		before += s.sharedErrors(now)
		o := &others{}
		for _, sc := range wc.Slots {
			i := sc.Slot % buckets
			if o.stamp[i] > sc.Slot {
				continue
			}
			o.stamp[i], o.attempts[i], o.errors[i] = sc.Slot, sc.Attempts, sc.Errors
		}
		s.shared = o
		if len(wc.Slots) == 0 {
			s.shared = nil
		}
		_, after, _ := s.win.sums(now)
		after += s.sharedErrors(now)
		// Errors the other nodes saw count as errors here: the
		// transitions that need an error event may happen.
		ev := Event{Time: now, Site: wc.Site, Err: after > before}
		if ch, ok := c.evaluate(wc.Site, s, now, ev); ok {
			changes = append(changes, ch)
		}
	}
	c.mu.Unlock()
	c.emit(changes, nil)
}

// WindowsDegraded drops the other nodes' counts: the store that shares
// them is unreachable, each node judges by its own window (flagged in
// every decision's detail) until AdoptWindows is called again.
func (c *Controller) WindowsDegraded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.windowsDown = true
	for _, s := range c.sites {
		s.shared = nil
	}
	for _, m := range c.sources {
		for _, s := range m {
			s.shared = nil
		}
	}
}

// sharedSums are the other nodes' counts within the window ending now.
func (s *siteState) sharedSums(now time.Time) (attempts, errs int) {
	o := s.shared
	if o == nil {
		return 0, 0
	}
	slot := now.UnixNano() / int64(s.win.span)
	for i := range o.stamp {
		if d := slot - o.stamp[i]; d >= 0 && d < buckets {
			attempts += int(o.attempts[i])
			errs += int(o.errors[i])
		}
	}
	return
}

func (s *siteState) sharedErrors(now time.Time) int {
	_, e := s.sharedSums(now)
	return e
}

// windowNote is the detail's word on shared windows, "" without sharing.
// Caller holds c.mu.
func (c *Controller) windowNote() string {
	switch {
	case c.pending == nil:
		return ""
	case c.windowsDown:
		return "; error windows: this node's alone (the cluster's store is unreachable)"
	default:
		return "; error windows: shared by the cluster's nodes"
	}
}
