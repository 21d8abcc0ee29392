// Package warmup runs IP warm-up schedules: a warming source sends to a
// provider group (an MX rule, or MX host patterns) at most the day's volume
// of its schedule, and the schedule moves by the health of the day before.
//
// The algorithm:
//
//  1. Each plan is one (source, group) pair with a schedule of daily
//     volumes. Its state is the step (index into the schedule; past the
//     last step the source is warm: unlimited), the number of days it has
//     been warming, today's count of messages and today's health numbers.
//  2. Days are numbered from the Unix epoch in units of Deps.Day (24 h by
//     default, so a day starts at 00:00 UTC; tests shorten it and move a
//     fake clock). With hourly_spread a day is cut in 24 equal hours and by
//     the end of hour h at most limit×(h+1)/24 messages may have gone: an
//     hour left unused carries over to the next.
//  3. Take counts one message before it is sent and refuses it when the
//     day's (or hour's) volume is spent. The queue then sends through the
//     pool's other sources, or lets the mail wait.
//  4. Health comes from the outcome stream (Observe): deliveries,
//     deferrals, deferrals whose reply is a throttle pattern, bounces and
//     complaints, counted for the day they arrive in.
//  5. At each day boundary the day that ended is judged (Judge):
//     nothing sent: hold; over twice a threshold (deferral ratio, throttle
//     count or complaint count): a bad day, one step back; over a
//     threshold: hold; otherwise one step forward. Every decision is
//     logged with its numbers and kept in a short history.
//  6. The state is saved atomically in a file of the spool directory and
//     loaded at start. In a cluster the day's counts live in Redis (one
//     hash per pair and day, HINCRBY) and the step in a small hash that
//     the first node to judge a day writes; the others adopt it. When
//     Redis does not answer the node counts locally against its share of
//     the limit, and says so (Degraded).
//
// The package never touches the queue or the network of mail: it answers
// "may this source send one more message to this group now?".
package warmup

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/mxrule"
)

// Health thresholds used when a plan sets none.
const (
	DefaultMaxDeferralRatio = 0.10
	DefaultMaxThrottles     = 3
	DefaultMaxComplaints    = 1
)

// historyLen bounds the decisions kept per pair.
const historyLen = 30

// Plan is one warming (source, group) pair.
type Plan struct {
	Source   string   // the [[source]] name
	IP       string   // its address: delivery-log records name sources by IP
	Rule     string   // the provider group by MX rule name, or
	MX       []string // by MX host patterns
	Schedule []int    // daily volumes; after the last step: unlimited
	// HourlySpread spreads the day's volume evenly over its 24 hours.
	HourlySpread     bool
	MaxDeferralRatio float64
	MaxThrottles     int
	MaxComplaints    int
}

// Group names the plan's provider group: "rule:NAME" or "mx:P1,P2".
func (p *Plan) Group() string {
	if p.Rule != "" {
		return "rule:" + p.Rule
	}
	return "mx:" + strings.Join(p.MX, ",")
}

// Key names the pair: "SOURCE|GROUP".
func (p *Plan) Key() string { return p.Source + "|" + p.Group() }

func (p *Plan) matches(rule string, hosts []string) bool {
	if p.Rule != "" {
		return p.Rule == rule
	}
	for _, h := range hosts {
		for _, pat := range p.MX {
			if mxrule.MatchPattern(pat, h) {
				return true
			}
		}
	}
	return false
}

// Health is one day's numbers for a pair.
type Health struct {
	Sent       int64 `json:"sent"` // messages counted by Take
	Delivered  int64 `json:"delivered"`
	Deferred   int64 `json:"deferred"`
	Bounced    int64 `json:"bounced"`
	Throttles  int64 `json:"throttles"` // deferrals whose reply matched a throttle pattern
	Complaints int64 `json:"complaints"`
}

// DeferralRatio is deferrals over attempts (0 with no attempt).
func (h Health) DeferralRatio() float64 {
	n := h.Delivered + h.Deferred + h.Bounced
	if n == 0 {
		return 0
	}
	return float64(h.Deferred) / float64(n)
}

