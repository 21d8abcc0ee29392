package queue

import (
	"container/heap"
	"context"
	"fmt"
	"github.com/penstock-mta/penstock/flow"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// forever stands for "until something wakes the runner".
const forever = time.Duration(math.MaxInt64)

// quotaRecheck bounds how long a runner held by the quota store waits for a
// release notification; in cluster mode a lease can also vanish by expiry,
// which nobody announces.
const quotaRecheck = time.Second

// flowRecheck bounds how long a site held by flow control waits before it
// asks again (states change by time and by other sites' events).
const flowRecheck = time.Second

// Wait says why the due mail of a site is not moving, with the numbers.
type Wait struct {
	Status string    `json:"status"`
	Detail string    `json:"detail"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until,omitempty"` // when the next slot is expected
	Rule   string    `json:"rule,omitempty"`
	Cap    string    `json:"cap,omitempty"` // the [[cap]] met (StatusCapMet)
	Key    string    `json:"key,omitempty"` // quota scope key
	Limit  int       `json:"limit,omitempty"`
	InUse  int       `json:"in_use,omitempty"`
}

// Reply is a response remembered for explain.
type Reply struct {
	Time     time.Time `json:"time"`
	Code     int       `json:"code,omitempty"`
	Enhanced string    `json:"enhanced,omitempty"`
	Text     string    `json:"text"`
	MXHost   string    `json:"mx_host,omitempty"`
	MXIP     string    `json:"mx_ip,omitempty"`
	// Local: the failure is on our side (our resolver, sockets, route or
	// resources: bounce.OurSide). A remote that refuses, resets or times
	// out, or answers with a code, is the remote's.
	Local bool `json:"local,omitempty"`
}

const recentReplies = 10

type site struct {
	q     *Queue
	key   string
	pool  string // "" = the default pool
	mxKey string // the MX host set alone: quotas of a source count across pools
	wake  chan struct{}

	mu          sync.Mutex
	hosts       []dns.MX
	policy      tlspolicy.Policy // the TLS policy of its domains (their Class is in the key)
	policyErr   *policyError     // why the last attempt failed the enforced policy; nil after a success
	jobs        jobHeap
	running     bool
	active      int               // sessions open or dialing
	idle        int               // of those, looking for their next job (next)
	runnerWaits bool              // the runner left a due job to an idle session
	inflight    int               // jobs claimed and not yet back
	claimed     map[*job]struct{} // those jobs, for explain
	queued      int               // recipients in jobs and claimed (q.tally)
	probing     bool
	probingSrc  map[string]bool // sources whose probe session is open
	wait        Wait
	opSuspended bool
	opUntil     time.Time // zero: until resumed
	recent      []Reply
	stats       siteStats
	minExpires  time.Time             // earliest validity end among queued jobs (zero: none)
	vtime       uint64                // fair share: the highest tag claimed (fair.go)
	flowNext    map[sender]uint64     // fair share: where each flow's next tag starts
	holds       map[string]tenantHold // tenants whose quota is met, until when
	arrivals    chan struct{}         // closed at the next push: wakes lingering sessions
	parked      bool                  // no runner until park fires: nothing is due for a while (park.go)
	park        *time.Timer           // starts the runner of a parked site at its next due time
	quiet       int                   // sweeps that found it with nothing to do since its last push (sweep.go)
	gone        bool                  // dropped by Sweep (set under q.mu too): a push routes the job again
}

type siteStats struct {
	delivered, bounced, deferred, expired int64
	hour                                  *hourRing // nil until the first delivery (a site holding mail for a retry never needs one)
}

func newSite(q *Queue, key string, hosts []dns.MX) *site {
	return &site{q: q, key: key, mxKey: key, hosts: hosts, wake: make(chan struct{}, 1)}
}

// poke wakes the runner if it sleeps.
func (s *site) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// push adds a job and makes sure a runner looks at it.
func (s *site) push(j *job) {
	s.mu.Lock()
	if s.gone {
		// Swept after the caller found it: the domain's record is
		// cleared, so routing again makes its site anew.
		s.mu.Unlock()
		s.q.route(j)
		return
	}
	k := s.enqueueLocked(j)
	s.mu.Unlock()
	s.kick(k)
}

// kickoff says what a runner needs after a job was queued: to be started,
// or woken because the job is the new earliest.
type kickoff struct{ start, top bool }

// enqueueLocked puts a job in the heap and wakes lingering sessions; the
// caller, once it has unlocked s.mu, passes the result to kick. Caller
// holds s.mu.
func (s *site) enqueueLocked(j *job) kickoff {
	s.quiet = 0
	j.seq = s.tagLocked(j)
	heap.Push(&s.jobs, j)
	s.q.tally.move(&s.queued, len(j.rcpts))
	s.noteExpiry(j)
	s.arrived()
	return kickoff{top: j.index == 0, start: s.claimRunnerLocked()}
}

// kick starts the runner or pokes it, as enqueueLocked found. Called
// without s.mu: the runner takes it at once.
func (s *site) kick(k kickoff) {
	if k.start {
		go s.run()
	} else if k.top {
		s.poke()
	}
}

func (s *site) hostNames() []string { return mxNames(s.hosts) }

func (s *site) setWait(w Wait) {
	if s.wait.Status != w.Status || s.wait.Since.IsZero() {
		w.Since = s.q.now()
	} else {
		w.Since = s.wait.Since
	}
	s.wait = w
}

// run is the site's runner: it opens sessions while there is due mail and
// the limits allow, and sleeps otherwise. It exits when the site is empty.
func (s *site) run() {
	defer s.q.wg.Done()
	for {
		if s.q.isClosed() {
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			return
		}
		d, ch := s.step()
		if d < 0 {
			return
		}
		if d == 0 && ch == nil {
			continue
		}
		s.sleep(d, ch)
	}
}

func (s *site) sleep(d time.Duration, ch <-chan struct{}) {
	var tc <-chan time.Time
	if d != forever {
		t := time.NewTimer(d)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-tc:
	case <-ch:
	case <-s.wake:
	case <-s.q.closing:
	}
}

// limits are the effective limits of one session, after flow control.
type limits struct {
	match       mxrule.Match
	maxConns    int
	maxMsgs     int
	perHour     int
	connRate    quota.Rate // connection opens; zero: unlimited
	perDay      int
	caps        []*caps.Cap // the session's [[cap]]s, set once its lease is taken
	probe       bool
	srcProbe    bool // a probe of one suspended source (its IP is the session's)
	flowState   string
	flowDetail  string
	tlsMode     string
	noChunking  bool
	source      string // the session's source name (warm-up counts per source)
	connTimeout time.Duration
	cmdTimeout  time.Duration
	dataTimeout time.Duration
}

// tls is the session's TLS mode; an unparsable one (the rule was
// validated, so none in practice) counts as opportunistic.
func (lim limits) tls() smtpclient.TLSMode {
	mode, err := smtpclient.ParseTLSMode(lim.tlsMode)
	if err != nil {
		return smtpclient.TLSOpportunistic
	}
	return mode
}

// cut reports whether flow control is out of normal (a backoff, or a
// pattern's timed limit) so that a quota met may be one it set.
func (lim limits) cut() bool { return lim.flowState != "" && lim.flowState != flow.Normal }

// step tries to start one session. It returns how long to sleep (forever:
// until poked; negative: the runner must exit) and an extra channel that
// ends the sleep.
func (s *site) step() (time.Duration, <-chan struct{}) {
	q := s.q
	cfg := q.config()
	now := q.now()

	s.mu.Lock()
	if len(s.jobs) == 0 {
		s.running = false
		s.wait = Wait{}
		s.mu.Unlock()
		return -1, nil
	}
	if top := s.jobs[0]; top.due.After(now) {
		if s.active == 0 {
			s.wait = Wait{}
		}
		d := top.due.Sub(now)
		if d >= parkAfter && s.active == 0 && s.inflight == 0 {
			s.parkLocked(d)
			s.mu.Unlock()
			return -1, nil
		}
		s.mu.Unlock()
		return d, nil
	}
	if s.idle > 0 && !s.opSuspended {
		// A session with its connection open is looking for this site's
		// next job: it takes the due one. Dialling another here would race
		// it and leave one of the two connections idle until it closes.
		// The session pokes the runner when it stops looking.
		s.runnerWaits = true
		s.mu.Unlock()
		return forever, nil
	}
	if s.opSuspended {
		if s.opUntil.IsZero() || now.Before(s.opUntil) {
			detail := "suspended by operator until resumed"
			d := forever
			if !s.opUntil.IsZero() {
				detail = "suspended by operator until " + s.opUntil.UTC().Format(time.RFC3339)
				d = s.opUntil.Sub(now)
			}
			s.setWait(Wait{Status: StatusSuspended, Detail: detail, Until: s.opUntil})
			s.mu.Unlock()
			return d, nil
		}
		s.opSuspended = false
	}
	lim := s.limits(cfg, q.flowCheck(s.key, now))
	if lim.flowState != "" && lim.maxConns == 0 {
		u := s.wait.Until
		s.mu.Unlock()
		if !u.IsZero() && u.Sub(now) < flowRecheck {
			return max(u.Sub(now), time.Millisecond), nil
		}
		return flowRecheck, nil
	}
	if lim.probe && s.probing {
		s.mu.Unlock()
		return flowRecheck, nil
	}
	hosts := append([]dns.MX(nil), s.hosts...)
	pool := cfg.Pools[cfg.DefaultPool]
	if p, ok := cfg.Pools[s.pool]; ok && s.pool != "" {
		pool = p
	}
	// Warm-up first (it locks s.mu itself): a warming source whose volume
	// is spent leaves the pool; then the sources' flow states.
	s.mu.Unlock()
	pool, wait, changed := s.warmSources(lim, pool)
	if len(pool) == 0 {
		return wait, changed
	}
	s.mu.Lock()
	plan := s.planPool(lim, pool, q.flowSources(s.key, now))
	if len(plan.usable) == 0 && len(plan.probes) == 0 && len(plan.held) > 0 {
		// Every source is in trouble: the site waits as a whole.
		until := plan.held[0].Until
		for _, d := range plan.held[1:] {
			if d.Until.Before(until) {
				until = d.Until
			}
		}
		s.setWait(Wait{Status: StatusFlowControl, Rule: lim.match.Rule.Name, Until: until, Detail: heldDetail(q.deps.Flow.SourcesAll(s.key, now), plan.held)})
		s.mu.Unlock()
		if !until.IsZero() && until.Sub(now) < flowRecheck {
			return max(until.Sub(now), time.Millisecond), nil
		}
		return flowRecheck, nil
	}
	s.mu.Unlock()

	lease, p, usage, plim, capped, ok := s.acquire(cfg, lim, hosts, plan)
	if !ok && usage.Limit > 0 && usage.InUse >= usage.Limit {
		// Refused (not a store failure): an idle connection of another
		// site holding this quota carries the job under its lease when
		// it can (share.go), or gives the quota up; its release wakes
		// this runner (Quotas.Wait below).
		if capped == nil && s.lendHeld(cfg, lim, hosts, plan, usage.Key) {
			return 0, nil
		}
		q.yields.contend(usage.Key, s)
	}
	if !ok && capped != nil {
		s.capConnsMet(capped, usage)
		return quotaRecheck, q.deps.Quotas.Wait(usage.Key)
	}
	if !ok {
		s.mu.Lock()
		status := StatusConnQuota
		if lim.cut() && (lim.flowState != flow.Limited || lim.maxConns != lim.match.Rule.MaxConnections) {
			// The quota met is the one flow control cut.
			status = StatusFlowControl
		}
		s.setWait(Wait{Status: status, Rule: lim.match.Rule.Name, Key: usage.Key, Limit: usage.Limit, InUse: usage.InUse,
			Until: usage.NextSlot,
			Detail: fmt.Sprintf("rule %q scope %s: %d of %d connections in use (key %s)", lim.match.Rule.Name,
				lim.match.Rule.Scope, usage.InUse, usage.Limit, usage.Key)})
		if status == StatusFlowControl {
			s.wait.Detail = fmt.Sprintf("flow control cut rule %q from %d to %d connections, all in use (key %s); %s",
				lim.match.Rule.Name, lim.match.Rule.MaxConnections, usage.Limit, usage.Key, lim.flowDetail)
		}
		s.mu.Unlock()
		if usage.Key == "" {
			return quotaRecheck, nil
		}
		return quotaRecheck, q.deps.Quotas.Wait(usage.Key)
	}
	lim = plim
	lim.source = p.src.Name
	lim.caps = p.caps
	if lim.srcProbe && (q.deps.Flow == nil || !q.deps.Flow.TakeProbe(s.key, sourceIP(p.src), now)) {
		lease.Release()
		return flowRecheck, nil
	}
	if d, ok := s.takeOpen(lim, lease.Key()); !ok {
		lease.Release()
		return d, nil
	}
	j, retryIn := s.claim(lim, lease.Key())
	if j == nil {
		lease.Release()
		if retryIn > 0 {
			return retryIn, nil
		}
		return 0, nil
	}
	s.mu.Lock()
	s.active++
	if lim.probe {
		s.probing = true
	}
	if lim.srcProbe {
		if s.probingSrc == nil {
			s.probingSrc = map[string]bool{}
		}
		s.probingSrc[sourceIP(p.src)] = true
	}
	if quotaWait(s.wait.Status) {
		// A connection is opening: the quota no longer holds the mail.
		s.wait = Wait{}
	}
	s.mu.Unlock()
	if s.handOver(cfg, hosts, lease, p, j, lim) {
		// An idle connection of another site took the job and the lease;
		// it counts in s.active and ends it (share.go).
		return 0, nil
	}
	q.wg.Add(1)
	go s.session(lease, p, j, lim)
	return 0, nil
}

func (q *Queue) flowCheck(site string, now time.Time) flow.Decision {
	if q.deps.Flow == nil {
		return flow.Decision{State: "normal", ConnFactor: 1, RateFactor: 1}
	}
	return q.deps.Flow.Check(site, now)
}

// limits derives the effective limits from the matched rule and flow
// control. It records the flow-control wait when the site is held.
// Caller holds s.mu.
func (s *site) limits(cfg *Config, dec flow.Decision) limits {
	m := cfg.Rules.Match(s.hostNames())
	r := m.Rule
	lim := limits{
		match:       m,
		maxConns:    r.MaxConnections,
		maxMsgs:     r.MaxMessagesPerConnection,
		perHour:     r.MessagesPerHour,
		connRate:    r.MaxConnectionRate,
		perDay:      r.MessagesPerDay,
		flowState:   dec.State,
		flowDetail:  dec.Detail,
		tlsMode:     r.TLS,
		noChunking:  r.NoChunking,
		connTimeout: r.ConnectTimeout,
		cmdTimeout:  r.CommandTimeout,
		dataTimeout: r.DataTimeout,
	}
	// The rule's limits were defaulted by mxrule.New; "default" TLS is
	// resolved there too.
	lim.tlsMode = mxrule.EffectiveTLS(lim.tlsMode, cfg.TLSDefault)
	if dec.Limit != nil {
		applyLimit(&lim, dec)
		if lim.flowState == "" || lim.flowState == flow.Normal {
			lim.flowState = flow.Limited
		}
	}
	switch {
	case dec.Hold && !dec.Probe:
		lim.maxConns = 0
		s.setWait(Wait{Status: StatusFlowControl, Detail: dec.Detail, Until: dec.Until, Rule: r.Name})
	case dec.Probe:
		lim.probe = true
		lim.maxConns = 1
		lim.maxMsgs = 1
		s.setWait(Wait{Status: StatusFlowControl, Detail: dec.Detail + " (probe)", Until: dec.Until, Rule: r.Name})
	default:
		applyCuts(&lim, dec)
	}
	return lim
}

// applyLimit caps the limits with a pattern's timed limit, if any.
func applyLimit(lim *limits, dec flow.Decision) {
	l := dec.Limit
	if l == nil {
		return
	}
	// A pattern's timed limit caps the rule; backoff cuts apply on top.
	// The status is flow control's, naming the pattern.
	lim.maxConns = l.Apply(lim.maxConns, l.MaxConns)
	lim.maxMsgs = l.Apply(lim.maxMsgs, l.MaxMsgsPerConn)
	lim.perHour = l.Apply(lim.perHour, l.PerHour)
	lim.connRate.N, lim.connRate.Per = l.ApplyRate(lim.connRate.N, lim.connRate.Per)
}

// applyCuts applies a backoff's factors to the limits.
func applyCuts(lim *limits, dec flow.Decision) {
	if dec.ConnFactor > 0 && dec.ConnFactor < 1 {
		lim.maxConns = max(1, int(float64(lim.maxConns)*dec.ConnFactor))
	}
	if dec.RateFactor > 0 && dec.RateFactor < 1 {
		switch {
		case lim.perHour > 0:
			lim.perHour = max(1, int(float64(lim.perHour)*dec.RateFactor))
		case dec.ObservedPH > 0:
			// The rule sets no rate: slow down from what the site
			// took in the window, so backoff means slower too.
			lim.perHour = max(60, int(float64(dec.ObservedPH)*dec.RateFactor))
		}
	}
}

// path is where a session goes: a source and, for path-scoped rules, the
// one remote address its lease covers.
type path struct {
	src   Source
	fixed *target
	caps  []*caps.Cap // the [[cap]]s whose leases the session holds
}

type target struct {
	host string
	ip   netip.Addr
}

func (p path) String(t target) string { return sourceIP(p.src) + ">" + t.ip.String() }

func sourceIP(s Source) string {
	if !s.IP.IsValid() {
		return "*"
	}
	return s.IP.String()
}

// acquire takes a connection lease for the rule's scope, trying the
// sources whose probe is due, then the plan's usable sources in weighted
// random order (their weights re-normalised over those that may send)
// (and, for path scope, the MX addresses in preference order). It
// returns the limits of the source it took: a source in backoff sends
// under its own cut limits.
//
// Each lease of the rule also needs a lease of every [[cap]] that applies
// to it (caps of the rule and site, then of the source tried); a cap met
// moves on to the next source, as the rule's quota met does. When nothing
// could be taken it returns the usage of the last refusal and, if that was
// a cap's, the cap.
func (s *site) acquire(cfg *Config, lim limits, hosts []dns.MX, plan poolPlan) (quota.Lease, path, quota.Usage, limits, *caps.Cap, bool) {
	q := s.q
	r := lim.match.Rule
	// A due probe first: a suspended source recovers only through its
	// probes, and behind the healthy sources it would get one only when
	// they are all full (never, under light traffic).
	srcs := weightedOrder(plan.usable)
	if len(plan.probes) > 0 {
		srcs = append(append(make([]Source, 0, len(plan.probes)+len(srcs)), plan.probes...), srcs...)
	}
	limOf := func(src Source) limits {
		if plan.per == nil {
			return lim // every source normal
		}
		if l, ok := plan.per[src.IP]; ok {
			return l
		}
		return lim
	}
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
	defer cancel()
	siteCaps := cfg.Caps.ForSite(r.Name, mxNames(hosts))
	var last quota.Usage
	var capped *caps.Cap
	try := func(k quota.Key, n int, src Source, pa path) (quota.Lease, path, bool) {
		// The limit is per scope key; flow control's cut applies to it.
		key := k.String()
		l, u, ok, err := q.deps.Quotas.TryConn(ctx, key, n)
		if err != nil {
			q.deps.Logger.Warn("quota store", "key", key, "err", err)
			u = quota.Usage{Key: key, Limit: n}
		}
		if !ok || err != nil {
			last, capped = u, nil
			return nil, pa, false
		}
		if len(siteCaps) == 0 {
			return l, pa, true
		}
		pa.caps = siteCaps.ForSource(src.Name)
		cl, u, c, ok := s.takeCapConns(ctx, l, pa.caps)
		if !ok {
			last, capped = u, c
			return nil, pa, false
		}
		return cl, pa, true
	}
	if len(srcs) == 0 {
		// An empty pool: the kernel chooses the source.
		srcs = []Source{{}}
	}
	switch r.Scope {
	case mxrule.ScopeRule:
		l0 := limOf(srcs[0])
		if l, pa, ok := try(quota.RuleKey(r.Name), l0.maxConns, srcs[0], path{src: srcs[0]}); ok {
			return l, pa, quota.Usage{}, l0, nil, true
		}
	case mxrule.ScopePath:
		targets := s.targets(ctx, cfg, hosts)
		for _, src := range srcs {
			sl := limOf(src)
			for i := range targets {
				t := targets[i]
				if l, pa, ok := try(quota.PathKey(r.Name, sourceIP(src), t.ip.String()), sl.maxConns, src, path{src: src, fixed: &t}); ok {
					return l, pa, quota.Usage{}, sl, nil, true
				}
			}
		}
		if len(targets) == 0 {
			// No address resolves: let the session fail and report it.
			sl := limOf(srcs[0])
			if l, pa, ok := try(quota.PathKey(r.Name, sourceIP(srcs[0]), "none"), sl.maxConns, srcs[0], path{src: srcs[0]}); ok {
				return l, pa, quota.Usage{}, sl, nil, true
			}
		}
	default: // source
		for _, src := range srcs {
			sl := limOf(src)
			if l, pa, ok := try(quota.SourceKey(r.Name, s.mxKey, sourceIP(src)), sl.maxConns, src, path{src: src}); ok {
				return l, pa, quota.Usage{}, sl, nil, true
			}
		}
	}
	return nil, path{}, last, lim, capped, false
}

// targets resolves the MX hosts to addresses, in preference order, at most
// cfg.MaxMXAddrs of them.
func (s *site) targets(ctx context.Context, cfg *Config, hosts []dns.MX) []target {
	out, _ := s.lookupTargets(ctx, cfg, hosts)
	return out
}

// lookupTargets is targets with the last lookup error, so that a caller
// left with no address can tell our own failure (no descriptor for the
// resolver's socket) from the site's.
func (s *site) lookupTargets(ctx context.Context, cfg *Config, hosts []dns.MX) ([]target, error) {
	var out []target
	var lastErr error
	for _, h := range hosts {
		ips, err := s.q.deps.Resolver.LookupIP(ctx, h.Host)
		if err != nil {
			lastErr = err
			continue
		}
		for _, ip := range ips {
			out = append(out, target{host: h.Host, ip: ip})
			if len(out) >= cfg.MaxMXAddrs {
				return out, nil
			}
		}
	}
	return out, lastErr
}

func weightedOrder(pool []Source) []Source {
	if len(pool) <= 1 {
		return pool
	}
	rest := append([]Source(nil), pool...)
	out := make([]Source, 0, len(pool))
	for len(rest) > 0 {
		total := 0
		for _, s := range rest {
			total += max(1, s.Weight)
		}
		n := rand.IntN(total)
		for i, s := range rest {
			n -= max(1, s.Weight)
			if n < 0 {
				out = append(out, s)
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
		}
	}
	return out
}

// claim pops the earliest due job and takes a message-rate token for it.
// It returns nil when no job is due, or when the rate quota is met (then
// with the time until the next token, and the wait recorded).
func (s *site) claim(lim limits, leaseKey string) (*job, time.Duration) {
	q := s.q
	for {
		now := q.now()
		s.mu.Lock()
		// A session with its connection open claims too: an operator's
		// suspension stops it as well as the runner (which ends it).
		suspended := s.opSuspended && (s.opUntil.IsZero() || now.Before(s.opUntil))
		if suspended || len(s.jobs) == 0 || s.jobs[0].due.After(now) {
			s.mu.Unlock()
			return nil, 0
		}
		j := heap.Pop(&s.jobs).(*job)
		j.hold = 0
		s.take(j)
		s.mu.Unlock()
		if j.e.expired(now) {
			q.expire(j, s, now)
			continue
		}
		if st, detail := q.suspension(j.e.delivery(), j.e.tenant()); st != "" {
			s.deferJob(j, now.Add(suspendRecheck), Wait{Status: st, Detail: detail})
			continue
		}
		tl := s.tenantLimit(j)
		cr := q.campaignRate(j.e.delivery())
		rates := lim.perHour > 0 || lim.perDay > 0 || capRates(lim.caps)
		if !rates && tl.PerHour <= 0 && cr <= 0 {
			return s.grant(lim, j)
		}
		ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
		if (cr > 0 && !s.takeCampaign(ctx, j, cr, now)) || (tl.PerHour > 0 && !s.takeTenant(ctx, j, tl, now)) {
			cancel()
			continue // put back until the campaign's or tenant's next token; other flows go on
		}
		if !rates {
			cancel()
			return s.grant(lim, j)
		}
		rateKey := leaseKey // a lease from a store that names no scope
		dayKey := "day|" + leaseKey
		if k, err := quota.ParseKey(leaseKey); err == nil {
			rateKey, dayKey = k.Rate().String(), k.Day().String()
		}
		ok, retryIn, err := q.deps.Quotas.TakeMessage(ctx, rateKey, lim.perHour)
		if err == nil && ok {
			// The caps' hourly tokens come after the rule's (a cap
			// refusing wastes a token of the rule it holds anyway, never
			// one shared with other rules) and before the day, which
			// counts last: a refused token never counts against the day
			// (see package quota).
			if d, ok := s.takeCapMessages(ctx, j, lim.caps); !ok {
				cancel()
				return nil, d
			}
			ok, retryIn, err = q.deps.Quotas.TakeDaily(ctx, dayKey, lim.perDay)
			cancel()
			if err == nil && ok {
				return s.grant(lim, j)
			}
			retryIn = q.storeRetry(dayKey, retryIn, err)
			until := now.Add(retryIn)
			s.refuse(j, Wait{Status: StatusDailyQuota, Rule: lim.match.Rule.Name, Key: dayKey, Limit: lim.perDay, InUse: lim.perDay,
				Until: until,
				Detail: fmt.Sprintf("rule %q: %d messages per rolling 24 h (key %s) sent; the next may go at %s (in %s)",
					lim.match.Rule.Name, lim.perDay, dayKey, until.UTC().Format(time.RFC3339), retryIn.Round(time.Second))})
			return nil, max(retryIn, time.Millisecond)
		}
		cancel()
		retryIn = q.storeRetry(rateKey, retryIn, err)
		w := Wait{Status: StatusHourlyQuota, Rule: lim.match.Rule.Name, Key: rateKey, Limit: lim.perHour,
			Until:  now.Add(retryIn),
			Detail: fmt.Sprintf("rule %q: %d messages per hour (key %s); next message in %s", lim.match.Rule.Name, lim.perHour, rateKey, retryIn.Round(time.Millisecond))}
		if ruleRate := lim.match.Rule.MessagesPerHour; lim.perHour != ruleRate || (lim.cut() && lim.flowState != flow.Limited) {
			// The rate met is one flow control set: "hourly quota met"
			// only ever means the rule's own messages_per_hour.
			from := "unlimited (the rate taken before the trouble was cut instead)"
			if ruleRate > 0 {
				from = fmt.Sprintf("%d", ruleRate)
			}
			w.Status = StatusFlowControl
			w.Detail = fmt.Sprintf("flow control cut rule %q's messages per hour from %s to %d (key %s); next message in %s; %s",
				lim.match.Rule.Name, from, lim.perHour, rateKey, retryIn.Round(time.Millisecond), lim.flowDetail)
		}
		s.refuse(j, w)
		return nil, max(retryIn, time.Millisecond)
	}
}

// grant gives a claimed job to the session: counted against its source's
// warm-up volume (refused: back in the heap), then recorded for the fair
// share.
func (s *site) grant(lim limits, j *job) (*job, time.Duration) {
	if d, ok := s.takeWarm(lim, j); !ok {
		return nil, d
	}
	return s.served(j), 0
}

// served records j as claimed for the fair share and returns it.
func (s *site) served(j *job) *job {
	s.mu.Lock()
	s.servedLocked(j)
	s.mu.Unlock()
	return j
}

// refuse puts a claimed job back in the heap, its token refused (a rate,
// a daily quota, a warm-up volume), and records why the site waits. When
// a lingering session's claim took the site's last job, the runner may
// have found the heap empty and exited meanwhile: it is started again, so
// that someone runs the job when the wait ends (not arrived(): lingering
// sessions would only be refused again).
func (s *site) refuse(j *job, w Wait) {
	s.mu.Lock()
	s.forgetLocked(j)
	heap.Push(&s.jobs, j)
	s.q.tally.move(&s.queued, len(j.rcpts))
	s.setWait(w)
	start := s.claimRunnerLocked()
	s.mu.Unlock()
	if start {
		go s.run()
	}
}

// takeOpen takes a connection-open token of the rule's max_connection_rate
// before a session dials. Refused, it records the wait and returns how
// long until the next token. A session that falls back to a second MX
// host still counts once. The token is taken before the message token
// (claim), so a message rate met right after it wastes it: while both
// bind, connections open at most at the message rate's retries, which is
// on the safe side of both limits.
func (s *site) takeOpen(lim limits, leaseKey string) (time.Duration, bool) {
	r := lim.connRate
	if r.IsZero() {
		return s.takeCapOpens(lim.caps)
	}
	q := s.q
	key := "open|" + leaseKey
	if k, err := quota.ParseKey(leaseKey); err == nil {
		key = k.Opens().String()
	}
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
	ok, retryIn, err := q.deps.Quotas.TakeRate(ctx, key, r)
	cancel()
	if err == nil && ok {
		return s.takeCapOpens(lim.caps)
	}
	retryIn = q.storeRetry(key, retryIn, err)
	now := q.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim.cut() && r != lim.match.Rule.MaxConnectionRate {
		s.setWait(Wait{Status: StatusFlowControl, Rule: lim.match.Rule.Name, Key: key, Limit: r.N, Until: now.Add(retryIn),
			Detail: fmt.Sprintf("flow control set rule %q's max_connection_rate to %d per %s (key %s); next connection in %s; %s",
				lim.match.Rule.Name, r.N, r.Per, key, retryIn.Round(time.Millisecond), lim.flowDetail)})
		return max(retryIn, time.Millisecond), false
	}
	s.setWait(Wait{Status: StatusConnRate, Rule: lim.match.Rule.Name, Key: key, Limit: r.N, InUse: quota.RateBurst(r),
		Until: now.Add(retryIn),
		Detail: fmt.Sprintf("rule %q: max_connection_rate %d per %s, burst %d (key %s); next connection in %s",
			lim.match.Rule.Name, r.N, r.Per, quota.RateBurst(r), key, retryIn.Round(time.Millisecond))})
	return max(retryIn, time.Millisecond), false
}

// arrived wakes the sessions lingering for a job. Caller holds s.mu.
func (s *site) arrived() {
	if s.arrivals != nil {
		close(s.arrivals)
		s.arrivals = nil
	}
}

// noteExpiry keeps minExpires. Caller holds s.mu.
func (s *site) noteExpiry(j *job) {
	if exp := j.e.expiresAt(); !exp.IsZero() && (s.minExpires.IsZero() || exp.Before(s.minExpires)) {
		s.minExpires = exp
	}
}

// expireHeld takes out the jobs whose validity is over although they were
// never claimed (their site held by a quota, flow control or the
// operator). Sites whose earliest validity end is later cost nothing.
func (s *site) expireHeld(now time.Time) []*job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.minExpires.IsZero() || now.Before(s.minExpires) {
		return nil
	}
	var out []*job
	kept := s.jobs[:0]
	s.minExpires = time.Time{}
	for _, j := range s.jobs {
		if j.e.expired(now) {
			j.index = -1
			out = append(out, j)
			s.take(j) // expire() releases them as claimed jobs
			continue
		}
		kept = append(kept, j)
		s.noteExpiry(j)
	}
	for i := len(kept); i < len(s.jobs); i++ {
		s.jobs[i] = nil
	}
	s.jobs = kept
	heapInit(&s.jobs)
	return out
}

// take marks a job claimed. Caller holds s.mu.
func (s *site) take(j *job) {
	s.inflight++
	if s.claimed == nil {
		s.claimed = map[*job]struct{}{}
	}
	s.claimed[j] = struct{}{}
}

// forget unmarks a claimed job.
func (s *site) forget(j *job) {
	s.mu.Lock()
	s.forgetLocked(j)
	s.mu.Unlock()
}

func (s *site) forgetLocked(j *job) {
	s.inflight--
	delete(s.claimed, j)
	s.q.tally.move(&s.queued, -len(j.rcpts))
}

// keepRcpts narrows a claimed job to the recipients still queued, before
// it is released.
func (s *site) keepRcpts(j *job, keep []int) {
	s.mu.Lock()
	s.q.tally.move(&s.queued, len(keep)-len(j.rcpts))
	j.rcpts = keep
	s.mu.Unlock()
}

// release gives a claimed job back: rescheduled at its (new) due time when
// it still has queued recipients.
func (s *site) release(j *job, requeue bool) {
	s.mu.Lock()
	s.forgetLocked(j)
	var k kickoff
	if requeue {
		k = s.enqueueLocked(j)
	}
	s.mu.Unlock()
	s.kick(k)
}

func (s *site) remember(r Reply) {
	s.mu.Lock()
	if len(s.recent) >= recentReplies {
		copy(s.recent, s.recent[1:])
		s.recent = s.recent[:recentReplies-1]
	}
	s.recent = append(s.recent, r)
	s.mu.Unlock()
}

// jobHeap orders jobs by due time.
type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }

