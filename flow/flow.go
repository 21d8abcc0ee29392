// Package flow is Penstock's dynamic flow control: it watches the outcome
// of every attempt per site and per path, and puts a destination that
// produces too many errors in a brief period into backoff or suspension so
// that a throttling event does not become a block. It recovers on its own.
//
// Algorithm. Each site (and each (site, source), below) keeps a sliding window (window, split into fixed
// buckets: no allocation per event) of attempts and errors. An error is any
// failed attempt to connect or deliver, our own local errors included;
// recipient-level rejections (user unknown) are filtered out by the caller.
//
//   - normal → backoff when the window holds at least min_attempts and the
//     error ratio reaches error_ratio, or at once when a reply matches a
//     response pattern whose action is backoff. In backoff the rule's
//     connection limit is multiplied by connections_factor and the message
//     rate by rate_factor (when the rule sets no rate, the delivery rate
//     the site took before the trouble began is cut instead). Errors that
//     go on at the cut limits halve them again, at most once per
//     step_interval, down to 1/16 (multiplicative decrease).
//   - backoff → suspended when errors stay at or above suspend_ratio for a
//     whole step interval, or when a pattern says suspend. A suspension
//     lasts suspend_for, doubling on each repeat up to max_suspend. While
//     suspended only a probe (one connection, one message) goes out each
//     probe_interval; a probe that delivers, or the end of the suspension,
//     steps the site back to backoff.
//   - backoff → normal after recover_after without errors, in steps of one
//     step_interval each (factor halfway up to 1 each step), so a site never
//     flaps faster than one change per step.
//
// Timed limits. A pattern whose action is limit does not change the
// state: it caps the rule's max_connections, max_messages_per_connection,
// messages_per_hour or max_connection_rate (those it names) for its
// duration, then eases back, never snapping: each step_interval gives back
// half of what is still held (1/2, 3/4, 7/8, 15/16 of the gap to the
// rule; a cap under an unlimited rule doubles instead), then the limit
// ends. Backoff cuts apply on top of it. Each start, step and end is a
// Change naming the pattern (From/To "limited"), for the delivery log and
// the dashboard's timeline; a match during a limit starts it again. Limits
// are this node's: Adopt does not carry them to other nodes.
//
// Per source. Providers judge the IP that connects, so each (site,
// source) has a window and a state of its own, run by the same machine as
// a site's. An error is routed by one rule:
//
//   - tied to the source: any error of an attempt that went out from a
//     known source IP (Event.Source, or the source of Event.Path): remote
//     replies (reputation and throttle replies, block lists, any 4xx)
//     and connections refused, reset or timed out from that IP. The
//     patterns about sources (all but Pattern.Site) act on the source.
//   - site-wide: errors with no source (MX or address lookups, no
//     address, a source without an IP: "*"), and a reply matching a
//     pattern marked Site (the provider's own load, not our IP).
//
// Every attempt counts in the site's window too (its errors only when
// site-wide), so the site's ratio is site-wide errors over all attempts
// and one source's trouble never moves the site. The site as a whole is
// held when every source of its pool is: the scheduler sees that, not
// this package, which does not know the pools (Sources lists the troubled
// sources; the queue plans the pool). A source's diagnosis names it:
// "reputation of source 192.0.2.10 at <site>". A quiet normal source is
// forgotten after a window.
//
// Shared windows (a cluster): with ShareWindows on, the counts each
// attempt adds are also kept for the cluster bridge (PendingWindows),
// which adds them in Redis and hands back the other nodes' counts of the
// same buckets (AdoptWindows); the thresholds judge the sum. With Redis
// away (WindowsDegraded) each node judges by its own window, and the
// detail says so.
//
// Local or reputation? The controller also looks across sites: when errors
// rise at many active sites at once (at least local_min_sites and
// local_site_ratio of the active ones), or the resolver fails for many
// domains, the cause is most likely on our side (DNS, network, TLS setup,
// the MTA). It then records a local problem, says so in every site's
// detail, and does not escalate sites into suspensions for it. Errors that
// sit at a few sites are reported as the provider throttling or blocking
// us (reputation).
//
// States are made at a site's first event and forgotten by Tick once
// normal, quiet and healthy for a whole window (no limit stepping, no
// suspension to double next time): a site without a state reads normal,
// so a campaign's long tail of domains leaves nothing behind.
//
// Patterns only ever see replies from remote servers (a code was
// received), never Penstock's own deferral texts, so a suspension can not
// feed itself.
//
// The package never opens connections and never touches the queue: the
// dispatcher asks Check before opening a connection and reports each
// attempt with Record.
package flow

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// States of a site.
const (
	Normal    = "normal"
	Backoff   = "backoff"
	Suspended = "suspended"
)