func (h Health) String() string {
	return fmt.Sprintf("sent %d, delivered %d, deferred %d (ratio %.2f), bounced %d, throttles %d, complaints %d",
		h.Sent, h.Delivered, h.Deferred, h.DeferralRatio(), h.Bounced, h.Throttles, h.Complaints)
}

// DayDecision is what a day boundary did to a pair.
type DayDecision struct {
	Day      int64     `json:"day"` // the day judged (days since the epoch)
	Time     time.Time `json:"time"`
	Action   string    `json:"action"` // advance, hold, step back
	From     int       `json:"from"`
	To       int       `json:"to"`
	Reason   string    `json:"reason"`
	Health   Health    `json:"health"`
	LimitWas int       `json:"limit_was"` // -1: unlimited
}

// DayDecision actions.
const (
	Advance  = "advance"
	Hold     = "hold"
	StepBack = "step back"
)

// Judge decides one day boundary for a plan at step: the new step, the
// action and why. "Bad" is over twice a threshold; "unhealthy" is over one.
func Judge(p *Plan, step int, h Health) (int, string, string) {
	ratio := h.DeferralRatio()
	var bad, unhealthy []string
	check := func(name string, v, limit float64, format string) {
		switch {
		case v > 2*limit:
			bad = append(bad, fmt.Sprintf("%s "+format+" over twice the threshold "+format, name, v, limit))
		case v > limit:
			unhealthy = append(unhealthy, fmt.Sprintf("%s "+format+" over the threshold "+format, name, v, limit))
		}
	}
	check("deferral ratio", ratio, p.MaxDeferralRatio, "%.2f")
	check("throttles", float64(h.Throttles), float64(p.MaxThrottles), "%.0f")
	check("complaints", float64(h.Complaints), float64(p.MaxComplaints), "%.0f")
	switch {
	case len(bad) > 0:
		return max(0, step-1), StepBack, "bad day: " + strings.Join(bad, "; ")
	case len(unhealthy) > 0:
		return step, Hold, "unhealthy day: " + strings.Join(unhealthy, "; ")
	case h.Sent == 0 && h.Delivered == 0:
		return step, Hold, "no mail sent: nothing to judge"
	case step >= len(p.Schedule):
		return step, Hold, "warm: schedule complete"
	}
	return step + 1, Advance, "healthy day"
}

// Limit is the daily volume at step, -1 when unlimited (warm).
func (p *Plan) Limit(step int) int {
	if step >= len(p.Schedule) {
		return -1
	}
	return p.Schedule[step]
}

// Deps are what a Tracker works with.
type Deps struct {
	Now    func() time.Time
	Day    time.Duration // length of a day; default 24 h (tests shorten it)
	Logger *slog.Logger
	// Path is the state file (in the spool directory); "" keeps nothing.
	Path string
	// Shared counts in a cluster (Redis); nil: this node alone.
	Shared Shared
	// Nodes is how many nodes share a plan, for the degraded share; nil: 1.
	Nodes func() int
	// Throttle tells a deferral's reply text that is a throttle pattern.
	Throttle func(text string) bool
}

// pair is one plan's live state.
type pair struct {
	plan    *Plan
	day     int64 // the current day number
	started int64 // the day warm-up began
	step    int
	today   Health
	yday    Health // the day judged last
	history []DayDecision
	local   int64 // sent today through this node while Redis was away
}

// Tracker holds every pair's state.
type Tracker struct {
	deps  Deps
	mu    sync.Mutex
	pairs []*pair
	dirty bool
	saved chan struct{} // one save at a time
	// degraded is set while the shared store fails.
	degraded bool
	// delivered maps recipients of warming pairs to their pair, for
	// complaints; prev is the day before's map.
	delivered, prev map[string]*pair
	remembered      int64 // the day delivered started
	// changed is closed when a window (day, or hour with a spread) ends,
	// to wake the mail waiting for it.
	changed chan struct{}
	window  int64 // the hour the last roll saw
	// probeAt: while degraded, Redis is asked again from then on.
	probeAt time.Time
}

