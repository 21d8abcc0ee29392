package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/penstock-mta/penstock/flow"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
	"github.com/penstock-mta/penstock/tlspolicy"
	"github.com/penstock-mta/penstock/tlsstatus"
)

// Status texts (docs/ARCHITECTURE.md §4). Operators search for them: never reword.
const (
	StatusConnQuota         = "Messages queued (connection quotas met)"
	StatusHourlyQuota       = "Messages queued (hourly quota met)"
	StatusConnRate          = "Messages queued (connection rate met)"
	StatusDailyQuota        = "Messages queued (daily quota met)"
	StatusCapMet            = "Messages queued (cap met)"
	StatusTenantQuota       = "Messages queued (tenant quota met)"
	StatusCampaignQuota     = "Messages queued (campaign quota met)"
	StatusTenantSuspended   = "Messages queued (tenant suspended)"
	StatusCampaignSuspended = "Messages queued (campaign suspended)"
	StatusFlowControl       = "Messages queued (dynamic flow control)"
	StatusSuspended         = "Messages queued (suspended by operator)"
	StatusRetry             = "Messages queued (retry scheduled)"
	StatusMXFailed          = "Messages queued (MX lookup failed)"
	StatusDue               = "Messages queued (due)"
	StatusInFlight          = "Messages in delivery"
	statusResolvingMX       = "Messages queued (resolving MX)"
	defaultDNSRetryWait     = time.Minute
	firstDNSRetry           = 5 * time.Second
	maxLookups              = 64
)

// Statuses lists every status text a queued recipient can have, for
// gauges that must exist (at 0) before anything waits.
func Statuses() []string {
	return []string{StatusConnQuota, StatusHourlyQuota, StatusConnRate, StatusDailyQuota, StatusCapMet, StatusTenantQuota, StatusCampaignQuota, StatusTenantSuspended, StatusCampaignSuspended, StatusFlowControl, StatusSuspended, StatusRetry,
		StatusMXFailed, StatusDue, StatusInFlight, statusResolvingMX, StatusMTASTS, StatusDANE, StatusWarmup}
}

// Source is a local address mail leaves from, with its EHLO name.
type Source struct {
	Name   string
	IP     netip.Addr // zero: let the kernel choose
	EHLO   string
	Weight int
}

// Config is the part of the configuration the scheduler needs. It is
// swapped as a whole on reload (SetConfig).
type Config struct {
	Rules       *mxrule.Set
	Caps        *caps.Set       // cross-cutting limits checked besides the rule; nil: none
	Tenants     tenants.Set     // tenants' messages_per_hour and fair-share weights; nil: none
	Retry       []time.Duration // the last interval repeats
	Port        int             // remote SMTP port (25; tests use a high port)
	TLSDefault  string          // [server] tls: what tls = "default" means (mxrule.EffectiveTLS)
	Pools       map[string][]Source
	DefaultPool string
	Hostname    string
	MaxMXAddrs  int           // addresses tried per session (Postfix's smtp_mx_address_limit); default 5
	DNSRetry    time.Duration // wait after a temporary MX lookup failure
	// TLSFailureMemory: how long an MX address whose STARTTLS handshake
	// failed gets opportunistic mail in clear text at once; 0: never.
	TLSFailureMemory time.Duration
}

// Deps are the long-lived parts the scheduler works with.
type Deps struct {
	Spool    *spool.Spool
	Resolver dns.Resolver
	Quotas   quota.Store
	Flow     Flow // nil: no dynamic flow control
	Bounce   *bounce.Classifier
	Log      *events.Log
	Logger   *slog.Logger
	Dialer   smtpclient.Dialer // nil: the default dialer
	// Pipeline builds the bytes sent for each transaction (render,
	// header fixes, signing); nil: a pipeline reading the spool.
	Pipeline *message.Pipeline
	Now      func() time.Time
	// Outcome is called for each recipient's attempt outcome (o.Final
	// when its delivery is over), before the spool update is submitted. It
	// must not block for long. It may be nil.
	Outcome func(m *spool.Message, rcpt int, o Outcome, site string)
	// ReturnPath gives the MAIL FROM of a transaction (VERP); nil: the
	// message's sender.
	ReturnPath func(m *spool.Message, rcpts []int) string
	// TLSPolicy finds each domain's transport security policy (MTA-STS,
	// DANE); nil: no policies. TLSReport hears every TLS outcome (for
	// TLSRPT); nil: nobody.
	TLSPolicy tlspolicy.Provider
	TLSReport tlspolicy.Reporter
	// TLSStatus, when set, is told the policy applied to each recipient
	// domain and the TLS outcome of each connection (dashboard, API).
	TLSStatus *tlsstatus.Board
	// RequireTLS tells a message sent with REQUIRETLS (RFC 8689): it only
	// leaves over TLS authenticated by the domain's DANE or MTA-STS policy,
	// to a server advertising REQUIRETLS, else it bounces with 5.7.10.
	// nil: none does.
	RequireTLS func(m *spool.Message) bool
	// CampaignRate is a campaign's messages_per_hour (0: unlimited); nil:
	// no campaign has one.
	CampaignRate func(deliveryID string) int
	// TLSConfig is the base TLS configuration of outgoing connections (its
	// RootCAs verify certificates; nil: the system's roots).
	TLSConfig *tls.Config
	// Warmup limits warming sources to their schedule's volume; nil: no
	// source is warming.
	Warmup Warmup
}

