// Package quota counts what MX rules limit: simultaneous connections and the
// message rate, each under a key the dispatcher builds from the rule and its
// scope (for example rule × source, or rule × source × MX IP).
//
// The dispatcher asks the Store before opening a connection (TryConn) and
// before starting each message (TakeMessage). Local is the in-process Store;
// a Redis Store with the same interface and the same algorithms serves a
// cluster (docs/ARCHITECTURE.md §6).
//
// # Connections
//
// Each key holds an exact count of leases, changed under the lock of the
// key's shard: TryConn takes a slot only while fewer than limit are held, so
// the count never exceeds the limit, not for an instant
// (docs/ARCHITECTURE.md §5 invariant 2). A Lease gives its slot back once; a second Release does nothing. Each
// key with waiters has one channel that Release closes and replaces, so any
// number of idle dispatchers wake on the next free slot without polling. If
// a reload lowers a limit below what is held, nothing is revoked: new leases
// wait until the count drains below the new limit.
//
// # Message rate: GCRA
//
// The rate limiter is the generic cell rate algorithm, with one timestamp of
// state per key, the theoretical arrival time (TAT). For perHour messages an
// hour the emission interval is T = 1h/perHour (rounded up to the
// nanosecond, never faster) and the tolerance is tau = T × (Burst(perHour)-1).
// A message at time now is allowed if TAT - now <= tau, and then
// TAT = max(TAT, now) + T; a refused message leaves TAT alone and may retry in
// TAT - tau - now. Tokens come one every T, so the hour is smoothed: there is
// no burst at :00. Over any window of W seconds at most
// perHour×W/3600 + Burst(perHour) messages start (docs/ARCHITECTURE.md §5
// invariant 2): if
// n messages start at t1 <= ... <= tn, each grant pushes TAT by at least T, so
// the last one needed t1 + (n-1)T - tn <= tau, that is n <= W/T + Burst.
// The same check-and-set is one short Lua script on one Redis key.
//
// # Connection-open rate
//
// A rule's max_connection_rate "N/period" limits how often connections
// open, apart from how many are open at once: the same GCRA under an
// "open|..." key, with T = period/N and a burst of RateBurst (30 seconds'
// worth, 1 to 10, at most N/4), so over any window W at most
// N×W/period + burst connections open. TakeMessage is the special case
// period = 1h.
//
// # Daily quota: a sliding window of buckets
//
// messages_per_day N means at most N messages in any rolling 24 hours, a
// hard cap (warm-up plans and provider daily caps are stated that way), so
// it is not a GCRA: a GCRA over a day either paces the N evenly (one every
// 86 s for 1000/day, which messages_per_hour does already) or, with a
// burst of N, lets 2N-1 through in some 24 h. A sliding-window estimate
// (two fixed windows weighted) is approximate and can pass up to 2N too.
// Instead each key counts messages in 15-minute buckets and a message is
// allowed while the current bucket and the 96 before it hold fewer than N:
// those buckets cover at least the last 24 h, so the count of any rolling
// 24 h ending at a send is at most N (never over, DESIGN §5 invariant 2);
// the price is that a message counts up to one bucket (15 min) longer than
// 24 h. When the count is met, the quota frees when the oldest buckets
// holding the excess leave the window, and retryIn says when. State is 97
// counters per key (a hash of at most 97 fields in Redis, the same
// arithmetic in one Lua script). The dispatcher takes the hourly token
// first and counts the day second, so a refused hourly token never
// counts against the day (a refused day wastes one hourly token, once per
// day quota met).
//
// # Memory
//
// A connection key is deleted when its last lease is released. A rate key
// whose TAT is in the past carries no information (max(TAT, now) = now),
// nor does a daily key whose buckets have all left the window, so keys
// idle that long are swept, at most once a minute, by whichever call
// comes next; there is no background goroutine.
//
// quota never decides limits (package mxrule does), never opens connections,
// and never sleeps: callers wait on Wait's channel or on retryIn.
package quota

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the time; tests pass a fake one.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// RealClock returns the wall clock (with Go's monotonic reading).
func RealClock() Clock { return realClock{} }

// Kind says which quota a Usage describes.
type Kind string

const (
	KindConn Kind = "conn" // simultaneous connections
	KindRate Kind = "rate" // messages per hour
	KindOpen Kind = "open" // connection opens per period (max_connection_rate)
	KindDay  Kind = "day"  // messages per rolling 24 hours (messages_per_day)
)