// Event is one attempt's outcome, as the dispatcher reports it.
type Event struct {
	Time   time.Time
	Site   string // "" when the site is unknown (MX lookup failed)
	Domain string
	Path   string // "sourceIP>mxIP"; "" when no connection was made
	// Source is the source IP the attempt went out from; "" takes it
	// from Path ("" or "*" there: no source, the event is the site's).
	Source   string
	OK       bool
	Err      bool
	Local    bool // no remote reply: DNS, bind, refused/timeout connect, TLS setup (whose side each is: bounce.OurSide)
	DNS      bool
	Code     int
	Enhanced string
	Text     string
}

// Decision is flow control's answer for a site.
type Decision struct {
	State      string    `json:"state"`
	Hold       bool      `json:"hold"`
	Probe      bool      `json:"probe,omitempty"`
	ConnFactor float64   `json:"connections_factor"`
	RateFactor float64   `json:"rate_factor"`
	ObservedPH int       `json:"observed_per_hour,omitempty"` // deliveries per hour the site took before trouble began
	Since      time.Time `json:"since,omitempty"`
	Until      time.Time `json:"until,omitempty"`
	Attempts   int       `json:"attempts"`
	Errors     int       `json:"errors"`
	Ratio      float64   `json:"error_ratio"`
	Local      bool      `json:"local_problem,omitempty"`
	Diagnosis  string    `json:"diagnosis,omitempty"`
	Detail     string    `json:"detail"`
	LastErrors []string  `json:"last_errors,omitempty"`
	// Limit is a pattern's timed limit in force (action "limit"), nil if
	// none: it caps the rule's values, backoff cuts apply on top.
	Limit *Limit `json:"limit,omitempty"`
}

// Change is a state change, for the delivery log and metrics.
type Change struct {
	Time     time.Time
	Site     string
	Source   string `json:",omitempty"` // "" for the site's own state
	From, To string
	Until    time.Time
	Reason   string
	Attempts int
	Errors   int
	Local    bool
}

// LocalProblem is raised when errors look like ours rather than the
// providers'.
type LocalProblem struct {
	Time        time.Time
	Active      bool // false: the problem has cleared
	ErrorSites  int
	ActiveSites int
	DNSDomains  int
	Detail      string
}

// Options are the controller's outlets.
type Options struct {
	Now      func() time.Time
	OnChange func(Change)       // called without locks held
	OnLocal  func(LocalProblem) // called without locks held
}

type siteState struct {
	win        window
	state      string
	since      time.Time
	until      time.Time // end of a suspension or of a pattern's backoff
	level      float64   // current factor in backoff
	lastChange time.Time
	lastError  time.Time
	lastLocal  bool // the last error was local
	suspends   int  // repeats, for doubling
	nextProbe  time.Time
	lastErrs   []string
	reason     string
	pattern    map[int]*hits
	created    time.Time
	baseRate   int // deliveries per hour seen when trouble began (0: unknown)
	consec     int // errors in a row, without a success between them
	limit      *limitState
	source     string  // "" for a site's state, the source IP for a (site, source) state
	shared     *others // the other nodes' counts (cluster), nil without
}