// Queue is the scheduler. The zero value is not usable: call New.
type Queue struct {
	deps Deps
	cfg  atomic.Pointer[Config]
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	// closing is closed when Close starts: runners and resolvers stop at
	// once, sessions finish the message on the wire (ctx ends that only
	// when Close's deadline passes).
	closing chan struct{}
	// liveMu orders Close's closing of closing against addLive's check
	// and wg.Add, so the two are one step: an Add racing Close's Wait
	// with the count at zero is a WaitGroup misuse, and its goroutine
	// would run after Close returned.
	liveMu sync.Mutex
	// durable carries asynchronous spool updates to awaitDurable; its
	// capacity bounds them (backpressure on sessions when full).
	durable     chan pendingUpdate
	durableDone chan struct{}
	lookups     lookupQueue // domains waiting for their MX lookup (lookup.go)

	closeOnce sync.Once

	// mu guards the maps below. Lock order: mu, then a site's mu; never
	// mu while holding a site's (that deadlocked resolve with push).
	mu        sync.Mutex
	domains   map[string]*domainState
	sites     map[string]*site
	cancelled map[string]bool // cancelled campaigns
	swept     time.Time       // the last Sweep (sweep.go)

	susp   atomic.Pointer[map[string]string] // suspended tenants and campaigns (suspend.go)
	suspMu sync.Mutex                        // serialises their changes
	// suspShare sends a local suspension or resume to the other nodes of
	// a cluster (ShareSuspensions); nil: not shared.
	suspShare atomic.Pointer[func(key, who string, on bool)]

	counters counters
	tally    tally                     // queued recipients and places, for Totals
	tlsMem   tlsMemory                 // MX addresses with a broken TLS handshake
	stripes  [entryStripes]entryStripe // the entries' locks and held messages (entry.go)
	yields   yields                    // lingering sessions by the quota keys they hold
	opened   opened                    // connections opened, by rule (gauges.go)
	shared   atomic.Uint64             // sessions taken over from another site (share.go)

	// lingerFor is how long an idle session waits for its site's next
	// job (the constant lingerFor; tests make it long).
	lingerFor time.Duration
}

type counters struct {
	delivered, bounced, deferred, expired, suppressed atomic.Int64
}

// job is one message × one domain: the recipients of that message at that
// domain, delivered together in one transaction.
//
// A queue holds millions: the fields are laid out to fit 64 bytes.
type job struct {
	e      *entry
	rcpts  []int
	domain unique.Handle[string] // one copy per domain name, not one per job
	due    dueTime
	seq    uint64 // fair tag (fair.go): among equal due times, the order of claims
	index  int32  // heap position, -1 when not in a heap
	hold   holdStatus
}

// holdStatus is the status of a job put back by a tenant's or campaign's
// limit or suspension, until claimed: 0 for none, else 1 + its index in
// Statuses().
type holdStatus uint8

var holdStatuses = Statuses()

func holdOf(status string) holdStatus {
	for i, st := range holdStatuses {
		if st == status {
			return holdStatus(i + 1)
		}
	}
	return 0
}

func (h holdStatus) String() string {
	if h == 0 {
		return ""
	}
	return holdStatuses[h-1]
}

// dueTime is when a job is due, in Unix nanoseconds; 0 (the zero time, a
// recipient never tried) is at once. 8 bytes where a time.Time takes 24.
type dueTime int64

func dueOf(t time.Time) dueTime {
	if t.IsZero() {
		return 0
	}
	return dueTime(t.UnixNano())
}

// After reports whether the job is due after t.
func (d dueTime) After(t time.Time) bool { return int64(d) > t.UnixNano() }

