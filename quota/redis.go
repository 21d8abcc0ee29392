package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the cluster Store: every node of a cluster asks one Redis, so
// quotas hold across nodes (DESIGN §5 invariant 2, §6).
//
// # Connections: leases
//
// Each quota key is a sorted set of leases; a member is "<node>#<lease id>"
// and its score the lease's expiry (Redis server time, ms). The take script
// drops expired members, counts the rest and adds one only while fewer than
// limit are held: check and take in one atomic round trip. Release removes
// the member and publishes on <prefix>release:<key>; one subscriber per
// node wakes the local waiters. One goroutine per node renews all of the
// node's leases every lease_ttl/3 in one script call, so a node that dies
// (SIGKILL, power) frees its slots by itself within lease_ttl. A lease is
// valid (Lease.Valid) until lease_ttl after the send time of its last
// successful renewal: past that the slot may belong to someone else, and
// the session should stop after its current message.
//
// # Message rate: the same GCRA, in Redis
//
// One key per rate key holds the TAT in microseconds of Redis time, with
// T and tau computed exactly as in Local. To save round trips a busy key
// takes b tokens at once (b <= 4, adaptive). The proof of the window bound
// (see the package comment) survives batching if the Redis tolerance is cut
// to tau' = (b-1)T and a token not used within delta = tau - tau' of its
// request is thrown away: the grants of the messages starting in a window
// of W then lie in a span of W+delta, so at most (W+delta)/T + tau'/T + 1 =
// W/T + Burst of them.
//
// # Membership and degraded mode
//
// The renewal also writes <prefix>quota:alive (node -> "server-ms ttl-ms")
// and reads it back: the live nodes last seen, by name. When Redis fails
// (an error or a timeout on any call), the node goes degraded: it keeps
// the leases it holds and gives each quota a share, limit ÷ live nodes last
// seen (the remainder to the first nodes in name order, so the shares add
// up to the limit and each node has at least one connection when limit >=
// nodes), and the rate ÷ nodes with the burst divided too and no initial
// burst. Its own leases count against its share. Before it opens any new
// connection it waits a fence of lease_ttl (+1/8): by then every lease
// taken in shared mode anywhere has lost its validity, so shared-mode
// connections and degraded ones never add up over the limit. A node that
// never reached Redis knows no membership and opens nothing (share 0).
//
// Going back is the careful part. A probe every second runs the renewal:
// when it answers, it registers every lease the node holds, degraded ones
// included, and the node enters rejoining: new connections must pass both
// its own share and the take script, and messages both the local limiter
// and the Redis GCRA. It publishes <prefix>quota:rejoin so the others renew
// at once, and turns shared only when every node it knew has renewed after
// its rejoin (so their degraded leases are in Redis too) or stayed silent
// past its TTL (dead). A random epoch key tells whether Redis lost its data
// (a restart without persistence): then the node registers its leases again
// and waits the fence before new connections, as leases of others may be
// missing until they renew.
//
// Limits: a node cut off from Redis while the others still reach it sends
// its share on top of the quota (a partition, not an outage); and the
// fence covers message boundaries, not a message in flight past its
// lease's validity.
type Redis struct {
	c       *redis.Client
	scripts redisScripts
	sh      shaping
	opts    RedisOptions
	log     *slog.Logger
	t0      time.Time // base of the monotonic deadlines
	nonce   string
	seq     atomic.Uint64
	free    chan struct{} // closed: returned by Wait when a slot may be free
	kick    chan struct{}
	fence   time.Duration // lease_ttl + 1/8

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	psMu   sync.Mutex
	ps     *redis.PubSub
	// renewMu orders releases after a renewal under way (so the renewal
	// cannot add back a lease released meanwhile): the renewal holds it
	// for writing, a release for reading.
	renewMu sync.RWMutex
	closed  atomic.Bool

	mu       sync.Mutex
	mode     mode
	since    time.Time
	episode  int           // degraded episodes, to reset local limiters
	fenceEnd time.Duration // monotonic: no new lease before
	contact  bool          // Redis answered at least once
	epoch    string
	peers    []string         // live node names last seen, sorted, self included
	peerTTL  map[string]int64 // node -> its lease TTL in ms
	waitFor  map[string]int64 // rejoining: node -> server ms after which we stop waiting
	rejoinAt int64            // rejoining: server ms of our registration
	keys     map[string]*connKey
	rates    map[string]*rateKey
	pending  []pendingRelease // releases Redis did not get; retried on rejoin
	changed  chan struct{}    // closed and replaced on every mode change
	lastErr  string
}