// Controller is the in-process flow control. Safe for concurrent use.
type Controller struct {
	cfg  Config
	opts Options

	mu        sync.Mutex
	sites     map[string]*siteState
	sources   map[string]map[string]*siteState // site -> source IP -> state
	dns       map[string]time.Time             // domains whose MX lookup failed, and when
	dnsOK     time.Time
	local     bool
	localInfo LocalProblem
	lastScan  time.Time
	// pending: counts for the other nodes (shared windows), nil when
	// not shared; windowsDown: the store that shares them is away.
	pending     map[pendingKey]*[2]int32
	windowsDown bool
}

// New builds a controller.
func New(cfg Config, opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Controller{cfg: cfg.withDefaults(), opts: opts, sites: map[string]*siteState{},
		sources: map[string]map[string]*siteState{}, dns: map[string]time.Time{}}
}

// SetConfig swaps thresholds and patterns (reload); states are kept.
func (c *Controller) SetConfig(cfg Config) {
	c.mu.Lock()
	c.cfg = cfg.withDefaults()
	c.mu.Unlock()
}

func (c *Controller) site(key string) *siteState {
	s := c.sites[key]
	if s == nil {
		s = c.newState("")
		c.sites[key] = s
	}
	return s
}

// source is the state of one source at a site. Caller holds c.mu.
func (c *Controller) source(key, src string) *siteState {
	m := c.sources[key]
	if m == nil {
		m = map[string]*siteState{}
		c.sources[key] = m
	}
	s := m[src]
	if s == nil {
		s = c.newState(src)
		m[src] = s
	}
	return s
}

func (c *Controller) newState(src string) *siteState {
	s := &siteState{state: Normal, level: 1, win: window{span: c.cfg.Window / buckets}, created: c.opts.Now(), source: src}
	if s.win.span <= 0 {
		s.win.span = time.Second
	}
	return s
}

// sourceOf is the source IP of an event, "" when none is known.
func (ev Event) sourceOf() string {
	src := ev.Source
	if src == "" {
		src, _, _ = strings.Cut(ev.Path, ">")
	}
	if src == "*" {
		return ""
	}
	return src
}

// Which patterns a match looks at.
const (
	allPatterns    = iota // an event of the site: every pattern
	sourcePatterns        // a source's event: the patterns about the source
	sitePatterns          // a source's event: the patterns about the whole site
)

// Record reports one attempt.
func (c *Controller) Record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = c.opts.Now()
	}
	var changes []Change
	var locals []LocalProblem
	c.mu.Lock()
	if ev.DNS && ev.Site == "" {
		// MX lookup of a domain: feeds the local-problem view only.
		if ev.Err {
			if len(c.dns) < 10000 {
				c.dns[ev.Domain] = ev.Time
			}
		}
		locals = c.scan(ev.Time, true)
		c.mu.Unlock()
		c.emit(changes, locals)
		return
	}
	if ev.DNS && ev.OK {
		c.dnsOK = ev.Time
		delete(c.dns, ev.Domain)
		c.mu.Unlock()
		return
	}
	s := c.site(ev.Site)
	src := ev.sourceOf()
	if src == "" || ev.DNS {
		// Not tied to a source: the site's own window and state.
		s.win.add(ev.Time, ev.OK, ev.Err)
		c.pend(ev.Site, "", s, ev.Time, ev.Err)
		changes = c.note(ev, s, allPatterns, changes)
	} else {
		// Tied to a source: the attempt counts at the site (its
		// denominator, and the local-problem view), the error only at
		// the source, except a reply matching a site-wide pattern.
		ss := c.source(ev.Site, src)
		ss.win.add(ev.Time, ev.OK, ev.Err)
		s.win.add(ev.Time, ev.OK, false)
		c.pend(ev.Site, src, ss, ev.Time, ev.Err)
		c.pend(ev.Site, "", s, ev.Time, false)
		if ev.OK && !ev.Err {
			s.consec = 0
		}
		changes = c.note(ev, ss, sourcePatterns, changes)
		if ev.Err && ev.Code != 0 {
			if ch, ok := c.matchPatterns(ev, s, sitePatterns); ok {
				changes = append(changes, ch)
			}
		}
	}
	if ev.Err {
		locals = c.scan(ev.Time, false)
	}
	c.mu.Unlock()
	c.emit(changes, locals)
}

