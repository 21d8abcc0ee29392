package queue

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/quota"
)

// RuleView is the MX rule governing a site and why.
type RuleView struct {
	Name                     string `json:"name"`
	Pattern                  string `json:"pattern"`
	MatchedHost              string `json:"matched_host"`
	Scope                    string `json:"scope"`
	MaxConnections           int    `json:"max_connections"`
	MaxMessagesPerConnection int    `json:"max_messages_per_connection"`
	MessagesPerHour          int    `json:"messages_per_hour"`
	MaxConnectionRate        string `json:"max_connection_rate,omitempty"`
	MessagesPerDay           int    `json:"messages_per_day,omitempty"`
	TLS                      string `json:"tls"`
	Why                      string `json:"why"`
}

// SiteView is a site's queue as operators see it.
type SiteView struct {
	Site        string         `json:"site"`
	MXHosts     []string       `json:"mx_hosts"`
	Rule        RuleView       `json:"rule"`
	Queued      int            `json:"queued"`
	InFlight    int            `json:"in_flight"`
	Connections int            `json:"connections"`
	ByStatus    map[string]int `json:"by_status"`
	Wait        *Wait          `json:"wait,omitempty"`
	Flow        flow.Decision  `json:"flow"`
	// Sources are the flow states of the site's sources with recent
	// attempts (a source in backoff or suspended sends less or not at
	// all while the pool's others go on).
	Sources           []flow.SourceDecision `json:"flow_sources,omitempty"`
	Suspended         bool                  `json:"suspended_by_operator"`
	Delivered         int64                 `json:"delivered"`
	Bounced           int64                 `json:"bounced"`
	Deferred          int64                 `json:"deferred"`
	Expired           int64                 `json:"expired"`
	DeliveredLastHour int64                 `json:"delivered_last_hour"`
	Recent            []Reply               `json:"recent_replies,omitempty"`
	Quotas            []quota.Usage         `json:"quotas,omitempty"`
	Caps              []CapView             `json:"caps,omitempty"`
	// Holds: tenants whose messages_per_hour holds their mail at
	// this site now, with the numbers and when the next message may go.
	Holds []Wait `json:"tenant_holds,omitempty"`
}

// CapView is a [[cap]] that applies to a site (to its connections from
// the listed sources, or from every source), with its limits and, in a
// site's detailed view, what it counts now.
type CapView struct {
	Name    string        `json:"name"`
	Limits  string        `json:"limits"`
	Sources []string      `json:"sources,omitempty"`
	Usage   []quota.Usage `json:"usage,omitempty"`
}

// RecipientView is one queued recipient in explain.
type RecipientView struct {
	ID          string    `json:"id"`
	Recipient   string    `json:"recipient"`
	Status      string    `json:"status"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitempty"`
	LastReply   string    `json:"last_reply,omitempty"`
}

// Explanation answers "why does mail to X wait?".
type Explanation struct {
	Target     string          `json:"target"`
	Domain     string          `json:"domain"`
	MXHosts    []dns.MX        `json:"mx_hosts,omitempty"`
	MXError    string          `json:"mx_error,omitempty"`
	Site       *SiteView       `json:"site,omitempty"`
	Recipients []RecipientView `json:"recipients,omitempty"`
	// LocalProblem is set when errors across many sites point at our side
	// (DNS, network, TLS setup, the MTA) rather than at this provider.
	LocalProblem string `json:"local_problem,omitempty"`
	// TLSPolicy is the domain's transport security policy (MTA-STS, DANE)
	// as last looked up, when the domain has been resolved.
	TLSPolicy *PolicyView `json:"tls_policy,omitempty"`
	Verdict   string      `json:"verdict"`
}

// Totals are process-wide counters.
type Totals struct {
	Delivered  int64 `json:"delivered"`
	Bounced    int64 `json:"bounced"`
	Deferred   int64 `json:"deferred"`
	Expired    int64 `json:"expired"`
	Suppressed int64 `json:"suppressed"`
	Queued     int   `json:"queued"`
	Sites      int   `json:"sites"`
}