// Sub is how long after t the job is due.
func (d dueTime) Sub(t time.Time) time.Duration { return time.Duration(int64(d) - t.UnixNano()) }

type domainState struct {
	// name is the domain, interned: holding the handle keeps the name
	// interned while the queue knows the domain (unique drops a name no
	// job refers to, and a domain whose mail goes out as it comes would
	// otherwise be interned anew for each message, unique.Make's slow
	// path).
	name      unique.Handle[string]
	pool      string // the pool its jobs go out through ("" = default)
	policy    tlspolicy.Policy
	site      *site
	expires   time.Time // when the MX answer must be looked up again
	resolving bool
	pending   []*job // jobs waiting for an MX answer
	held      int    // their recipients (q.tally); changed with pending
	lastErr   error
	errSince  time.Time
	retryWait time.Duration // the wait before the next lookup after this one fails (0: the first)
}

// New builds a scheduler. Run nothing until Start.
func New(cfg *Config, deps Deps) *Queue {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.Log == nil {
		deps.Log = events.Discard()
	}
	if deps.Pipeline == nil {
		deps.Pipeline = message.New(message.Options{AppendLoad: deps.Spool.AppendBody})
	}
	deps.TLSConfig = withSessionCache(deps.TLSConfig)
	q := &Queue{
		deps:        deps,
		domains:     make(map[string]*domainState),
		sites:       make(map[string]*site),
		closing:     make(chan struct{}),
		durable:     make(chan pendingUpdate, maxPendingUpdates),
		durableDone: make(chan struct{}),
		lingerFor:   lingerFor,
	}
	go q.awaitDurable()
	q.SetConfig(cfg)
	q.loadSuspensions()
	q.ctx, q.stop = context.WithCancel(context.Background())
	return q
}

// SetConfig swaps the configuration; new connections use it at once.
func (q *Queue) SetConfig(cfg *Config) {
	c := *cfg
	if len(c.Retry) == 0 {
		c.Retry = []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute, time.Hour}
	}
	if c.Port == 0 {
		c.Port = 25
	}
	if c.MaxMXAddrs == 0 {
		c.MaxMXAddrs = 5
	}
	if c.DNSRetry == 0 {
		c.DNSRetry = defaultDNSRetryWait
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.Rules == nil {
		c.Rules, _ = mxrule.New(nil)
	}
	if len(c.Pools[c.DefaultPool]) == 0 {
		if c.Pools == nil {
			c.Pools = map[string][]Source{}
		} else {
			p := make(map[string][]Source, len(c.Pools)+1)
			for k, v := range c.Pools {
				p[k] = v
			}
			c.Pools = p
		}
		c.Pools[c.DefaultPool] = []Source{{Name: "default", EHLO: c.Hostname, Weight: 1}}
	}
	q.cfg.Store(&c)
}

func (q *Queue) config() *Config { return q.cfg.Load() }

// tlsSessionCacheSize is how many MX hosts' TLS sessions are kept: the
// few large providers that carry most mail, and then some.
const tlsSessionCacheSize = 1024

// withSessionCache gives the base TLS configuration of outgoing
// connections a session cache unless it has one, so that a new connection
// to an MX host resumes the last session with it (RFC 8446 §2.2): an
// abbreviated handshake, without the certificate exchange and the
// public-key operations of a full one (~1 ms of CPU). Postfix does the
// same (smtp_tls_session_cache_database). Sessions are keyed by server
// name (the MX host, smtpclient sets it); crypto/tls resumes a session
// only if it still satisfies the connection's verification (one made
// without a verified chain is not resumed where verification is on), and
// runs VerifyConnection on resumed connections too. The configurations of
// DANE and MTA-STS testing (policyOptions) are made per connection
// without a cache: they never resume.
func withSessionCache(base *tls.Config) *tls.Config {
	if base != nil && base.ClientSessionCache != nil {
		return base
	}
	c := &tls.Config{}
	if base != nil {
		c = base.Clone()
	}
	c.ClientSessionCache = tls.NewLRUClientSessionCache(tlsSessionCacheSize)
	return c
}

func (q *Queue) now() time.Time { return q.deps.Now() }

// campaignRate is the messages_per_hour of a campaign, 0 for none.
func (q *Queue) campaignRate(deliveryID string) int {
	if deliveryID == "" || q.deps.CampaignRate == nil {
		return 0
	}
	return q.deps.CampaignRate(deliveryID)
}