// note applies one event to a state: errors in a row, the last errors,
// the patterns of the given kind, and the transitions. Caller holds c.mu.
func (c *Controller) note(ev Event, s *siteState, which int, changes []Change) []Change {
	if ev.OK && !ev.Err {
		s.consec = 0
	}
	if ev.Err {
		s.consec++
		s.lastError = ev.Time
		s.lastLocal = ev.Local
		msg := ev.Text
		if ev.Code != 0 {
			msg = strings.TrimSpace(fmt.Sprintf("%d %s %s", ev.Code, ev.Enhanced, ev.Text))
		}
		if len(s.lastErrs) >= 5 {
			copy(s.lastErrs, s.lastErrs[1:])
			s.lastErrs = s.lastErrs[:4]
		}
		s.lastErrs = append(s.lastErrs, ev.Time.UTC().Format("15:04:05")+" "+msg)
		// Patterns see only remote replies, never our own texts.
		if ev.Code != 0 {
			if ch, ok := c.matchPatterns(ev, s, which); ok {
				changes = append(changes, ch)
			}
		}
	}
	if ch, ok := c.evaluate(ev.Site, s, ev.Time, ev); ok {
		changes = append(changes, ch)
	}
	return changes
}

func (c *Controller) emit(changes []Change, locals []LocalProblem) {
	if c.opts.OnChange != nil {
		for _, ch := range changes {
			c.opts.OnChange(ch)
		}
	}
	if c.opts.OnLocal != nil {
		for _, l := range locals {
			c.opts.OnLocal(l)
		}
	}
}

func (c *Controller) matchPatterns(ev Event, s *siteState, which int) (Change, bool) {
	line := strconv.Itoa(ev.Code) + " " + ev.Enhanced + " " + ev.Text
	for i, p := range c.cfg.Patterns {
		if (which == sourcePatterns && p.Site) || (which == sitePatterns && !p.Site) {
			continue
		}
		if p.Match == nil || !p.Match.MatchString(line) {
			continue
		}
		if p.Count > 1 {
			if s.pattern == nil {
				s.pattern = map[int]*hits{}
			}
			h := s.pattern[i]
			if h == nil {
				h = &hits{}
				s.pattern[i] = h
			}
			cut := 0
			for cut < len(h.times) && ev.Time.Sub(h.times[cut]) > p.Per {
				cut++
			}
			h.times = append(h.times[cut:], ev.Time)
			if len(h.times) < p.Count {
				continue
			}
			h.times = h.times[:0]
		}
		reason := fmt.Sprintf("reply matched pattern `%s` (%s for %s)", p.Match.String(), p.Action, p.Duration)
		switch p.Action {
		case Limited:
			return c.startLimit(ev.Site, s, p, ev.Time), true
		case Suspended:
			if s.state == Suspended && !s.until.Before(ev.Time.Add(p.Duration)) {
				return Change{}, false
			}
			return c.to(ev.Site, s, Suspended, ev.Time, ev.Time.Add(p.Duration), reason), true
		default:
			if s.state != Normal {
				if s.state == Backoff && s.until.Before(ev.Time.Add(p.Duration)) {
					s.until = ev.Time.Add(p.Duration)
					s.level = c.cfg.ConnFactor
				}
				return Change{}, false
			}
			return c.to(ev.Site, s, Backoff, ev.Time, ev.Time.Add(p.Duration), reason), true
		}
	}
	return Change{}, false
}