// RedisOptions configure a Redis store.
type RedisOptions struct {
	// Node names this node in leases and membership; unique per cluster.
	Node string
	// LeaseTTL: a lease not renewed for this long expires (default 15s).
	LeaseTTL time.Duration
	// Prefix of every Redis key and channel (default "penstock:").
	Prefix string
	// Timeout bounds each round trip (default 2s); past it Redis counts as
	// unreachable.
	Timeout time.Duration
	// MaxBatch caps the rate tokens one round trip takes (default 4; 1
	// disables batching). Batches are taken only for rates of at least
	// BatchFrom messages per hour (default 72000, 20 a second), where the
	// round trips start to matter.
	MaxBatch  int
	BatchFrom int
	// ProbeEvery is how often a degraded node tries Redis (default 1s).
	ProbeEvery time.Duration
	Logger     *slog.Logger
}

// redisScripts are the store's Lua scripts (each run as EVALSHA, loaded
// again after a Redis restart).
type redisScripts struct{ take, release, gcra, renew *redis.Script }

type mode int

const (
	modeShared mode = iota
	modeDegraded
	modeRejoining
)

func (m mode) String() string {
	switch m {
	case modeShared:
		return "shared"
	case modeDegraded:
		return "degraded"
	default:
		return "rejoining"
	}
}

type connKey struct {
	leases   map[*redisLease]struct{}
	pending  int // takes in flight in rejoining mode, counted against the share
	busy     int // takes in flight: the key must not be forgotten meanwhile
	limit    int // last limit asked for
	total    int // leases cluster-wide at the last take (shared mode)
	releases uint64
	deniedAt uint64 // releases seen when the last denied take started
	denied   bool
	wake     chan struct{}
}

type rateKey struct {
	perHour int
	// shared mode: tokens taken in a batch, usable until expires.
	tokens  int
	expires time.Duration
	want    int
	next    time.Time // when the next token is expected, for Snapshot
	// degraded and rejoining modes: local GCRA of this node's share.
	episode int
	tat     time.Duration
}

type pendingRelease struct{ key, member string }

const maxPending = 10000