// probeEvery is how often a degraded tracker tries Redis again.
const probeEvery = time.Second

// maxRemembered bounds the recipients kept for complaints per day.
const maxRemembered = 200000

// New builds a Tracker for plans and loads the saved state from deps.Path.
// A saved pair whose plan is gone is dropped; a new plan starts at step 0.
func New(plans []Plan, deps Deps) (*Tracker, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Day <= 0 {
		deps.Day = 24 * time.Hour
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	t := &Tracker{deps: deps, saved: make(chan struct{}, 1), delivered: map[string]*pair{}, changed: make(chan struct{})}
	today := t.dayOf(deps.Now())
	t.window = t.hourOf(deps.Now())
	t.remembered = today
	for i := range plans {
		p := plans[i]
		if p.MaxDeferralRatio == 0 {
			p.MaxDeferralRatio = DefaultMaxDeferralRatio
		}
		if p.MaxThrottles == 0 {
			p.MaxThrottles = DefaultMaxThrottles
		}
		if p.MaxComplaints == 0 {
			p.MaxComplaints = DefaultMaxComplaints
		}
		t.pairs = append(t.pairs, &pair{plan: &p, day: today, started: today})
	}
	if err := t.load(); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *Tracker) dayOf(now time.Time) int64 {
	return now.UnixNano() / int64(t.deps.Day)
}

func (t *Tracker) hourOf(now time.Time) int64 {
	return now.UnixNano() / int64(t.deps.Day/24)
}

// Changed is closed when the current window ends (a day, or an hour: with
// a spread the volume grows each hour); Tick notices it.
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

func (t *Tracker) dayStart(day int64) time.Time {
	return time.Unix(0, day*int64(t.deps.Day)).UTC()
}

// Verdict answers Take and Check.
type Verdict struct {
	OK      bool          // the message may go from this source
	Warming bool          // a plan limits this source for this group
	Source  string        // the source asked about
	Group   string        // the plan's group
	Day     int64         // days warming (0: the first day)
	Step    int           // index into the schedule
	Count   int64         // sent in the current window (day, or day so far with a spread)
	Limit   int64         // the window's volume
	Until   time.Time     // when the window frees (refusals)
	Retry   time.Duration // Until from now, on the tracker's clock
}

// Detail is the operator's sentence for a refusal.
func (v Verdict) Detail() string {
	return fmt.Sprintf("source %s warming for %s: day %d, step %d, %d of %d messages sent; frees at %s",
		v.Source, v.Group, v.Day+1, v.Step+1, v.Count, v.Limit, v.Until.UTC().Format(time.RFC3339))
}

// Check says whether source may send one more message to the group of
// (rule, hosts) now, without counting it.
func (t *Tracker) Check(source, rule string, hosts []string) Verdict {
	return t.gate(source, rule, hosts, false)
}

// Take is Check that counts the message when it may go.
func (t *Tracker) Take(source, rule string, hosts []string) Verdict {
	return t.gate(source, rule, hosts, true)
}

func (t *Tracker) gate(source, rule string, hosts []string, take bool) Verdict {
	now := t.deps.Now()
	t.mu.Lock()
	t.rollLocked(now)
	var pr *pair
	for _, p := range t.pairs {
		if p.plan.Source == source && p.plan.matches(rule, hosts) {
			pr = p
			break
		}
	}
	if pr == nil {
		t.mu.Unlock()
		return Verdict{OK: true, Source: source}
	}
	limit, until := t.windowLocked(pr, now)
	v := Verdict{OK: true, Warming: limit >= 0, Source: source, Group: pr.plan.Group(), Day: pr.day - pr.started,
		Step: pr.step, Limit: limit, Count: pr.today.Sent, Until: until, Retry: until.Sub(now)}
	shared := t.deps.Shared
	if t.degraded && time.Now().Before(t.probeAt) {
		// Redis failed a moment ago: no wait on it for every message.
		shared = nil
	}
	key, day := pr.plan.Key(), pr.day
	local := pr.local
	degraded := t.degraded
	t.mu.Unlock()
	if limit < 0 {
		if take {
			t.count(pr, day, "sent", 1)
		}
		return v
	}
	if shared != nil || degraded {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if shared == nil {
			// Degraded, between probes: counted below.
		} else if take {
			// One step in Redis: an increment past the limit taken
			// back later would show the other nodes (and the status) a
			// count over it meanwhile.
			n, took, err := shared.Take(ctx, key, day, limit, t.deps.Day*3)
			if err == nil {
				t.setDegraded(false)
				v.Count = n
				if !took {
					v.OK = false
				} else {
					t.mu.Lock()
					pr.today.Sent = max(pr.today.Sent, n)
					t.dirty = true
					t.mu.Unlock()
				}
				return v
			}
		} else if h, err := shared.Get(ctx, key, day); err == nil {
			t.setDegraded(false)
			v.Count = h.Sent
			v.OK = h.Sent < limit
			return v
		}
		// Redis is away: this node's share of the limit, counted here.
		if shared != nil {
			t.setDegraded(true)
		}
		nodes := 1
		if t.deps.Nodes != nil {
			nodes = max(1, t.deps.Nodes())
		}
		limit = limit / int64(nodes)
		v.Limit, v.Count = limit, local
		if local >= limit {
			v.OK = false
			return v
		}
		if take {
			t.mu.Lock()
			pr.local++
			pr.today.Sent++
			t.dirty = true
			t.mu.Unlock()
		}
		return v
	}
	if v.Count >= limit {
		v.OK = false
		return v
	}
	if take {
		t.mu.Lock()
		pr.today.Sent++
		v.Count = pr.today.Sent
		t.dirty = true
		t.mu.Unlock()
	}
	return v
}

// windowLocked is the volume allowed so far in the current window (-1:
// unlimited) and when the next window starts.
func (t *Tracker) windowLocked(p *pair, now time.Time) (int64, time.Time) {
	l := p.plan.Limit(p.step)
	next := t.dayStart(p.day + 1)
	if l < 0 {
		return -1, next
	}
	if !p.plan.HourlySpread {
		return int64(l), next
	}
	hour := t.deps.Day / 24
	h := int64(now.Sub(t.dayStart(p.day)) / hour)
	h = min(max(h, 0), 23)
	allowed := int64(math.Ceil(float64(l) * float64(h+1) / 24))
	if h < 23 {
		next = t.dayStart(p.day).Add(time.Duration(h+1) * hour)
	}
	return allowed, next
}

func (t *Tracker) setDegraded(d bool) {
	t.mu.Lock()
	changed := t.degraded != d
	t.degraded = d
	if d {
		t.probeAt = time.Now().Add(probeEvery)
	}
	t.mu.Unlock()
	if changed {
		if d {
			t.deps.Logger.Warn("warm-up: the shared store does not answer: counting locally against this node's share")
		} else {
			t.deps.Logger.Info("warm-up: the shared store answers again")
		}
	}
}

// Degraded reports whether the shared store failed last time it was asked.
func (t *Tracker) Degraded() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.degraded
}