// to moves a site to a state. Caller holds c.mu.
func (c *Controller) to(key string, s *siteState, state string, now, until time.Time, reason string) Change {
	a, e, _ := s.win.sums(now)
	ch := Change{Time: now, Site: key, Source: s.source, From: s.state, To: state, Until: until, Reason: reason, Attempts: a, Errors: e, Local: c.local}
	a, e = s.sums(now)
	ch.Attempts, ch.Errors = a, e
	if s.state == Normal && state != Normal {
		s.baseRate = c.observedRate(s, now)
	}
	if state == Suspended && s.state != Suspended {
		s.suspends++
		s.nextProbe = now.Add(c.cfg.ProbeInterval)
	}
	s.state = state
	s.since = now
	s.until = until
	s.lastChange = now
	s.reason = reason
	switch state {
	case Normal:
		s.level = 1
	case Backoff:
		if ch.From == Suspended {
			// Back from a suspension: start below where the trouble
			// began (multiplicative decrease), so that the site does not
			// flap between backoff and suspension at the same rate.
			s.level = max(minLevel, s.level/2)
		} else {
			s.level = c.cfg.ConnFactor
		}
	}
	return ch
}

// suspendFor is the length of the next suspension: suspend_for doubling on
// each repeat, up to max_suspend.
func (c *Controller) suspendFor(s *siteState) time.Duration {
	d := c.cfg.SuspendFor
	for i := 0; i < s.suspends && d < c.cfg.MaxSuspend; i++ {
		d *= 2
	}
	return min(d, c.cfg.MaxSuspend)
}

// observedRate is the delivery rate (per hour) the site took over the
// window, or since it was first seen if that is shorter.
func (c *Controller) observedRate(s *siteState, now time.Time) int {
	_, _, oks := s.win.sums(now)
	if oks == 0 {
		return 0
	}
	span := min(c.cfg.Window, now.Sub(s.created))
	span = max(span, s.win.span)
	return int(float64(oks) * float64(time.Hour) / float64(span))
}

// pace is how long to wait after the last of n errors in a row before the
// next attempt: nothing for the first two (another MX host, a hiccup),
// then 100 ms doubling up to 2 s. A dead site that refuses connections at
// once costs at most one attempt every 2 s until flow control suspends it.
func pace(n int) time.Duration {
	if n < 3 {
		return 0
	}
	d := 100 * time.Millisecond
	for i := 3; i < n && d < 2*time.Second; i++ {
		d *= 2
	}
	return min(d, 2*time.Second)
}

// inARow is how many errors in a row, with no success between them,
// suspend a site in backoff (half as many put a normal site in backoff).
func (c *Controller) inARow() int { return max(4, c.cfg.MinAttempts/2) }

// Tick applies the time-driven transitions (end of a suspension, recovery
// after a quiet period) to sites that see no traffic, and lets a local
// problem clear. The owner calls it about once a second.
func (c *Controller) Tick(now time.Time) {
	var changes []Change
	c.mu.Lock()
	for key, s := range c.sites {
		if ch, ok := c.stepLimit(key, s, now); ok {
			changes = append(changes, ch)
		}
		if s.state == Normal {
			if c.forgettable(s, now) {
				// A campaign's long tail of domains would keep one
				// each for good; a new state is the same as this one.
				delete(c.sites, key)
			}
			continue
		}
		if ch, ok := c.evaluate(key, s, now, Event{Time: now}); ok {
			changes = append(changes, ch)
		}
	}
	for key, m := range c.sources {
		for src, s := range m {
			if ch, ok := c.stepLimit(key, s, now); ok {
				changes = append(changes, ch)
			}
			if s.state == Normal {
				if c.forgettable(s, now) {
					delete(m, src)
				}
				continue
			}
			if ch, ok := c.evaluate(key, s, now, Event{Time: now}); ok {
				changes = append(changes, ch)
			}
		}
		if len(m) == 0 {
			delete(c.sources, key)
		}
	}
	locals := c.scan(now, true)
	c.mu.Unlock()
	c.emit(changes, locals)
}