// NewRedis returns a Store on c for node opts.Node. It tries Redis once
// at once (bounded by opts.Timeout) and starts the renewal loop and the
// release subscriber. Close stops them.
func NewRedis(c *redis.Client, opts RedisOptions) (*Redis, error) {
	if opts.Node == "" {
		return nil, errors.New("quota: a Redis store needs a node name")
	}
	if strings.ContainsAny(opts.Node, "# \t\r\n") {
		return nil, fmt.Errorf("quota: node name %q must not contain '#' or white space", opts.Node)
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.LeaseTTL < 300*time.Millisecond {
		return nil, fmt.Errorf("quota: lease TTL %s is too short (at least 300ms)", opts.LeaseTTL)
	}
	if opts.Prefix == "" {
		opts.Prefix = "penstock:"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 4
	}
	if opts.BatchFrom <= 0 {
		opts.BatchFrom = 72000
	}
	if opts.ProbeEvery <= 0 {
		opts.ProbeEvery = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var nb [6]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, err
	}
	r := &Redis{
		c: c, opts: opts, log: opts.Logger, t0: time.Now(), nonce: hex.EncodeToString(nb[:]),
		scripts: redisScripts{take: redis.NewScript(takeScriptSrc), release: redis.NewScript(releaseScriptSrc),
			gcra: redis.NewScript(gcraScriptSrc), renew: redis.NewScript(renewScriptSrc)},
		sh:   shaping{day: redis.NewScript(daySrc), local: NewLocal(nil), denied: map[string]Usage{}},
		free: make(chan struct{}), kick: make(chan struct{}, 1),
		fence: opts.LeaseTTL + opts.LeaseTTL/8,
		mode:  modeDegraded, since: time.Now(), peerTTL: map[string]int64{},
		keys: map[string]*connKey{}, rates: map[string]*rateKey{}, changed: make(chan struct{}),
	}
	close(r.free)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if !r.renew() {
		r.log.Error("CLUSTER QUOTAS DEGRADED: Redis does not answer at start and no cluster membership is known: "+
			"no connection under a quota opens until Redis answers (mail stays queued)", "node", opts.Node, "err", r.lastError())
	}
	r.ps = c.PSubscribe(r.ctx, opts.Prefix+"release:*")
	if err := r.ps.Subscribe(r.ctx, opts.Prefix+"quota:rejoin"); err != nil {
		r.log.Warn("cluster quotas: subscribing to rejoin notices", "err", err)
	}
	r.wg.Add(2)
	go r.loop()
	go r.subscribe()
	return r, nil
}

var (
	_ Store     = (*Redis)(nil)
	_ Degrader  = (*Redis)(nil)
	_ Revocable = (*redisLease)(nil)
)

func (r *Redis) mono() time.Duration { return time.Since(r.t0) }

// k is the Redis key of one of a quota key's structures: "lease" (the set
// of leases, read back by LeasePattern and LeaseKey), "tat", "release".
func (r *Redis) k(kind, key string) string { return r.opts.Prefix + kind + ":" + key }

func (r *Redis) lastError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Degraded reports whether the node runs on its local share (degraded or
// rejoining) instead of the shared quotas.
func (r *Redis) Degraded() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mode != modeShared
}

// RedisState is the store's mode, for status pages.
type RedisState struct {
	Mode  string    `json:"mode"` // shared, degraded, rejoining
	Since time.Time `json:"since"`
	Nodes []string  `json:"nodes"` // live nodes last seen, this one included
	// FenceUntil: no new connection before this time (degraded modes).
	FenceUntil time.Time `json:"fence_until,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
}

// State returns the store's mode and the membership it last saw.
func (r *Redis) State() RedisState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RedisState{Mode: r.mode.String(), Since: r.since, Nodes: append([]string(nil), r.peers...), LastError: r.lastErr}
	if d := r.fenceEnd - r.mono(); r.mode != modeShared && d > 0 {
		st.FenceUntil = time.Now().Add(d)
	}
	return st
}

// Changed returns a channel closed at the next change of mode (shared,
// degraded, rejoining).
func (r *Redis) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Node returns this node's name.
func (r *Redis) Node() string { return r.opts.Node }

// Close stops the renewal and the subscriber, gives back the leases still
// held and leaves the membership. It does not close the client.
func (r *Redis) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	r.halt()
	r.mu.Lock()
	var rel []pendingRelease
	for key, ks := range r.keys {
		for l := range ks.leases {
			if l.registered.Load() {
				rel = append(rel, pendingRelease{key, l.member})
			}
		}
	}
	rel = append(rel, r.pending...)
	r.pending = nil
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, pr := range rel {
			p.ZRem(ctx, r.k("lease", pr.key), pr.member)
		}
		p.HDel(ctx, r.k("quota", "alive"), r.opts.Node)
		return nil
	})
	if err != nil {
		return fmt.Errorf("quota: leaving the cluster: %w", err)
	}
	return nil
}

// halt stops the goroutines without touching Redis (Close, and tests that
// simulate a crash).
func (r *Redis) halt() {
	r.cancel()
	r.psMu.Lock()
	if r.ps != nil {
		r.ps.Close()
	}
	r.psMu.Unlock()
	r.wg.Wait()
}

// ---- connections ----

type redisLease struct {
	r          *Redis
	key        string
	member     string
	deadline   atomic.Int64 // monotonic ns; valid before
	registered atomic.Bool  // the member is in Redis
	released   atomic.Bool
}

func (l *redisLease) Key() string { return l.key }

// Valid reports whether the lease still holds its slot: Redis renewed it
// within lease_ttl, or it was granted in degraded mode. A session should
// stop after the message in progress once its lease is not valid.
func (l *redisLease) Valid() bool { return int64(l.r.mono()) < l.deadline.Load() }

func (l *redisLease) Release() {
	if !l.released.CompareAndSwap(false, true) {
		return
	}
	l.r.release(l)
}

func (r *Redis) newLease(key string) *redisLease {
	// The member is "<node>#<id>": LeaseNode reads the node back.
	return &redisLease{r: r, key: key, member: r.opts.Node + "#" + r.nonce + "-" + strconv.FormatUint(r.seq.Add(1), 36)}
}

func (r *Redis) connKey(key string) *connKey {
	ks := r.keys[key]
	if ks == nil {
		ks = &connKey{leases: map[*redisLease]struct{}{}}
		r.keys[key] = ks
	}
	return ks
}

// takeScriptSrc: drop expired leases, add one if fewer than limit. KEYS: lease set,
// epoch. ARGV: limit, member, ttl ms, epoch. Returns {1|0, count} or {-1}
// when the epoch is not ours (Redis lost its data).
const takeScriptSrc = `
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {-1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then return {0, n} end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return {1, n + 1}
`

// releaseScriptSrc: remove the lease and tell the waiters. KEYS: lease set. ARGV:
// member, channel.
const releaseScriptSrc = `
local n = redis.call('ZREM', KEYS[1], ARGV[1])
if n == 1 then redis.call('PUBLISH', ARGV[2], '1') end
return n
`

// TryConn implements Store.
func (r *Redis) TryConn(ctx context.Context, key string, limit int) (Lease, Usage, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, Usage{}, false, err
	}
	if limit < 1 {
		return nil, Usage{}, false, fmt.Errorf("%w (key %q, limit %d)", ErrBadLimit, key, limit)
	}
	r.mu.Lock()
	ks := r.connKey(key)
	ks.limit = limit
	reserved := false
	switch r.mode {
	case modeDegraded:
		defer r.mu.Unlock()
		return r.tryLocal(key, ks, limit)
	case modeRejoining:
		// Both this node's share and the shared count must allow it; the
		// reservation keeps concurrent takes within the share.
		if u, ok := r.shareAllowsLocked(key, ks, limit); !ok {
			r.mu.Unlock()
			return nil, u, false, nil
		}
		ks.pending++
		reserved = true
	}
	seen := ks.releases
	ks.busy++
	r.mu.Unlock()

	l := r.newLease(key)
	send := r.mono()
	res, err := r.runInts(ctx, r.scripts.take, []string{r.k("lease", key), r.k("quota", "epoch")},
		limit, l.member, r.opts.LeaseTTL.Milliseconds(), r.epochNow())
	r.mu.Lock()
	defer r.mu.Unlock()
	ks.busy--
	if reserved {
		ks.pending--
	}
	if err != nil {
		// The take may have happened before the answer was lost: remove
		// it when Redis is back rather than let it hold a slot for a TTL.
		r.addPendingLocked(key, l.member)
		if ctx.Err() != nil {
			return nil, Usage{}, false, ctx.Err()
		}
		r.failLocked(err)
		return r.tryLocal(key, ks, limit)
	}
	switch res[0] {
	case -1:
		r.epochLostLocked()
		return r.tryLocal(key, ks, limit)
	case 0:
		ks.total = int(res[1])
		ks.denied, ks.deniedAt = true, seen
		return nil, Usage{Key: key, Kind: KindConn, InUse: ks.total, Limit: limit}, false, nil
	}
	ks.total = int(res[1])
	ks.denied = false
	l.deadline.Store(int64(send + r.opts.LeaseTTL))
	l.registered.Store(true)
	ks.leases[l] = struct{}{}
	return l, Usage{Key: key, Kind: KindConn, InUse: ks.total, Limit: limit}, true, nil
}

// shareAllowsLocked checks the fence and this node's share of limit.
// Caller holds r.mu.
func (r *Redis) shareAllowsLocked(key string, ks *connKey, limit int) (Usage, bool) {
	own := len(ks.leases) + ks.pending
	u := Usage{Key: key, Kind: KindConn, InUse: own, Limit: r.shareLocked(limit)}
	if now := r.mono(); now < r.fenceEnd {
		u.NextSlot = time.Now().Add(r.fenceEnd - now)
		ks.denied, ks.deniedAt = true, ks.releases
		return u, false
	}
	if own >= u.Limit {
		ks.denied, ks.deniedAt = true, ks.releases
		return u, false
	}
	return u, true
}

// tryLocal grants a lease from this node's share (degraded mode). Caller
// holds r.mu.
func (r *Redis) tryLocal(key string, ks *connKey, limit int) (Lease, Usage, bool, error) {
	u, ok := r.shareAllowsLocked(key, ks, limit)
	if !ok {
		return nil, u, false, nil
	}
	l := r.newLease(key)
	l.deadline.Store(math.MaxInt64)
	ks.leases[l] = struct{}{}
	ks.denied = false
	u.InUse++
	return l, u, true, nil
}

// shareLocked is this node's part of limit: limit ÷ live nodes last seen,
// the remainder to the first nodes by name, so the parts add up to limit.
func (r *Redis) shareLocked(limit int) int {
	if !r.contact || len(r.peers) == 0 {
		return 0
	}
	n := len(r.peers)
	rank := sort.SearchStrings(r.peers, r.opts.Node)
	s := limit / n
	if rank < limit%n {
		s++
	}
	return s
}

func (r *Redis) release(l *redisLease) {
	r.mu.Lock()
	ks := r.keys[l.key]
	if ks != nil {
		delete(ks.leases, l)
		r.wakeLocked(ks)
		if len(ks.leases) == 0 && ks.busy == 0 && ks.wake == nil && !ks.denied {
			delete(r.keys, l.key)
		}
	}
	m := r.mode
	if !l.registered.Load() {
		r.mu.Unlock()
		return
	}
	if m == modeDegraded {
		r.addPendingLocked(l.key, l.member)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	defer cancel()
	r.renewMu.RLock()
	err := r.scripts.release.Run(ctx, r.c, []string{r.k("lease", l.key)}, l.member, r.k("release", l.key)).Err()
	r.renewMu.RUnlock()
	if err != nil {
		r.mu.Lock()
		r.addPendingLocked(l.key, l.member)
		if r.ctx.Err() == nil {
			r.failLocked(err)
		}
		r.mu.Unlock()
	}
}

func (r *Redis) addPendingLocked(key, member string) {
	if len(r.pending) < maxPending {
		r.pending = append(r.pending, pendingRelease{key, member})
	}
}

func (r *Redis) wakeLocked(ks *connKey) {
	ks.releases++
	if ks.wake != nil {
		close(ks.wake)
		ks.wake = nil
	}
}

// Wait implements Store: the channel closes on the next release of key by
// any node (this one directly, others through pub/sub). A lease that
// expires is announced by nobody: callers re-check on a timer.
func (r *Redis) Wait(key string) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := r.keys[key]
	if ks == nil || !ks.denied || ks.releases != ks.deniedAt {
		return r.free
	}
	if ks.wake == nil {
		ks.wake = make(chan struct{})
	}
	return ks.wake
}

// Conns implements Store: the leases this node holds under key.
func (r *Redis) Conns(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ks := r.keys[key]; ks != nil {
		return len(ks.leases)
	}
	return 0
}

// ---- message rate ----

// gcraScriptSrc: KEYS: tat, epoch. ARGV: T us, tau us, tokens wanted, epoch.
// Grants up to the tokens wanted that fit the tolerance and returns
// {granted, retry us}, or {-1, 0} when the epoch is not ours.
const gcraScriptSrc = `
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {-1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = tau - (tat - now)
if room < 0 then return {0, tat - tau - now} end
local n = math.min(math.floor(room / T) + 1, tonumber(ARGV[3]))
tat = tat + n * T
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {n, 0}
`

// TakeMessage implements Store.
func (r *Redis) TakeMessage(ctx context.Context, key string, perHour int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if perHour <= 0 {
		return true, 0, nil
	}
	r.mu.Lock()
	rk := r.rates[key]
	if rk == nil {
		rk = &rateKey{want: 1}
		r.rates[key] = rk
	}
	if rk.perHour != perHour {
		rk.perHour, rk.tokens = perHour, 0 // a new limit: batches of the old one go
	}
	now := r.mono()
	switch r.mode {
	case modeDegraded:
		defer r.mu.Unlock()
		ok, retry := r.takeLocalLocked(rk, perHour, now)
		return ok, retry, nil
	case modeRejoining:
		if ok, retry := r.takeLocalLocked(rk, perHour, now); !ok {
			r.mu.Unlock()
			return false, retry, nil
		}
	default:
		if rk.tokens > 0 {
			if now < rk.expires {
				rk.tokens--
				rk.want = min(rk.want*2, r.batch(perHour)) // demand used the batch up
				r.mu.Unlock()
				return true, 0, nil
			}
			rk.tokens = 0
			rk.want = max(1, rk.want/2) // tokens expired unused: smaller batches
		}
	}
	m := r.mode
	want := 1
	if m == modeShared {
		want = min(rk.want, r.batch(perHour))
	}
	r.mu.Unlock()

	t := interval(perHour)
	tUS := (int64(t) + 999) / 1000 // round up: never faster
	b := Burst(perHour)
	tau := tUS * int64(b-1)
	maxB := r.batch(perHour)
	tauR := tau
	if maxB > 1 {
		tauR = tUS * int64(maxB-1) // tau' = (b-1)T: see the type comment
	}
	delta := time.Duration(tau-tauR) * time.Microsecond
	send := r.mono()
	res, err := r.runInts(ctx, r.scripts.gcra, []string{r.k("tat", key), r.k("quota", "epoch")}, tUS, tauR, want, r.epochNow())
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		r.failLocked(err)
		if m == modeRejoining {
			return true, 0, nil // the local share allowed it already
		}
		ok, retry := r.takeLocalLocked(rk, perHour, r.mono())
		return ok, retry, nil
	}
	switch {
	case res[0] == -1:
		r.epochLostLocked()
		if m == modeRejoining {
			return true, 0, nil
		}
		ok, retry := r.takeLocalLocked(rk, perHour, r.mono())
		return ok, retry, nil
	case res[0] == 0:
		retry := time.Duration(res[1]) * time.Microsecond
		rk.next = time.Now().Add(retry)
		return false, max(retry, time.Microsecond), nil
	}
	if extra := int(res[0]) - 1; extra > 0 && delta > 0 && r.mode == modeShared {
		exp := send + delta
		if rk.tokens > 0 && rk.expires < exp {
			exp = rk.expires // one expiry for all: the earliest
		}
		rk.tokens += extra
		rk.expires = exp
	}
	rk.next = time.Time{}
	return true, 0, nil
}

// batch is the most tokens one round trip may take for perHour: up to
// MaxBatch and half the burst, so the Redis tolerance keeps room.
func (r *Redis) batch(perHour int) int {
	if perHour < r.opts.BatchFrom {
		return 1
	}
	return max(1, min(r.opts.MaxBatch, Burst(perHour)/2))
}

// takeLocalLocked is the degraded limiter: GCRA on this node's share of
// the rate (perHour ÷ nodes, burst ÷ nodes), starting each degraded
// episode with no burst so the switch adds nothing to the window.
func (r *Redis) takeLocalLocked(rk *rateKey, perHour int, now time.Duration) (bool, time.Duration) {
	if !r.contact {
		return false, r.opts.ProbeEvery
	}
	n := max(1, len(r.peers))
	ph := max(1, perHour/n)
	t := interval(ph)
	b := max(1, Burst(perHour)/n)
	tau := t * time.Duration(b-1)
	if rk.episode != r.episode {
		rk.episode = r.episode
		rk.tat = now + tau + t
		rk.tokens = 0
	}
	tat := max(rk.tat, now)
	if wait := tat - now - tau; wait > 0 {
		rk.next = time.Now().Add(wait)
		return false, wait
	}
	rk.tat = tat + t
	return true, 0
}

// ---- renewal, membership and modes ----

// renewScriptSrc: register this node's leases, check the epoch, heartbeat,
// and read the membership. KEYS: alive, epoch, lease sets... ARGV: node,
// ttl ms, epoch, new epoch, members... Every lease this node holds is
// (re)added with a new expiry: a connection open is a slot taken, even if
// its lease expired in Redis meanwhile (renewals late) or Redis lost it
// (restart). A lease released while the renewal was under way may come
// back for a moment (registered by a renewal that raced with its local
// release); the caller removes it again. Returns {server ms,
// epoch state (0 same, 1 other, 2 created), epoch, {node, ms, ttl, ...},
// {1 if the lease was there, 0 if it was added, ...}}.
const renewScriptSrc = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local state = 0
local cur = redis.call('GET', KEYS[2])
if not cur then
  cur = ARGV[4]
  redis.call('SET', KEYS[2], cur)
  state = 2
elseif cur ~= ARGV[3] then
  state = 1
end
local found = {}
for i = 3, #KEYS do
  table.insert(found, 1 - redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 2]))
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
redis.call('HSET', KEYS[1], ARGV[1], now .. ' ' .. ttl)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local ts, nt = string.match(all[i + 1], '^(%d+) (%d+)$')
  ts = tonumber(ts)
  nt = tonumber(nt)
  if ts == nil or nt == nil or now - ts > 10 * nt then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(out, all[i])
    table.insert(out, ts)
    table.insert(out, nt)
  end
end
return {now, state, cur, out, found}
`

func (r *Redis) epochNow() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// renew runs one renewal and applies its result; false if Redis failed.
// Leases granted locally while it ran are registered by another round, at
// most three in a row.
func (r *Redis) renew() bool {
	for range 3 {
		again, ok := r.renewOnce()
		if !ok {
			return false
		}
		if !again {
			return true
		}
	}
	return true
}

func (r *Redis) renewOnce() (again, ok bool) {
	r.renewMu.Lock()
	r.mu.Lock()
	keys := []string{r.k("quota", "alive"), r.k("quota", "epoch")}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	args := []any{r.opts.Node, r.opts.LeaseTTL.Milliseconds(), r.epoch, hex.EncodeToString(nb[:])}
	var leases []*redisLease
	for key, ks := range r.keys {
		for l := range ks.leases {
			keys = append(keys, r.k("lease", key))
			args = append(args, l.member)
			leases = append(leases, l)
		}
	}
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	send := r.mono()
	v, err := r.scripts.renew.Run(ctx, r.c, keys, args...).Slice()
	cancel()
	r.renewMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.ctx.Err() == nil {
			r.failLocked(err)
		}
		return false, false
	}
	now, state, cur, alive, found, perr := parseRenew(v)
	if perr == nil && len(found) != len(leases) {
		perr = fmt.Errorf("quota: renewal answered for %d of %d leases", len(found), len(leases))
	}
	if perr != nil {
		r.failLocked(perr)
		return false, false
	}
	lostLeases := 0
	for i, l := range leases {
		if found[i] == 0 && l.registered.Load() && state == 0 && !l.released.Load() {
			// Expired in Redis before we renewed it: the slot may have
			// gone to another node meanwhile.
			lostLeases++
		}
		l.registered.Store(true)
		if l.released.Load() {
			// Released while the renewal ran: make sure it is gone.
			r.addPendingLocked(l.key, l.member)
			continue
		}
		l.deadline.Store(int64(send + r.opts.LeaseTTL))
	}
	if lostLeases > 0 {
		r.log.Warn("cluster quotas: leases had expired in Redis before their renewal (renewals late by more than the lease TTL?); registered again",
			"node", r.opts.Node, "leases", lostLeases, "lease_ttl", r.opts.LeaseTTL)
	}
	first := !r.contact
	lost := state == 2 || (state == 1 && r.epoch != "")
	r.contact = true
	r.epoch = cur
	r.lastErr = ""
	// Membership: nodes that renewed within their own TTL, and this one.
	live := []string{r.opts.Node}
	for name, a := range alive {
		r.peerTTL[name] = a[1]
		if name != r.opts.Node && now-a[0] <= a[1] {
			live = append(live, name)
		}
	}
	sort.Strings(live)
	// The nodes known before this renewal (frozen while degraded) and the
	// live ones now: those a rejoin waits for.
	known := append(append([]string(nil), r.peers...), live...)
	r.peers = live
	switch {
	case r.mode == modeDegraded || first:
		r.enterRejoinLocked(now, known, alive, lost, first)
	case lost:
		// Redis lost its data under us: our leases are back in it as of
		// this renewal; others' come back when they renew.
		r.log.Error("CLUSTER QUOTAS: Redis lost its data (restarted without persistence?); leases registered again, no new connection until the others have",
			"node", r.opts.Node, "fence", r.fence)
		r.enterRejoinLocked(now, known, alive, true, false)
	case r.mode == modeRejoining:
		for name, giveUp := range r.waitFor {
			if a, ok := alive[name]; (ok && a[0] > r.rejoinAt) || now > giveUp {
				delete(r.waitFor, name)
			}
		}
		if len(r.waitFor) == 0 && r.mono() >= r.fenceEnd {
			r.setModeLocked(modeShared)
			r.log.Warn("cluster quotas: shared mode", "node", r.opts.Node, "nodes", len(r.peers))
		}
	}
	if r.mode == modeRejoining {
		// Shares while rejoining count the nodes not back yet: they may
		// still send on their degraded shares.
		for name := range r.waitFor {
			if i := sort.SearchStrings(r.peers, name); i == len(r.peers) || r.peers[i] != name {
				r.peers = append(r.peers, name)
				sort.Strings(r.peers)
			}
		}
	}
	if len(r.pending) > 0 && r.mode != modeDegraded {
		r.flushPendingLocked()
	}
	r.sweepLocked()
	// Leases granted while the script ran are not registered yet.
	if r.mode != modeShared {
		for _, ks := range r.keys {
			for l := range ks.leases {
				if !l.registered.Load() {
					return true, true
				}
			}
		}
	}
	return false, true
}

// enterRejoinLocked starts rejoining after this renewal registered our
// leases: wait for every node we knew to renew after now.
func (r *Redis) enterRejoinLocked(now int64, known []string, alive map[string][2]int64, lost, first bool) {
	prev := r.mode
	if prev == modeShared {
		r.episode++ // the local limiters start afresh, with no burst
	}
	r.setModeLocked(modeRejoining)
	r.rejoinAt = now
	r.waitFor = map[string]int64{}
	for _, name := range known {
		if name == r.opts.Node {
			continue
		}
		ttl := r.peerTTL[name]
		if ttl <= 0 {
			ttl = r.opts.LeaseTTL.Milliseconds()
		}
		r.waitFor[name] = now + ttl + 1000
	}
	for name, a := range alive {
		if name != r.opts.Node && now-a[0] <= 10*a[1] {
			if _, ok := r.waitFor[name]; !ok {
				r.waitFor[name] = now + a[1] + 1000
			}
		}
	}
	if lost {
		r.fenceEnd = max(r.fenceEnd, r.mono()+r.fence)
	} else if prev == modeDegraded {
		// Redis kept its data: shared-mode leases are all in it (or no
		// longer valid), so the take script protects them; only the share
		// holds new connections until the others are back.
		r.fenceEnd = 0
	}
	switch {
	case first && lost:
		r.log.Warn("cluster quotas: no quota epoch in Redis (a new cluster, or Redis lost its data): no new connection for the lease TTL",
			"node", r.opts.Node, "fence", r.fence)
	case first:
		r.log.Info("cluster quotas: joining", "node", r.opts.Node, "nodes", len(r.peers))
	case prev != modeRejoining:
		r.log.Warn("cluster quotas: Redis answers again, rejoining", "node", r.opts.Node,
			"waiting_for", len(r.waitFor), "data_lost", lost)
	}
	// Ask the others to renew now rather than within lease_ttl/3.
	node := r.opts.Node
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
		defer cancel()
		r.c.Publish(ctx, r.opts.Prefix+"quota:rejoin", node)
	}()
	r.kickNow()
}

func (r *Redis) setModeLocked(m mode) {
	if r.mode == m {
		return
	}
	r.mode = m
	r.since = time.Now()
	close(r.changed)
	r.changed = make(chan struct{})
	for _, ks := range r.keys {
		r.wakeLocked(ks) // limits changed: let waiters ask again
	}
}

// failLocked switches to degraded mode on a Redis failure.
func (r *Redis) failLocked(err error) {
	r.lastErr = err.Error()
	if r.mode == modeDegraded {
		return
	}
	r.setModeLocked(modeDegraded)
	r.episode++
	r.fenceEnd = max(r.fenceEnd, r.mono()+r.fence)
	for _, rk := range r.rates {
		rk.tokens = 0
	}
	r.log.Error("CLUSTER QUOTAS DEGRADED: Redis unreachable; each quota is divided by the live nodes last seen, no new connection for the lease TTL",
		"node", r.opts.Node, "err", err, "nodes", len(r.peers), "members", strings.Join(r.peers, ","), "fence", r.fence)
}

// epochLostLocked handles a take that found another epoch: Redis lost its
// data. Degraded until the renewal registers our leases again.
func (r *Redis) epochLostLocked() {
	r.failLocked(errors.New("Redis lost its data (quota epoch changed)"))
	r.kickNow()
}

func (r *Redis) kickNow() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Redis) flushPendingLocked() {
	rel := r.pending
	r.pending = nil
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
		defer cancel()
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, pr := range rel {
				p.ZRem(ctx, r.k("lease", pr.key), pr.member)
				p.Publish(ctx, r.k("release", pr.key), "1")
			}
			return nil
		})
		if err != nil && r.ctx.Err() == nil {
			r.mu.Lock()
			for _, pr := range rel {
				r.addPendingLocked(pr.key, pr.member)
			}
			r.mu.Unlock()
		}
	}()
}