// Totals returns the process-wide counters.
func (q *Queue) Totals() Totals {
	t := Totals{
		Delivered: q.counters.delivered.Load(), Bounced: q.counters.bounced.Load(),
		Deferred: q.counters.deferred.Load(), Expired: q.counters.expired.Load(),
		Suppressed: q.counters.suppressed.Load(),
	}
	// A domain waiting for its MX answer counts as a site of its own.
	t.Queued = int(q.tally.queued.Load())
	t.Sites = int(q.tally.places.Load())
	return t
}

// Sites lists every known site with queued mail or recent activity.
func (q *Queue) Sites() []SiteView {
	q.mu.Lock()
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	q.mu.Unlock()
	out := make([]SiteView, 0, len(sites))
	for _, s := range sites {
		out = append(out, q.view(s, false))
	}
	out = append(out, q.heldViews("")...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Queued != out[j].Queued {
			return out[i].Queued > out[j].Queued
		}
		return out[i].Site < out[j].Site
	})
	return out
}

// Site returns one site's view, by site key or by domain. A domain whose
// recipients wait for their MX answer has a view of its own.
func (q *Queue) Site(name string) (SiteView, bool) {
	s := q.findSite(name)
	if s == nil {
		if held := q.heldViews(strings.ToLower(strings.TrimSuffix(name, "."))); len(held) > 0 {
			return held[0], true
		}
		return SiteView{}, false
	}
	return q.view(s, true), true
}