// forgettable reports whether a state in Normal may be dropped: quiet and
// healthy for a whole window, no limit stepping, no suspension to double
// next time, no other node's counts. Caller holds c.mu.
func (c *Controller) forgettable(s *siteState, now time.Time) bool {
	return s.limit == nil && s.suspends == 0 && s.shared == nil && now.Sub(s.win.last()) > c.cfg.Window
}

// minLevel is the floor of the backoff cuts: 1/16 of the rule's limits.
const minLevel = 1.0 / 16

// sums are a state's window counts, the other nodes' included.
func (s *siteState) sums(now time.Time) (attempts, errs int) {
	a, e, _ := s.win.sums(now)
	oa, oe := s.sharedSums(now)
	return a + oa, e + oe
}

// evaluate applies the time- and ratio-driven transitions. Caller holds c.mu.
func (c *Controller) evaluate(key string, s *siteState, now time.Time, ev Event) (Change, bool) {
	a, e := s.sums(now)
	ratio := 0.0
	if a > 0 {
		ratio = float64(e) / float64(a)
	}
	switch s.state {
	case Normal:
		if ev.Err && a >= c.cfg.MinAttempts && ratio >= c.cfg.ErrorRatio {
			return c.to(key, s, Backoff, now, time.Time{}, fmt.Sprintf("%d errors in %d attempts (%.0f%%) within %s", e, a, 100*ratio, c.cfg.Window)), true
		}
		if ev.Err && s.consec >= c.inARow()/2 {
			return c.to(key, s, Backoff, now, time.Time{}, fmt.Sprintf("%d errors in a row", s.consec)), true
		}
	case Backoff:
		if ev.Err && !c.local && now.Sub(s.lastChange) >= c.cfg.StepInterval {
			// Pacing keeps a dead site's attempts few, so errors in a row
			// escalate too, not only the ratio over many attempts.
			if a >= c.cfg.MinAttempts && ratio >= c.cfg.SuspendRatio {
				return c.to(key, s, Suspended, now, now.Add(c.suspendFor(s)), fmt.Sprintf("errors went on in backoff: %d errors in %d attempts (%.0f%%) within %s", e, a, 100*ratio, c.cfg.Window)), true
			}
			if s.consec >= c.inARow() {
				return c.to(key, s, Suspended, now, now.Add(c.suspendFor(s)), fmt.Sprintf("errors went on in backoff: %d errors in a row", s.consec)), true
			}
		}
		if ev.Err && a >= c.cfg.MinAttempts/2 && ratio >= c.cfg.ErrorRatio && now.Sub(s.lastChange) >= c.cfg.StepInterval && s.level > minLevel {
			// Errors go on at the cut limits: cut again (multiplicative
			// decrease), at most once per step.
			s.level = max(minLevel, s.level/2)
			s.lastChange = now
			return Change{Time: now, Site: key, Source: s.source, From: Backoff, To: Backoff, Until: s.until, Attempts: a, Errors: e, Local: c.local,
				Reason: fmt.Sprintf("errors go on: %d errors in %d attempts (%.0f%%); limits cut to %.0f%%", e, a, 100*ratio, 100*s.level)}, true
		}
		// Recovery needs evidence: deliveries since the last error (a site
		// held by pacing is quiet because it gets no traffic, not because
		// it is healthy), then recover_after without errors.
		if s.consec > 0 || now.Before(s.until) || now.Sub(s.lastError) < c.cfg.RecoverAfter || now.Sub(s.lastChange) < c.cfg.StepInterval {
			return Change{}, false
		}
		s.level += (1 - s.level) / 2
		s.lastChange = now
		if s.level > 0.9 {
			if s.suspends > 0 && now.Sub(s.since) > c.cfg.MaxSuspend {
				s.suspends = 0
			}
			return c.to(key, s, Normal, now, time.Time{}, fmt.Sprintf("no error for %s", now.Sub(s.lastError).Round(time.Second))), true
		}
	case Suspended:
		if ev.OK && !ev.Err {
			return c.to(key, s, Backoff, now, time.Time{}, "a probe was delivered"), true
		}
		if !now.Before(s.until) {
			return c.to(key, s, Backoff, now, time.Time{}, "suspension ended"), true
		}
	}
	return Change{}, false
}