// Outcome is one event of the outcome stream for Observe.
type Outcome struct {
	Time     time.Time
	SourceIP string
	Rule     string
	MXHost   string
	Kind     string // Delivered, Deferred, Bounced or Complaint
	Text     string // the remote reply (throttle patterns)
	// Recipient ties a complaint (which names no source) to the pair
	// that delivered to it.
	Recipient string
}

// Outcome kinds.
const (
	Delivered = "delivered"
	Deferred  = "deferred"
	Bounced   = "bounced"
	Complaint = "complaint"
)

// Observe counts one outcome in the health of the pairs it belongs to. A
// complaint names no source: it counts for the pair that delivered to its
// recipient in the last two days (warming volumes are small, so the
// recipients are few), or for every pair of its rule when it names one.
func (t *Tracker) Observe(o Outcome) {
	field := o.Kind
	throttle := o.Kind == Deferred && t.deps.Throttle != nil && o.Text != "" && t.deps.Throttle(o.Text)
	t.mu.Lock()
	t.rollLocked(t.deps.Now())
	var hit []*pair
	if o.Kind == Complaint && o.SourceIP == "" {
		rcpt := strings.ToLower(o.Recipient)
		if p := t.delivered[rcpt]; p != nil {
			hit = append(hit, p)
		} else if p := t.prev[rcpt]; p != nil {
			hit = append(hit, p)
		}
	}
	for _, p := range t.pairs {
		if len(hit) > 0 || o.SourceIP == "" && (o.Kind != Complaint || o.Rule == "") || (o.SourceIP != "" && p.plan.IP != o.SourceIP) {
			continue
		}
		var hosts []string
		if o.MXHost != "" {
			hosts = []string{o.MXHost}
		}
		if !p.plan.matches(o.Rule, hosts) {
			continue
		}
		hit = append(hit, p)
		if o.Kind == Delivered && o.Recipient != "" && len(t.delivered) < maxRemembered {
			t.delivered[strings.ToLower(o.Recipient)] = p
		}
	}
	// Outcomes arrive as they happen: they count for the day the
	// tracker's clock is in (its clock may be a test's, not the log's).
	day := t.dayOf(t.deps.Now())
	t.mu.Unlock()
	for _, p := range hit {
		t.count(p, day, field, 1)
		if throttle {
			t.count(p, day, "throttles", 1)
		}
	}
}