// heldViews lists the domains (all, or the one named) whose recipients
// wait for an MX answer. They have no site yet; without these views they
// were invisible in queue, status, the metrics and the dashboard.
func (q *Queue) heldViews(domain string) []SiteView {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []SiteView
	for _, d := range q.domains {
		if domain != "" && d.name.Value() != domain {
			continue
		}
		n := 0
		for _, j := range d.pending {
			n += len(j.rcpts)
		}
		if n == 0 {
			continue
		}
		w := &Wait{Status: statusResolvingMX, Detail: "waiting for the MX answer of " + d.name.Value()}
		if d.lastErr != nil {
			w = &Wait{Status: StatusMXFailed, Since: d.errSince,
				Detail: fmt.Sprintf("the MX lookup of %s has failed since %s (retried): %v", d.name.Value(), d.errSince.UTC().Format(time.RFC3339), d.lastErr)}
		}
		name := d.name.Value()
		if d.pool != "" {
			name += " (pool " + d.pool + ")"
		}
		out = append(out, SiteView{Site: name, Queued: n, ByStatus: map[string]int{w.Status: n}, Wait: w,
			Rule: RuleView{Why: "no rule yet: the domain's MX hosts are not known"}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Site < out[j].Site })
	return out
}

func (q *Queue) findSite(name string) *site {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	q.mu.Lock()
	defer q.mu.Unlock()
	if s := q.sites[name]; s != nil {
		return s
	}
	if d := q.domains[name]; d != nil {
		return d.site
	}
	return nil
}

func (q *Queue) view(s *site, detail bool) SiteView {
	cfg := q.config()
	now := q.now()
	var sources []flow.SourceDecision
	if q.deps.Flow != nil {
		sources = q.deps.Flow.SourcesAll(s.key, now)
	}
	fd := q.flowPeek(s.key, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := cfg.Rules.Match(s.hostNames())
	v := SiteView{
		Site: s.key, MXHosts: s.hostNames(),
		Queued: s.queuedRecipients(), InFlight: s.inflightRecipients(), Connections: s.active,
		ByStatus: map[string]int{}, Flow: fd, Sources: sources, Suspended: s.opSuspended,
		Delivered: s.stats.delivered, Bounced: s.stats.bounced, Deferred: s.stats.deferred,
		Expired: s.stats.expired, DeliveredLastHour: s.stats.hour.total(now),
	}
	r := m.Rule
	v.Rule = RuleView{
		Name: r.Name, Pattern: m.Pattern, MatchedHost: m.Host, Scope: r.Scope.String(),
		MaxConnections: r.MaxConnections, MaxMessagesPerConnection: r.MaxMessagesPerConnection,
		MessagesPerHour: r.MessagesPerHour, TLS: r.TLS, MessagesPerDay: r.MessagesPerDay,
	}
	if !r.MaxConnectionRate.IsZero() {
		v.Rule.MaxConnectionRate = r.MaxConnectionRate.String()
	}
	if m.Host != "" {
		v.Rule.Why = fmt.Sprintf("rule #%d %q is the first whose pattern %q matches MX host %s", m.Index+1, r.Name, m.Pattern, m.Host)
	} else {
		v.Rule.Why = fmt.Sprintf("no rule matches; the catch-all %q applies", r.Name)
	}
	if s.wait.Status != "" {
		w := s.wait
		v.Wait = &w
	}
	if v.InFlight > 0 {
		v.ByStatus[StatusInFlight] = v.InFlight
	}
	for _, j := range s.jobs {
		v.ByStatus[s.statusOf(j, now)] += len(j.rcpts)
	}
	for _, h := range s.holds {
		if now.Before(h.until) {
			v.Holds = append(v.Holds, h.wait)
		}
	}
	sort.Slice(v.Holds, func(i, j int) bool { return v.Holds[i].Key < v.Holds[j].Key })
	siteCaps := cfg.Caps.ForSite(r.Name, s.hostNames())
	capAt := map[string]int{}
	for _, c := range siteCaps {
		capAt[c.Name] = len(v.Caps)
		v.Caps = append(v.Caps, CapView{Name: c.Name, Limits: c.Limits(), Sources: c.Sources})
	}
	if detail {
		v.Recent = append([]Reply(nil), s.recent...)
		for _, u := range q.deps.Quotas.Snapshot() {
			k, err := quota.ParseKey(u.Key)
			switch {
			case err != nil:
			case k.Scope() == quota.ScopeCap:
				if i, ok := capAt[k.Rule()]; ok {
					v.Caps[i].Usage = append(v.Caps[i].Usage, u)
				}
			case k.Governs(r.Name, s.mxKey):
				v.Quotas = append(v.Quotas, u)
			}
		}
	}
	return v
}

func (q *Queue) flowPeek(site string, now time.Time) flow.Decision {
	if q.deps.Flow == nil {
		return flow.Decision{State: flow.Normal, ConnFactor: 1, RateFactor: 1}
	}
	return q.deps.Flow.Peek(site, now)
}

// queuedRecipients counts the recipients of the site's jobs, queued or in
// flight. Caller holds s.mu.
func (s *site) queuedRecipients() int {
	return s.queued
}

// inflightRecipients counts the recipients of claimed jobs. Caller holds s.mu.
func (s *site) inflightRecipients() int {
	n := 0
	for j := range s.claimed {
		n += len(j.rcpts)
	}
	return n
}

// statusOf is a queued job's status text. Caller holds s.mu.
func (s *site) statusOf(j *job, now time.Time) string {
	if j.due.After(now) {
		if j.hold != 0 {
			return j.hold.String()
		}
		if s.policyErr != nil {
			return s.policyErr.status()
		}
		return StatusRetry
	}
	if s.wait.Status != "" {
		return s.wait.Status
	}
	return StatusDue
}

// Explain says why mail to an address or a domain waits.
func (q *Queue) Explain(ctx context.Context, target string) Explanation {
	target = strings.TrimSpace(target)
	addr := ""
	domain := strings.ToLower(strings.TrimSuffix(target, "."))
	if strings.Contains(target, "@") {
		addr = target
		domain = domainOf(target)
	}
	ex := Explanation{Target: target, Domain: domain}
	s := q.findSite(domain)
	if s == nil {
		if sk := q.findSite(target); sk != nil {
			s = sk
		}
	}
	res, err := q.deps.Resolver.LookupMX(ctx, domain)
	if err == nil {
		ex.MXHosts = res.Hosts
	} else {
		ex.MXError = err.Error()
	}
	q.mu.Lock()
	var mxHeld []*job
	var mxRcpts [][]int
	var mxErr error
	var errSince time.Time
	if d := q.domains[domain]; d != nil {
		mxHeld = append(mxHeld, d.pending...)
		for _, j := range d.pending {
			mxRcpts = append(mxRcpts, j.rcpts)
		}
		mxErr, errSince = d.lastErr, d.errSince
		ex.TLSPolicy = viewOf(d.policy)
	}
	q.mu.Unlock()

	if s != nil {
		v := q.view(s, true)
		ex.Site = &v
	}
	now := q.now()
	// rcpts is the job's recipients as read under the lock that guards
	// them (a session narrows a claimed job's under the site's).
	addRcpt := func(j *job, rcpts []int, status string) {
		if addr == "" && len(ex.Recipients) >= 100 {
			return // nothing more is shown: spare the spool reads
		}
		m, err := q.peek(j.e)
		if err != nil {
			return // gone meanwhile
		}
		for _, ri := range rcpts {
			mu := q.lockOf(j.e)
			mu.Lock()
			r := m.Recipients[ri]
			mu.Unlock()
			if addr != "" && !strings.EqualFold(r.Addr, addr) {
				continue
			}
			rv := RecipientView{ID: j.e.id.String(), Recipient: r.Addr, Status: status, Attempts: int(r.Attempts)}
			if r.NextAttempt.After(now) {
				rv.NextAttempt = r.NextAttempt
			}
			if r.LastCode != 0 || r.LastText != "" {
				rv.LastReply = strings.TrimSpace(fmt.Sprintf("%d %s %s", r.LastCode, r.LastEnhanced, r.LastText))
			}
			if len(ex.Recipients) < 100 {
				ex.Recipients = append(ex.Recipients, rv)
			}
		}
	}
	for i, j := range mxHeld {
		st := statusResolvingMX
		if mxErr != nil {
			st = StatusMXFailed
		}
		addRcpt(j, mxRcpts[i], st)
	}
	if s != nil {
		s.mu.Lock()
		jobs := make([]*job, 0, len(s.jobs))
		rcpts := make([][]int, 0, len(s.jobs))
		statuses := make([]string, 0, len(s.jobs))
		for j := range s.claimed {
			if j.domain.Value() == domain || addr == "" && domain == s.key {
				jobs, rcpts = append(jobs, j), append(rcpts, j.rcpts)
				statuses = append(statuses, StatusInFlight)
			}
		}
		for _, j := range s.jobs {
			if j.domain.Value() == domain || addr == "" && domain == s.key {
				jobs, rcpts = append(jobs, j), append(rcpts, j.rcpts)
				statuses = append(statuses, s.statusOf(j, now))
			}
		}
		s.mu.Unlock()
		for i, j := range jobs {
			addRcpt(j, rcpts[i], statuses[i])
		}
	}
	if q.deps.Flow != nil {
		if on, lp := q.deps.Flow.Local(); on {
			ex.LocalProblem = lp.Detail
		}
	}
	ex.Verdict = q.verdict(ex, mxErr, errSince, len(mxHeld))
	if ex.LocalProblem != "" {
		ex.Verdict = "LOCAL PROBLEM: " + ex.LocalProblem + ". " + ex.Verdict
	} else if ex.Site != nil && ex.Site.Flow.Diagnosis != "" && ex.Site.Flow.State != flow.Normal {
		ex.Verdict += ". Diagnosis: " + ex.Site.Flow.Diagnosis
	}
	if ex.Site != nil && ex.LocalProblem == "" {
		for _, d := range ex.Site.Sources {
			if d.State != flow.Normal && d.Diagnosis != "" {
				ex.Verdict += fmt.Sprintf(". Source %s in %s: %s", d.Source, d.State, d.Diagnosis)
			}
		}
	}
	return ex
}

func (q *Queue) verdict(ex Explanation, mxErr error, since time.Time, held int) string {
	if mxErr != nil && held > 0 {
		return fmt.Sprintf("%s: %d recipient(s) wait for the MX lookup of %s, failing since %s: %v",
			StatusMXFailed, held, ex.Domain, since.UTC().Format(time.RFC3339), mxErr)
	}
	if ex.Site == nil {
		if ex.MXError != "" {
			return "no mail queued; MX lookup: " + ex.MXError
		}
		return "no mail queued for " + ex.Target
	}
	v := ex.Site
	if v.Queued == 0 {
		return fmt.Sprintf("no mail queued for %s; site %s is governed by rule %q", ex.Target, v.Site, v.Rule.Name)
	}
	if v.Wait != nil {
		msg := v.Wait.Status + ": " + v.Wait.Detail
		if !v.Wait.Until.IsZero() {
			msg += "; next slot expected at " + v.Wait.Until.UTC().Format(time.RFC3339)
		}
		return msg
	}
	if v.InFlight > 0 {
		return fmt.Sprintf("mail is moving: %d in delivery on %d connection(s)", v.InFlight, v.Connections)
	}
	for _, st := range []struct{ status, what string }{
		{StatusDANE, "the domain's DANE policy (TLSA records) cannot be met"},
		{StatusMTASTS, "the domain's enforced MTA-STS policy cannot be met"},
	} {
		if n := v.ByStatus[st.status]; n > 0 {
			last := ""
			if len(v.Recent) > 0 {
				last = "; last failure: " + v.Recent[len(v.Recent)-1].Text
			} else {
				// Refused before any MX host was tried (no host the
				// policy allows): the recipients' last reply says why.
				for _, r := range ex.Recipients {
					if r.Status == st.status && r.LastReply != "" {
						last = "; last failure: " + r.LastReply
					}
				}
			}
			return fmt.Sprintf("%s: %d recipient(s) wait because %s%s", st.status, n, st.what, last)
		}
	}
	if n := v.ByStatus[StatusRetry]; n > 0 {
		last := ""
		if len(v.Recent) > 0 {
			r := v.Recent[len(v.Recent)-1]
			last = fmt.Sprintf("; last reply from %s: %d %s %s", r.MXHost, r.Code, r.Enhanced, r.Text)
		}
		return fmt.Sprintf("%s: %d recipient(s) wait for their next attempt%s", StatusRetry, n, last)
	}
	return "mail is due and about to be sent"
}

// QueuedByDelivery counts a campaign's queued recipients by status text.
// It scans the queues: for the API, not for scheduling.
func (q *Queue) QueuedByDelivery(deliveryID string) map[string]int {
	out := map[string]int{}
	now := q.now()
	q.mu.Lock()
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	for _, d := range q.domains {
		st := statusResolvingMX
		if d.lastErr != nil {
			st = StatusMXFailed
		}
		for _, j := range d.pending {
			if j.e.delivery() == deliveryID {
				out[st] += len(j.rcpts)
			}
		}
	}
	q.mu.Unlock()
	for _, s := range sites {
		s.mu.Lock()
		for _, j := range s.jobs {
			if j.e.delivery() == deliveryID {
				out[s.statusOf(j, now)] += len(j.rcpts)
			}
		}
		s.mu.Unlock()
	}
	return out
}

// heapInit restores the heap after due times changed or jobs were removed.
func heapInit(h *jobHeap) {
	for i, j := range *h {
		j.index = int32(i)
	}
	heap.Init(h)
}