// Check says how a site may be used now. When a suspended site's probe is
// due, it returns Probe and takes the probe slot (the next one comes one
// probe_interval later), so callers must open the probe connection.
func (c *Controller) Check(key string, now time.Time) Decision {
	return c.decide(key, now, true)
}

// Peek is Check without taking a probe slot (for explain and the API).
func (c *Controller) Peek(key string, now time.Time) Decision {
	return c.decide(key, now, false)
}

// Holds is Peek(key, now).Hold without the rest of the Decision: the
// scheduler asks it after every message and before a lingering session
// claims one, and the Decision's text (Detail, Diagnosis) is a few
// formatted strings per message nobody reads unless the site is held.
func (c *Controller) Holds(key string, now time.Time) bool {
	c.mu.Lock()
	s := c.sites[key]
	if s == nil {
		c.mu.Unlock()
		return false
	}
	changes := c.advance(key, s, now, nil)
	hold := c.gate(s, now).Hold
	c.mu.Unlock()
	c.emit(changes, nil)
	return hold
}

func (c *Controller) decide(key string, now time.Time, take bool) Decision {
	c.mu.Lock()
	s := c.sites[key]
	if s == nil {
		local := c.local
		c.mu.Unlock()
		return Decision{State: Normal, ConnFactor: 1, RateFactor: 1, Local: local}
	}
	d, changes := c.decideState(key, s, now, take, nil)
	c.mu.Unlock()
	c.emit(changes, nil)
	return d
}

// decideState is the Decision of a site's or a source's state. Caller
// holds c.mu.
func (c *Controller) decideState(key string, s *siteState, now time.Time, take bool, changes []Change) (Decision, []Change) {
	changes = c.advance(key, s, now, changes)
	d := c.gate(s, now)
	if take && s.state == Suspended && d.Probe {
		s.nextProbe = now.Add(c.cfg.ProbeInterval)
	}
	d.LastErrors = append([]string(nil), s.lastErrs...)
	d.Diagnosis = c.diagnose(key, s, now)
	d.Detail = c.detail(key, s, d, now)
	if d.Limit != nil {
		d.Detail += "; " + d.Limit.Detail
	}
	return d, changes
}

// advance brings a site's or a source's state up to now (a backoff or a
// timed limit may have ended) and appends the changes that made. Caller
// holds c.mu.
func (c *Controller) advance(key string, s *siteState, now time.Time, changes []Change) []Change {
	if ch, ok := c.evaluate(key, s, now, Event{Time: now}); ok {
		changes = append(changes, ch)
	}
	if ch, ok := c.stepLimit(key, s, now); ok {
		changes = append(changes, ch)
	}
	return changes
}