// Less orders by due time, then by push order: new mail (all due "now")
// goes out first in, first out, not newest first.
func (h jobHeap) Less(i, j int) bool {
	if h[i].due == h[j].due {
		return h[i].seq < h[j].seq
	}
	return h[i].due < h[j].due
}
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = int32(i)
	h[j].index = int32(j)
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = int32(len(*h))
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	n := len(old)
	j := old[n-1]
	old[n-1] = nil
	j.index = -1
	*h = old[:n-1]
	return j
}

// hourRing counts deliveries per minute over the last hour, as 32-bit
// counts and unix minutes (480 bytes: a site each of 100,000 domains
// keeps one).
type hourRing struct {
	count [60]uint32
	stamp [60]uint32 // unix minute of each slot
}

// addHour counts a delivery at t, making the ring at the first. Caller
// holds s.mu.
func (st *siteStats) addHour(t time.Time) {
	if st.hour == nil {
		st.hour = new(hourRing)
	}
	st.hour.add(t)
}

func (h *hourRing) add(t time.Time) {
	m := uint32(t.Unix() / 60)
	i := m % 60
	if h.stamp[i] != m {
		h.stamp[i] = m
		h.count[i] = 0
	}
	h.count[i]++
}

// total is the deliveries of the hour up to now; none without a ring.
func (h *hourRing) total(now time.Time) int64 {
	if h == nil {
		return 0
	}
	m := uint32(now.Unix() / 60)
	var n int64
	for i := range h.count {
		if m-h.stamp[i] < 60 {
			n += int64(h.count[i])
		}
	}
	return n
}

// storeRetry is how long until a refused token is worth asking for again:
// the store's answer, or quotaRecheck when the store failed (logged): a
// failing store holds the mail like a refusal.
func (q *Queue) storeRetry(key string, retryIn time.Duration, err error) time.Duration {
	if err != nil {
		q.deps.Logger.Warn("quota store", "key", key, "err", err)
		return quotaRecheck
	}
	return retryIn
}

// quotaWait reports whether a site's wait is on a quota or a volume (a
// connection, a rate, a day's count, a warm-up volume, a cap, a tenant's
// or a campaign's rate): the waits a connection opening ends.
func quotaWait(status string) bool {
	switch status {
	case StatusConnQuota, StatusHourlyQuota, StatusConnRate, StatusDailyQuota, StatusWarmup,
		StatusCapMet, StatusTenantQuota, StatusCampaignQuota:
		return true
	}
	return false
}