// Usage is the state of one quota key, for status texts, explain and metrics.
type Usage struct {
	Key  string
	Kind Kind
	// For KindConn: leases held and the limit last asked for.
	// For KindRate and KindOpen: burst tokens in use (InUse == Burst means
	// the next message or connection must wait) and the limit, per hour
	// for KindRate, per Per for KindOpen. For KindDay: messages counted in
	// the window and the daily limit.
	InUse int
	Limit int
	Burst int           // KindRate, KindOpen: the GCRA burst
	Per   time.Duration // KindOpen: the rate's period
	// NextSlot is when the next token comes (KindRate, KindOpen) or the
	// daily count drops under the limit (KindDay); zero if unknown, as for
	// connections, which free up when a session ends.
	NextSlot time.Time
}

// Lease is one held connection slot.
type Lease interface {
	// Release gives the slot back. It is idempotent: only the first call
	// frees a slot.
	Release()
	Key() string
}

// Store is the quota store the dispatcher asks before opening a connection
// and before starting each message.
type Store interface {
	// TryConn takes one connection slot under key if fewer than limit are
	// held. ok=false: quota met, Usage says how many are held.
	TryConn(ctx context.Context, key string, limit int) (Lease, Usage, bool, error)
	// Wait returns a channel that is closed the next time a slot under key
	// is released, or at once if one is free now given the last limit
	// TryConn saw for key. For idle waiting without busy loops.
	Wait(key string) <-chan struct{}
	// TakeMessage consumes one message-rate token under key for a limit of
	// perHour messages per hour with a small burst (GCRA). perHour <= 0 is
	// unlimited. ok=false: the quota is met and retryIn says when the next
	// token comes.
	TakeMessage(ctx context.Context, key string, perHour int) (ok bool, retryIn time.Duration, err error)
	// TakeRate consumes one token of a generic rate (GCRA, burst
	// RateBurst) under key: the connection-open rate. A zero Rate is
	// unlimited.
	TakeRate(ctx context.Context, key string, r Rate) (ok bool, retryIn time.Duration, err error)
	// TakeDaily counts one message under key against perDay messages in
	// any rolling 24 hours (the sliding window of the package comment).
	// perDay <= 0 is unlimited. ok=false: retryIn says when the count
	// drops under the limit.
	TakeDaily(ctx context.Context, key string, perDay int) (ok bool, retryIn time.Duration, err error)
	// Conns returns the connection slots held under key.
	Conns(key string) int
	// Snapshot returns all keys with held connections or recent rate use,
	// sorted by kind and key.
	Snapshot() []Usage
}

// Burst returns the burst allowed on top of a perHour rate: 30 seconds'
// worth of the rate, at least 1 and at most 10. That absorbs scheduling
// jitter (a session that starts a few messages together after an idle
// moment) while staying invisible to a receiver: at 1200/h the burst is 10
// messages, a receiver counting per minute sees at most 30 instead of 20.
// With perHour <= 0 (unlimited) it returns 0.
func Burst(perHour int) int {
	if perHour <= 0 {
		return 0
	}
	return max(1, min(perHour/120, 10))
}

// interval is the GCRA emission interval T, rounded up so that the rate
// never exceeds perHour.
func interval(perHour int) time.Duration {
	h := int64(time.Hour)
	return time.Duration((h + int64(perHour) - 1) / int64(perHour))
}

const (
	shardCount = 32
	sweepEvery = time.Minute
)

// Local is the in-process Store. The zero value is not usable; call NewLocal.
type Local struct {
	clock     Clock
	seed      maphash.Seed
	closed    chan struct{} // closed at creation; returned by Wait when a slot is free
	nextSweep atomic.Int64  // unix nanos of the next sweep of idle rate keys
	shards    [shardCount]shard
}

type shard struct {
	mu    sync.Mutex
	conns map[string]*connState
	rates map[string]*rateState
	days  map[string]*dayState
}

type connState struct {
	held  int
	limit int           // the limit last asked for, for Wait and Snapshot
	wake  chan struct{} // created by Wait, closed and cleared by Release
}

type rateState struct {
	tat  time.Time
	rate Rate
	kind Kind // KindRate or KindOpen, for Snapshot
}

// NewLocal returns an empty in-process Store reading time from clock.
func NewLocal(clock Clock) *Local {
	if clock == nil {
		clock = RealClock()
	}
	l := &Local{clock: clock, seed: maphash.MakeSeed(), closed: make(chan struct{})}
	close(l.closed)
	for i := range l.shards {
		l.shards[i].conns = make(map[string]*connState)
		l.shards[i].rates = make(map[string]*rateState)
		l.shards[i].days = make(map[string]*dayState)
	}
	l.nextSweep.Store(clock.Now().Add(sweepEvery).UnixNano())
	return l
}

