package quota

import (
	"context"
	_ "embed"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// Connections of the Redis store: leases in a sorted set per quota key,
// taken and released by Lua scripts, shares in degraded mode, waiters.

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
//
//go:embed lua/take.lua
var takeScriptSrc string

// releaseScriptSrc: remove the lease and tell the waiters. KEYS: lease set. ARGV:
// member, channel.
//
//go:embed lua/release.lua
var releaseScriptSrc string

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
	res, err := r.runInts(ctx, r.scripts.take, []string{r.k("lease", key), r.members.EpochKey()},
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