// gate is the part of a Decision the scheduler acts on: the state, the
// hold, the probe (without taking its slot), the cuts and the timed
// limit. Caller holds c.mu.
func (c *Controller) gate(s *siteState, now time.Time) Decision {
	a, e := s.sums(now)
	d := Decision{State: s.state, ConnFactor: 1, RateFactor: 1, Since: s.since, Until: s.until,
		Attempts: a, Errors: e, Local: c.local}
	if a > 0 {
		d.Ratio = float64(e) / float64(a)
	}
	if s.state != Normal {
		d.ObservedPH = s.baseRate
	}
	if s.state != Suspended && pace(s.consec) > 0 {
		// Errors in a row (connections refused at once, say): space the
		// attempts out instead of hammering a dead site, and make the next
		// one a probe (one connection, one message) whose outcome decides.
		d.Hold = true
		if next := s.lastError.Add(pace(s.consec)); now.Before(next) {
			d.Until = next
		} else {
			d.Probe = true
		}
	}
	switch s.state {
	case Backoff:
		d.ConnFactor = s.level
		d.RateFactor = s.level * c.cfg.RateFactor / c.cfg.ConnFactor
		if d.RateFactor > 1 {
			d.RateFactor = 1
		}
	case Suspended:
		d.Hold = true
		d.ConnFactor, d.RateFactor = 0, 0
		if !now.Before(s.nextProbe) {
			d.Probe = true
		}
	}
	d.Limit = c.limitView(s, now)
	return d
}

func (c *Controller) diagnose(key string, s *siteState, now time.Time) string {
	if s.state == Normal && now.Sub(s.lastError) > c.cfg.Window {
		return ""
	}
	if c.local {
		return "local problem: " + c.localInfo.Detail
	}
	if s.source != "" {
		if s.lastLocal {
			return fmt.Sprintf("connections of source %s at %s fail (refused, timeout, TLS): the provider refuses this source, or it cannot reach it; the pool's other sources go on", s.source, key)
		}
		return fmt.Sprintf("reputation of source %s at %s: the provider is throttling or blocking mail from this source; the pool's other sources go on", s.source, key)
	}
	if s.lastLocal {
		return "errors at this site are on the connection level (refused, timeout, TLS, DNS) while other sites are healthy: the provider's servers are unreachable from here, or it refuses our connections"
	}
	return "reputation: this provider is throttling or blocking us (errors sit at few sites, not everywhere)"
}

func (c *Controller) detail(key string, s *siteState, d Decision, now time.Time) string {
	var b strings.Builder
	if s.source != "" {
		fmt.Fprintf(&b, "source %s: ", s.source)
	}
	fmt.Fprintf(&b, "flow state %s", s.state)
	if !s.since.IsZero() { // a site never out of normal has no "since"
		fmt.Fprintf(&b, " since %s", s.since.UTC().Format(time.RFC3339))
	}
	if !s.until.IsZero() && now.Before(s.until) {
		fmt.Fprintf(&b, " until %s", s.until.UTC().Format(time.RFC3339))
	}
	if s.reason != "" {
		fmt.Fprintf(&b, " (%s)", s.reason)
	}
	fmt.Fprintf(&b, "; window %s: %d errors in %d attempts (%.0f%%)%s", c.cfg.Window, d.Errors, d.Attempts, 100*d.Ratio, c.windowNote())
	switch s.state {
	case Backoff:
		fmt.Fprintf(&b, "; limits cut to %.0f%% of connections, %.0f%% of rate", 100*d.ConnFactor, 100*d.RateFactor)
	case Suspended:
		fmt.Fprintf(&b, "; probes only, next probe at %s", s.nextProbe.UTC().Format(time.RFC3339))
	}
	if d.Hold && s.state != Suspended {
		fmt.Fprintf(&b, "; %d errors in a row: next attempt at %s", s.consec, d.Until.UTC().Format("15:04:05.000"))
	}
	if len(s.lastErrs) > 0 {
		fmt.Fprintf(&b, "; last error: %s", s.lastErrs[len(s.lastErrs)-1])
	}
	return b.String()
}

// States counts sites per state (for metrics).
func (c *Controller) States() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{Normal: 0, Backoff: 0, Suspended: 0}
	for _, s := range c.sites {
		out[s.state]++
	}
	return out
}

// NotNormal lists sites not in the normal state, sorted.
func (c *Controller) NotNormal() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, s := range c.sites {
		if s.state != Normal {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