var _ Store = (*Local)(nil)

func (l *Local) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)%shardCount]
}

// ErrBadLimit is returned for a connection limit below 1.
var ErrBadLimit = errors.New("quota: connection limit must be at least 1")

// TryConn implements Store.
func (l *Local) TryConn(ctx context.Context, key string, limit int) (Lease, Usage, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, Usage{}, false, err
	}
	if limit < 1 {
		return nil, Usage{}, false, fmt.Errorf("%w (key %q, limit %d)", ErrBadLimit, key, limit)
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.conns[key]
	if c == nil {
		c = &connState{}
		sh.conns[key] = c
	}
	c.limit = limit
	if c.held >= limit {
		return nil, Usage{Key: key, Kind: KindConn, InUse: c.held, Limit: limit}, false, nil
	}
	c.held++
	return &lease{l: l, key: key}, Usage{Key: key, Kind: KindConn, InUse: c.held, Limit: limit}, true, nil
}

type lease struct {
	l        *Local
	key      string
	released atomic.Bool
}

func (s *lease) Key() string { return s.key }

func (s *lease) Release() {
	if !s.released.CompareAndSwap(false, true) {
		return
	}
	s.l.release(s.key)
}

func (l *Local) release(key string) {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.conns[key]
	if c == nil || c.held == 0 {
		// Unreachable: a lease is released once and its key stays while held.
		panic(fmt.Sprintf("quota: release of %q with no slot held", key))
	}
	c.held--
	if c.wake != nil {
		close(c.wake)
		c.wake = nil
	}
	if c.held == 0 {
		// Nothing to remember: with no lease held, Wait answers "free now".
		delete(sh.conns, key)
	}
}

// Wait implements Store.
func (l *Local) Wait(key string) <-chan struct{} {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.conns[key]
	if c == nil || c.held < c.limit {
		return l.closed
	}
	if c.wake == nil {
		c.wake = make(chan struct{})
	}
	return c.wake
}

// Conns implements Store.
func (l *Local) Conns(key string) int {
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.conns[key]; c != nil {
		return c.held
	}
	return 0
}

// TakeMessage implements Store.
func (l *Local) TakeMessage(ctx context.Context, key string, perHour int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if perHour <= 0 {
		return true, 0, nil
	}
	now := l.clock.Now()
	l.maybeSweep(now)
	return l.takeGCRA(key, KindRate, Rate{N: perHour, Per: time.Hour}, now)
}

// maybeSweep drops rate keys whose TAT has passed, at most once per
// sweepEvery, in the calling goroutine. The CAS elects one caller.
func (l *Local) maybeSweep(now time.Time) {
	next := l.nextSweep.Load()
	if now.UnixNano() < next || !l.nextSweep.CompareAndSwap(next, now.Add(sweepEvery).UnixNano()) {
		return
	}
	l.sweep(now)
}

func (l *Local) sweep(now time.Time) {
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, r := range sh.rates {
			if !r.tat.After(now) {
				delete(sh.rates, k)
			}
		}
		cur := bucketOf(now)
		for k, d := range sh.days {
			if d.idle(cur) {
				delete(sh.days, k)
			}
		}
		sh.mu.Unlock()
	}
}

// Snapshot implements Store.
func (l *Local) Snapshot() []Usage {
	now := l.clock.Now()
	var out []Usage
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, c := range sh.conns {
			if c.held > 0 {
				out = append(out, Usage{Key: k, Kind: KindConn, InUse: c.held, Limit: c.limit})
			}
		}
		for k, r := range sh.rates {
			if !r.tat.After(now) {
				continue
			}
			t := rateInterval(r.rate)
			b := RateBurst(r.rate)
			ahead := r.tat.Sub(now)
			inUse := int((ahead + t - 1) / t) // tokens not yet earned back
			next := now
			if wait := ahead - t*time.Duration(b-1); wait > 0 {
				next = now.Add(wait)
			}
			u := Usage{Key: k, Kind: r.kind, InUse: min(inUse, b), Limit: r.rate.N, Burst: b, NextSlot: next}
			if r.kind == KindOpen {
				u.Per = r.rate.Per
			}
			out = append(out, u)
		}
		cur := bucketOf(now)
		for k, d := range sh.days {
			n, free := d.count(cur, d.perDay, now)
			if n > 0 {
				out = append(out, Usage{Key: k, Kind: KindDay, InUse: n, Limit: d.perDay, NextSlot: free})
			}
		}
		sh.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Key < out[j].Key
	})
	return out
}