// sweepLocked forgets keys that hold nothing.
func (r *Redis) sweepLocked() {
	now := r.mono()
	for k, ks := range r.keys {
		if len(ks.leases) == 0 && ks.busy == 0 && ks.wake == nil {
			delete(r.keys, k)
		}
	}
	for k, rk := range r.rates {
		if (rk.tokens == 0 || now >= rk.expires) && rk.tat <= now && (rk.next.IsZero() || time.Now().After(rk.next)) {
			delete(r.rates, k)
		}
	}
}

func parseRenew(v []any) (now int64, state int64, epoch string, alive map[string][2]int64, found []int64, err error) {
	if len(v) != 5 {
		return 0, 0, "", nil, nil, fmt.Errorf("quota: renewal answered %d values", len(v))
	}
	now, ok1 := v[0].(int64)
	state, ok2 := v[1].(int64)
	epoch, ok3 := v[2].(string)
	list, ok4 := v[3].([]any)
	fl, ok5 := v[4].([]any)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || len(list)%3 != 0 {
		return 0, 0, "", nil, nil, fmt.Errorf("quota: renewal answered %v", v)
	}
	alive = map[string][2]int64{}
	for i := 0; i+2 < len(list); i += 3 {
		name, _ := list[i].(string)
		ts, _ := list[i+1].(int64)
		ttl, _ := list[i+2].(int64)
		alive[name] = [2]int64{ts, ttl}
	}
	for _, f := range fl {
		n, _ := f.(int64)
		found = append(found, n)
	}
	return now, state, epoch, alive, found, nil
}