// count adds n to a health field of day (only today's counts locally).
func (t *Tracker) count(p *pair, day int64, field string, n int64) {
	t.mu.Lock()
	skip := t.degraded && time.Now().Before(t.probeAt)
	t.mu.Unlock()
	if sh := t.deps.Shared; sh != nil && field != "sent" && !skip {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := sh.Incr(ctx, p.plan.Key(), day, field, n, t.deps.Day*3)
		cancel()
		t.setDegraded(err != nil)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if day != p.day {
		return
	}
	h := &p.today
	switch field {
	case "sent":
		h.Sent += n
	case Delivered:
		h.Delivered += n
	case Deferred:
		h.Deferred += n
	case Bounced:
		h.Bounced += n
	case Complaint, "complaints":
		h.Complaints += n
	case "throttles":
		h.Throttles += n
	}
	t.dirty = true
}

// Tick rolls the days over and saves a changed state; the owner calls it
// about once a second.
func (t *Tracker) Tick() {
	t.mu.Lock()
	t.rollLocked(t.deps.Now())
	dirty := t.dirty
	t.dirty = false
	t.mu.Unlock()
	if dirty {
		if err := t.Save(); err != nil {
			t.deps.Logger.Error("warm-up: saving the state", "path", t.deps.Path, "err", err)
		}
	}
}

// rollLocked judges every day that ended since a pair's current day.
// Caller holds t.mu.
func (t *Tracker) rollLocked(now time.Time) {
	today := t.dayOf(now)
	if w := t.hourOf(now); w != t.window {
		t.window = w
		close(t.changed)
		t.changed = make(chan struct{})
	}
	if t.remembered < today {
		// Two days of recipients: today's map, and yesterday's looked up too.
		t.prev, t.delivered = t.delivered, map[string]*pair{}
		if t.remembered < today-1 {
			t.prev = nil
		}
		t.remembered = today
	}
	for _, p := range t.pairs {
		for p.day < today {
			t.judgeLocked(p, now)
		}
	}
}

// judgeLocked ends p's current day. In a cluster the day's totals come
// from Redis and the first node to write the new step wins.
func (t *Tracker) judgeLocked(p *pair, now time.Time) {
	h := p.today
	if sh := t.deps.Shared; sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if got, err := sh.Get(ctx, p.plan.Key(), p.day); err == nil {
			got.Sent = max(got.Sent, h.Sent)
			h = got
		}
		cancel()
	}
	to, action, reason := Judge(p.plan, p.step, h)
	if sh := t.deps.Shared; sh != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if step, err := sh.Decide(ctx, p.plan.Key(), p.day+1, to); err == nil && step != to {
			// Another node judged this day first: adopt its step.
			reason += fmt.Sprintf(" (another node judged first: step %d)", step+1)
			to = step
		}
		cancel()
	}
	d := DayDecision{Day: p.day, Time: now, Action: action, From: p.step, To: to, Reason: reason, Health: h,
		LimitWas: p.plan.Limit(p.step)}
	t.deps.Logger.Info("warm-up decision", "source", p.plan.Source, "group", p.plan.Group(), "day", p.day-p.started+1,
		"action", action, "from_step", p.step+1, "to_step", to+1, "limit_was", d.LimitWas, "new_limit", p.plan.Limit(to),
		"reason", reason, "sent", h.Sent, "delivered", h.Delivered, "deferred", h.Deferred,
		"deferral_ratio", fmt.Sprintf("%.2f", h.DeferralRatio()), "throttles", h.Throttles, "complaints", h.Complaints)
	p.history = append(p.history, d)
	if len(p.history) > historyLen {
		p.history = slices.Clone(p.history[len(p.history)-historyLen:])
	}
	p.step = to
	p.yday = h
	p.today = Health{}
	p.local = 0
	p.day++
	t.dirty = true
}

