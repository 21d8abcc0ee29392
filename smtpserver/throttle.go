package smtpserver

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// The AUTH failure throttle. A session is closed after maxAuthFailures, but
// a guesser simply reconnects, so failures are also counted per client
// address (clientKey) across sessions: the first authFreeFailures cost
// nothing (people mistype), each further one is answered only after a delay
// that doubles up to authMaxDelay, and at authLockFailures the address is
// refused AUTH for authLockout. After the cool-down one more failure locks
// it again, so a guesser gets one try per cool-down while a client that has
// stopped guessing (or finally has the right password) gets in. An address
// with no failure for authForget is forgotten.
const (
	authFreeFailures = 3
	authFirstDelay   = time.Second
	authMaxDelay     = 16 * time.Second
	authLockFailures = 10
	authLockout      = 10 * time.Minute
	authForget       = time.Hour
	// authMaxClients bounds the table against an attacker with many
	// addresses; when it is full the stalest entry goes.
	authMaxClients = 10000
)

// Clock is the time source of the AUTH throttle, replaceable in tests.
type Clock interface {
	Now() time.Time
	// After is time.After: the channel receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type authThrottle struct {
	clock Clock
	mu    sync.Mutex
	m     map[netip.Addr]*authRecord
}

type authRecord struct {
	fails       int
	last        time.Time // of the last failure
	lockedUntil time.Time
}

func newAuthThrottle(c Clock) *authThrottle {
	return &authThrottle{clock: c, m: make(map[netip.Addr]*authRecord)}
}

// check reports whether key may try AUTH now; if not, until when it may not.
func (t *authThrottle) check(key netip.Addr) (until time.Time, ok bool) {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.m[key]
	switch {
	case r == nil:
		return time.Time{}, true
	case now.Before(r.lockedUntil):
		return r.lockedUntil, false
	case now.Sub(r.last) >= authForget:
		delete(t.m, key)
	}
	return time.Time{}, true
}

// failed records one failure from key and returns how long its reply is to
// be held back.
func (t *authThrottle) failed(key netip.Addr) time.Duration {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.m[key]
	if r != nil && now.Sub(r.last) >= authForget && !now.Before(r.lockedUntil) {
		r = nil
	}
	if r == nil {
		if len(t.m) >= authMaxClients {
			t.evictLocked(now)
		}
		r = &authRecord{}
		t.m[key] = r
	}
	r.fails++
	r.last = now
	n := r.fails
	if n >= authLockFailures {
		r.lockedUntil = now.Add(authLockout)
		r.fails = authLockFailures - 1
	}
	if n <= authFreeFailures {
		return 0
	}
	d := authFirstDelay
	for i := authFreeFailures + 1; i < n && d < authMaxDelay; i++ {
		d *= 2
	}
	return min(d, authMaxDelay)
}

// evictLocked makes room: the forgotten entries go and, if that is not
// enough, the stalest eighth of the rest, addresses locked out last. One
// sort per authMaxClients/8 new addresses keeps a flood of addresses cheap.
func (t *authThrottle) evictLocked(now time.Time) {
	type entry struct {
		key    netip.Addr
		locked bool
		last   time.Time
	}
	var rest []entry
	for k, r := range t.m {
		locked := now.Before(r.lockedUntil)
		if !locked && now.Sub(r.last) >= authForget {
			delete(t.m, k)
			continue
		}
		rest = append(rest, entry{k, locked, r.last})
	}
	if len(t.m) < authMaxClients {
		return
	}
	slices.SortFunc(rest, func(a, b entry) int {
		if a.locked != b.locked {
			if a.locked {
				return 1
			}
			return -1
		}
		return a.last.Compare(b.last)
	})
	for _, e := range rest[:len(rest)/8] {
		delete(t.m, e.key)
	}
}

// throttled counts the addresses locked out now.
func (t *authThrottle) throttled() int {
	now := t.clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.m {
		if now.Before(r.lockedUntil) {
			n++
		}
	}
	return n
}