func (r *Redis) runInts(ctx context.Context, s *redis.Script, keys []string, args ...any) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	v, err := s.Run(ctx, r.c, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(v) != 2 {
		return nil, fmt.Errorf("quota: script answered %v", v)
	}
	return v, nil
}

// loop renews every lease_ttl/3 in shared mode, every 200 ms while
// rejoining (to see the others come back) and probes every ProbeEvery
// when degraded.
func (r *Redis) loop() {
	defer r.wg.Done()
	t := time.NewTimer(r.nextRenewal())
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		r.renew()
		t.Reset(r.nextRenewal())
	}
}

func (r *Redis) nextRenewal() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.mode {
	case modeDegraded:
		return r.opts.ProbeEvery
	case modeRejoining:
		return 200 * time.Millisecond
	}
	return r.opts.LeaseTTL / 3
}

// subscribe wakes local waiters on other nodes' releases and renews at
// once when a node rejoins. An error on the subscription makes the loop
// probe Redis at once; go-redis reconnects and subscribes again.
func (r *Redis) subscribe() {
	defer r.wg.Done()
	backoff := 50 * time.Millisecond
	relPrefix := r.opts.Prefix + "release:"
	for r.ctx.Err() == nil {
		msg, err := r.ps.Receive(r.ctx)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.kickNow()
			t := time.NewTimer(backoff)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			if key, ok := strings.CutPrefix(m.Channel, relPrefix); ok {
				r.mu.Lock()
				if ks := r.keys[key]; ks != nil {
					r.wakeLocked(ks)
				}
				r.mu.Unlock()
			} else if m.Payload != r.opts.Node {
				r.kickNow() // a node rejoins: show it we are here
			}
		case *redis.Subscription:
			// (Re)subscribed: releases may have gone unseen.
			r.mu.Lock()
			for _, ks := range r.keys {
				r.wakeLocked(ks)
			}
			r.mu.Unlock()
		}
	}
}

// Snapshot implements Store: this node's view. For a connection key InUse
// is the cluster-wide count at this node's last take (at least its own
// leases) against the rule's limit; in degraded mode, its own leases
// against its share.
func (r *Redis) Snapshot() []Usage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Usage
	for k, ks := range r.keys {
		own := len(ks.leases)
		if own == 0 && !ks.denied {
			continue
		}
		u := Usage{Key: k, Kind: KindConn, InUse: max(own, ks.total), Limit: ks.limit}
		if r.mode == modeDegraded {
			u.InUse, u.Limit = own, r.shareLocked(ks.limit)
		}
		out = append(out, u)
	}
	for k, rk := range r.rates {
		if rk.perHour <= 0 {
			continue
		}
		b := Burst(rk.perHour)
		u := Usage{Key: k, Kind: KindRate, Limit: rk.perHour, Burst: b, NextSlot: rk.next}
		if !rk.next.IsZero() && time.Now().Before(rk.next) {
			u.InUse = b
		}
		out = append(out, u)
	}
	out = r.shapedSnapshotLocked(out)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Key < out[j].Key
	})
	return out
}
