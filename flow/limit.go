package flow

import (
	"fmt"
	"strings"
	"time"
)

// Limited names a timed limit action in Change records (From/To); it is
// not a state of the site: a limit caps the rule's values whatever the
// state, and backoff cuts apply on top of it.
const Limited = "limited"

// limitSteps is how many easing steps a limit takes on its way back: each
// step_interval gives back half of what is still held (1/2, 3/4, 7/8,
// 15/16 of the gap to the rule), then the limit ends, so it never snaps
// back by more than 1/16 of the gap.
const limitSteps = 4

// Limits are the caps a pattern with action "limit" sets; 0 (and a zero
// ConnRateN) leaves a value to the rule.
type Limits struct {
	MaxConns       int           `json:"max_connections,omitempty"`
	MaxMsgsPerConn int           `json:"max_messages_per_connection,omitempty"`
	PerHour        int           `json:"messages_per_hour,omitempty"`
	ConnRateN      int           `json:"max_connection_rate_n,omitempty"`
	ConnRatePer    time.Duration `json:"max_connection_rate_per,omitempty"`
}

func (l Limits) String() string {
	var parts []string
	if l.MaxConns > 0 {
		parts = append(parts, fmt.Sprintf("max_connections %d", l.MaxConns))
	}
	if l.MaxMsgsPerConn > 0 {
		parts = append(parts, fmt.Sprintf("max_messages_per_connection %d", l.MaxMsgsPerConn))
	}
	if l.PerHour > 0 {
		parts = append(parts, fmt.Sprintf("messages_per_hour %d", l.PerHour))
	}
	if l.ConnRateN > 0 {
		parts = append(parts, fmt.Sprintf("max_connection_rate %d/%s", l.ConnRateN, l.ConnRatePer))
	}
	return strings.Join(parts, ", ")
}

// Limit is a timed limit in force at a site, as Check reports it.
type Limit struct {
	Pattern string `json:"pattern"` // the regexp of the pattern that fired
	Limits
	Since time.Time `json:"since"`
	Until time.Time `json:"until"` // end of the full limit; easing follows
	// Step is 0 during the full limit, then 1..limitSteps while easing;
	// Relief is the share of the gap between cap and rule given back
	// (1 - 2^-Step).
	Step     int       `json:"step"`
	Relief   float64   `json:"relief"`
	NextStep time.Time `json:"next_step"`
	Detail   string    `json:"detail"`
}

// Apply is the value in force for a rule value and a cap (0 = none): the
// cap during the limit, then halfway back to the rule at each step. For
// an unlimited rule (0) the cap doubles at each step instead.
func (l *Limit) Apply(rule, limit int) int {
	if l == nil || limit <= 0 || (rule > 0 && limit >= rule) {
		return rule
	}
	if rule <= 0 {
		return limit << l.Step
	}
	return limit + int(float64(rule-limit)*l.Relief)
}

// ApplyRate is Apply for a rate of n per per (rule) under the cap's rate,
// both counted over the cap's period. It returns the rate in force.
func (l *Limit) ApplyRate(n int, per time.Duration) (int, time.Duration) {
	if l == nil || l.ConnRateN <= 0 {
		return n, per
	}
	rule := 0
	if n > 0 && per > 0 {
		rule = max(1, int(float64(n)*float64(l.ConnRatePer)/float64(per)))
		if l.ConnRateN >= rule {
			return n, per
		}
	}
	return l.Apply(rule, l.ConnRateN), l.ConnRatePer
}

type limitState struct {
	pattern string
	caps    Limits
	since   time.Time
	until   time.Time
	step    int
}

// startLimit puts a pattern's limit in force (or renews it). Caller holds
// c.mu.
func (c *Controller) startLimit(key string, s *siteState, p Pattern, now time.Time) Change {
	from := Limited
	if s.limit == nil {
		from = s.state
	}
	s.limit = &limitState{pattern: p.Match.String(), caps: p.Limits, since: now, until: now.Add(p.Duration)}
	a, e, _ := s.win.sums(now)
	return Change{Time: now, Site: key, Source: s.source, From: from, To: Limited, Until: s.limit.until, Attempts: a, Errors: e, Local: c.local,
		Reason: fmt.Sprintf("reply matched pattern `%s` (limit %s for %s, then easing back halfway each %s)",
			p.Match.String(), p.Limits, p.Duration, c.cfg.StepInterval)}
}

// stepLimit eases a limit whose time is up, one step per step_interval.
// Caller holds c.mu.
func (c *Controller) stepLimit(key string, s *siteState, now time.Time) (Change, bool) {
	l := s.limit
	if l == nil || now.Before(l.until) {
		return Change{}, false
	}
	due := 1 + int(now.Sub(l.until)/c.cfg.StepInterval)
	if due <= l.step {
		return Change{}, false
	}
	// One step per call, so every step is recorded (Tick runs each second).
	l.step++
	a, e, _ := s.win.sums(now)
	ch := Change{Time: now, Site: key, Source: s.source, From: Limited, To: Limited, Attempts: a, Errors: e, Local: c.local}
	if l.step > limitSteps {
		s.limit = nil
		ch.To = s.state
		ch.Reason = fmt.Sprintf("limit of pattern `%s` ended: the rule's limits are back", l.pattern)
		return ch, true
	}
	ch.Until = l.until.Add(time.Duration(l.step) * c.cfg.StepInterval)
	ch.Reason = fmt.Sprintf("limit of pattern `%s` easing, step %d of %d: %.0f%% of the way back to the rule's limits",
		l.pattern, l.step, limitSteps, 100*relief(l.step))
	return ch, true
}

func relief(step int) float64 { return 1 - 1/float64(int(1)<<step) }

// limitView is the Limit of a site for a Decision. Caller holds c.mu.
func (c *Controller) limitView(s *siteState, now time.Time) *Limit {
	l := s.limit
	if l == nil {
		return nil
	}
	v := &Limit{Pattern: l.pattern, Limits: l.caps, Since: l.since, Until: l.until, Step: l.step, Relief: relief(l.step)}
	v.NextStep = l.until.Add(time.Duration(l.step) * c.cfg.StepInterval)
	if l.step == 0 {
		v.Detail = fmt.Sprintf("limit by pattern `%s`: %s until %s, then easing back halfway each %s",
			l.pattern, l.caps, l.until.UTC().Format(time.RFC3339), c.cfg.StepInterval)
	} else {
		v.Detail = fmt.Sprintf("limit by pattern `%s` (%s) easing, step %d of %d: %.0f%% back to the rule's limits; next step at %s",
			l.pattern, l.caps, l.step, limitSteps, 100*v.Relief, v.NextStep.UTC().Format(time.RFC3339))
	}
	return v
}
