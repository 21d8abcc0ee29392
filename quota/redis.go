package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/membership"
	"github.com/penstock-mta/penstock/redisbus"
)

// Redis is the cluster Store: every node of a cluster asks one Redis, so
// quotas hold across nodes (docs/ARCHITECTURE.md §5 invariant 2, §6).
//
// # Connections: leases
//
// Each quota key is a sorted set of leases; a member is "<node>#<lease id>"
// and its score the lease's expiry (Redis server time, ms). The take script
// drops expired members, counts the rest and adds one only while fewer than
// limit are held: check and take in one atomic round trip. Release removes
// the member and publishes on <prefix>release:<key>; the node's one
// subscription (redisbus) wakes the local waiters. One goroutine per node
// renews all of the node's leases every lease_ttl/3 with its membership
// beat (membership.Registry.Beat, one script call), so a node that dies
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
// The renewal is also the node's membership beat (package membership,
// with lease_ttl as the node's TTL): it reads back the cluster's record,
// the live nodes last seen, by name. When Redis fails
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
// past its TTL (dead). The membership's epoch tells whether Redis lost its data
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
	members *membership.Registry
	bus     *redisbus.Bus
	ownBus  bool // made by NewRedis, closed by Close
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
	// Info is what the membership shows of this node besides its mode.
	Info membership.Info
	// Bus is the process's subscription connection; nil: the store makes
	// one of its own on c (and closes it).
	Bus    *redisbus.Bus
	Logger *slog.Logger
}

// redisScripts are the store's Lua scripts (each run as EVALSHA, loaded
// again after a Redis restart).
type redisScripts struct{ take, release, gcra *redis.Script }

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
// at once (bounded by opts.Timeout), starts the renewal loop and
// subscribes to releases and rejoin notices on the bus. Close stops them.
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
	members, err := membership.New(c, membership.Options{Node: opts.Node, Prefix: opts.Prefix, TTL: opts.LeaseTTL, Info: opts.Info})
	if err != nil {
		return nil, err
	}
	r := &Redis{
		c: c, members: members, bus: opts.Bus, opts: opts, log: opts.Logger, t0: time.Now(), nonce: hex.EncodeToString(nb[:]),
		scripts: redisScripts{take: redis.NewScript(takeScriptSrc), release: redis.NewScript(releaseScriptSrc),
			gcra: redis.NewScript(gcraScriptSrc)},
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
	if r.bus == nil {
		r.bus, r.ownBus = redisbus.New(c, opts.Logger), true
	}
	if err := r.subscribe(); err != nil {
		r.halt()
		return nil, err
	}
	r.wg.Add(1)
	go r.loop()
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

// Close stops the renewal and the subscriptions, gives back the leases still
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
	leases := make([]membership.Lease, len(rel))
	for i, pr := range rel {
		leases[i] = membership.Lease{Set: r.k("lease", pr.key), Member: pr.member}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	if err := r.members.Leave(ctx, leases); err != nil {
		return fmt.Errorf("quota: leaving the cluster: %w", err)
	}
	return nil
}

// halt stops the goroutines and the subscriptions without writing to
// Redis (Close, and tests that simulate a crash).
func (r *Redis) halt() {
	r.cancel()
	r.unsubscribe()
	r.wg.Wait()
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