// Close stops every runner and session and waits for them. Recipients in
// flight keep their spooled state; they are delivered after a restart.
func (q *Queue) Close(ctx context.Context) error {
	q.liveMu.Lock()
	if !q.isClosed() {
		close(q.closing)
	}
	q.liveMu.Unlock()
	q.mu.Lock()
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	q.mu.Unlock()
	// Sessions finish the message they are sending; they claim no more.
	// A parked site's timer would start nothing now: it is disarmed.
	for _, s := range sites {
		s.stopPark()
		s.poke()
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.stop() // cancel what is still on the wire
		<-done
		err = ctx.Err()
	}
	q.stop()
	// Every session has ended: wait for their updates to be durable
	// before the owner closes the spool.
	q.closeOnce.Do(func() { close(q.durable) })
	<-q.durableDone
	return err
}

// addLive counts one more goroutine Close waits for, unless Close has
// begun: then it reports false and the caller starts none.
func (q *Queue) addLive() bool {
	q.liveMu.Lock()
	defer q.liveMu.Unlock()
	if q.isClosed() {
		return false
	}
	q.wg.Add(1)
	return true
}

// isClosed reports whether Close has started. It takes no lock: sites ask
// it under their own lock (enqueueLocked, refuse), and q.mu is taken
// before a site's lock (siteFor), never after one.
func (q *Queue) isClosed() bool {
	select {
	case <-q.closing:
		return true
	default:
		return false
	}
}

// Enqueue schedules the queued recipients of a message the spool holds.
// It never blocks on the network.
//
// The queue keeps m's scheduling fields, not m: the message is read back
// from the spool when it is sent (entry.go), so the caller may drop it.
func (q *Queue) Enqueue(m *spool.Message) {
	e := entryOf(m)
	var order []*job
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.State.Final() {
			continue
		}
		e.pending++
		d := unique.Make(domainOf(r.Addr))
		var j *job
		// Recipients are few per message: a scan beats a map.
		for _, o := range order {
			if o.domain == d {
				j = o
				break
			}
		}
		if j == nil {
			j = &job{e: e, domain: d, due: dueOf(r.NextAttempt), index: -1}
			order = append(order, j)
		}
		if d := dueOf(r.NextAttempt); d > j.due {
			j.due = d
		}
		j.rcpts = append(j.rcpts, i)
	}
	for _, j := range order {
		q.route(j)
	}
}

// EnqueueAll is Enqueue for a batch (campaign ingestion, restart).
func (q *Queue) EnqueueAll(ms []*spool.Message) {
	for _, m := range ms {
		q.Enqueue(m)
	}
}

func domainOf(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
}

// route puts a job on its domain's site, resolving the MX hosts first when
// the domain's answer is unknown or stale.
func (q *Queue) route(j *job) {
	now := q.now()
	pool := q.poolOf(j.e.pool())
	key := j.domain.Value()
	if pool != "" {
		// Mail through another pool has sites of its own: sessions of a
		// site all leave from the same pool's sources.
		key = pool + "\x00" + key
	}
	q.mu.Lock()
	d := q.domains[key]
	if d == nil {
		d = &domainState{name: j.domain, pool: pool}
		q.domains[key] = d
	}
	if d.site != nil && now.Before(d.expires) {
		s := d.site
		q.mu.Unlock()
		s.push(j)
		return
	}
	d.pending = append(d.pending, j)
	q.tally.move(&d.held, len(j.rcpts))
	start := !d.resolving && !q.isClosed()
	if start {
		d.resolving = true
	}
	q.mu.Unlock()
	if start {
		q.lookups.add(q, d)
	}
}