// Status is one pair as operators see it.
type Status struct {
	Source        string        `json:"source"`
	IP            string        `json:"ip,omitempty"`
	Group         string        `json:"group"`
	Day           int64         `json:"day"`  // 1 on the first day
	Step          int           `json:"step"` // 1-based; past the schedule: warm
	Steps         int           `json:"steps"`
	Warm          bool          `json:"warm"`
	Sent          int64         `json:"sent"`  // today
	Limit         int           `json:"limit"` // today's volume; -1 unlimited
	WindowLimit   int64         `json:"window_limit"`
	Today         Health        `json:"today"`
	Yesterday     Health        `json:"yesterday"`
	Healthy       bool          `json:"healthy"` // today so far stays within the thresholds
	NextDecision  time.Time     `json:"next_decision"`
	NextAction    string        `json:"next_action"` // what today's numbers would decide now
	Degraded      bool          `json:"degraded,omitempty"`
	LastDecisions []DayDecision `json:"last_decisions,omitempty"`
}

// Statuses lists every pair's state now.
func (t *Tracker) Statuses() []Status {
	now := t.deps.Now()
	t.mu.Lock()
	t.rollLocked(now)
	type snap struct {
		p     *pair
		today Health
	}
	snaps := make([]snap, len(t.pairs))
	for i, p := range t.pairs {
		snaps[i] = snap{p, p.today}
	}
	t.mu.Unlock()
	out := make([]Status, 0, len(snaps))
	for _, s := range snaps {
		h := s.today
		if sh := t.deps.Shared; sh != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if got, err := sh.Get(ctx, s.p.plan.Key(), t.dayOf(now)); err == nil {
				got.Sent = max(got.Sent, h.Sent)
				h = got
			}
			cancel()
		}
		t.mu.Lock()
		p := s.p
		wl, _ := t.windowLocked(p, now)
		_, next, reason := Judge(p.plan, p.step, h)
		st := Status{Source: p.plan.Source, IP: p.plan.IP, Group: p.plan.Group(), Day: p.day - p.started + 1, Step: p.step + 1,
			Steps: len(p.plan.Schedule), Warm: p.step >= len(p.plan.Schedule), Sent: h.Sent, Limit: p.plan.Limit(p.step),
			WindowLimit: wl, Today: h, Yesterday: p.yday, NextDecision: t.dayStart(p.day + 1),
			NextAction: next + " (" + reason + ")", Degraded: t.degraded,
			LastDecisions: slices.Clone(p.history)}
		st.Healthy = next == Advance || (next == Hold && strings.HasPrefix(reason, "no mail")) || (next == Hold && st.Warm)
		t.mu.Unlock()
		out = append(out, st)
	}
	return out
}