// resolve looks up a domain's MX hosts once and moves its pending jobs to
// the site queue, or bounces them on a permanent failure, or holds them
// and asks again later on a temporary one (a timer puts the domain back
// in the lookup queue: nothing waits meanwhile).
func (q *Queue) resolve(d *domainState) {
	cfg := q.config()
	name := d.name.Value()
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	res, err := q.deps.Resolver.LookupMX(ctx, name)
	cancel()
	var pol tlspolicy.Policy
	if err == nil && q.deps.TLSPolicy != nil {
		// The policy decides which connections may carry the domain's
		// mail, so it is known before the domain joins a site.
		pctx, pcancel := context.WithTimeout(q.ctx, time.Minute)
		pol = q.deps.TLSPolicy.Policy(pctx, name)
		pcancel()
	}
	now := q.now()
	if name == "" {
		err = &dns.Error{Domain: name, Kind: dns.NXDomain, Err: errors.New("recipient has no domain")}
	}
	q.mu.Lock()
	jobs := d.pending
	d.pending = nil
	q.tally.move(&d.held, -d.held)
	if err == nil {
		s := q.siteFor(res, d.pool, pol)
		d.site, d.policy = s, pol
		ttl := res.TTL
		if ttl < time.Minute {
			ttl = time.Minute
		}
		d.expires = now.Add(ttl)
		d.lastErr = nil
		d.resolving = false
		d.retryWait = 0
		q.mu.Unlock()
		if q.deps.Flow != nil {
			q.deps.Flow.Record(flow.Event{Time: now, Site: s.key, Domain: name, OK: true, DNS: true})
		}
		for _, j := range jobs {
			s.push(j)
		}
		return
	}
	var de *dns.Error
	permanent := errors.As(err, &de) && de.Permanent()
	if permanent {
		d.resolving = false
		d.retryWait = 0
		q.mu.Unlock()
		for _, j := range jobs {
			q.failJob(j, err, now)
		}
		return
	}
	// Temporary: hold the jobs, say why, and look again soon, then less
	// often, up to [dns] retry. Jobs arriving meanwhile join d.pending.
	if d.lastErr == nil {
		d.errSince = now
	}
	d.lastErr = err
	d.pending = jobs
	q.tally.move(&d.held, rcptsOf(jobs))
	wait := d.retryWait
	if wait == 0 {
		wait = firstDNSRetry
	}
	d.retryWait = wait * 2
	q.mu.Unlock()
	if q.deps.Flow != nil {
		q.deps.Flow.Record(flow.Event{Time: now, Domain: name, Err: true, Local: true, DNS: true, Text: err.Error()})
	}
	q.expireHeld(d, now)
	time.AfterFunc(min(wait, cfg.DNSRetry), func() { q.lookups.add(q, d) })
}

// expireHeld expires the jobs of a domain held by MX lookup failures whose
// validity is over.
func (q *Queue) expireHeld(d *domainState, now time.Time) {
	q.mu.Lock()
	var keep, expired []*job
	for _, j := range d.pending {
		if j.e.expired(now) {
			expired = append(expired, j)
		} else {
			keep = append(keep, j)
		}
	}
	d.pending = keep
	q.tally.move(&d.held, -rcptsOf(expired))
	q.mu.Unlock()
	for _, j := range expired {
		q.expire(j, nil, now)
	}
}

// poolOf is the pool a message goes out through: "" for the default pool
// (and for a pool the configuration no longer has).
func (q *Queue) poolOf(pool string) string {
	cfg := q.config()
	if pool == "" || pool == cfg.DefaultPool {
		return ""
	}
	if _, ok := cfg.Pools[pool]; !ok {
		return ""
	}
	return pool
}

// Pool returns the sources of a configured pool.
func (q *Queue) Pool(name string) ([]Source, bool) {
	p, ok := q.config().Pools[name]
	return p, ok
}

// ExpireHeld expires the recipients whose validity ran out while their
// site held them (claimed jobs expire when claimed). The owner calls it
// periodically; it returns how many jobs expired.
func (q *Queue) ExpireHeld(now time.Time) int {
	q.mu.Lock()
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	domains := make([]*domainState, 0)
	for _, d := range q.domains {
		if len(d.pending) > 0 {
			domains = append(domains, d)
		}
	}
	q.mu.Unlock()
	n := 0
	for _, s := range sites {
		for _, j := range s.expireHeld(now) {
			q.expire(j, s, now)
			n++
		}
	}
	for _, d := range domains {
		q.expireHeld(d, now)
	}
	return n
}

// siteFor returns the site of an MX answer, creating it. Caller holds q.mu.
func (q *Queue) siteFor(res dns.MXResult, pool string, pol tlspolicy.Policy) *site {
	key := dns.SiteKey(res.Hosts)
	if pool != "" {
		key = pool + ":" + key
	}
	if c := pol.Class(); pol.Source != "" && c != "none" {
		// Domains with different policies never share a site, hence never
		// a connection that one of the policies forbids.
		key += "|" + c
	}
	s := q.sites[key]
	if s == nil {
		s = newSite(q, key, res.Hosts)
		s.pool, s.mxKey, s.policy = pool, dns.SiteKey(res.Hosts), pol
		q.sites[key] = s
	} else {
		s.mu.Lock()
		s.hosts = res.Hosts // preference order may have been reshuffled
		if pol.Source != "" {
			s.policy = pol // same class; TLSA records or expiry may be newer
		}
		s.mu.Unlock()
	}
	return s
}
