package reports

import (
	"net/netip"
	"sync"
	"time"
)

// maxTracked bounds the networks the limiter remembers; beyond, those whose
// bucket has refilled are forgotten, then an arbitrary one.
const maxTracked = 65536

// limiter is a token bucket per client network: PerMinute tokens, refilled
// continuously.
type limiter struct {
	per float64
	mu  sync.Mutex
	m   map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(perMinute int) *limiter {
	return &limiter{per: float64(perMinute), m: map[netip.Prefix]*bucket{}}
}

// network is the unit of the limit: a /24 for IPv4, a /64 for IPv6 (what one
// customer of a provider typically gets).
func network(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.per, b.tokens+d.Minutes()*l.per)
		b.last = now
	}
}

// allow takes one token of a's network, or reports that none is left.
func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	key := network(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[key]
	if b == nil {
		if len(l.m) >= maxTracked {
			l.sweep(now)
		}
		b = &bucket{tokens: l.per, last: now}
		l.m[key] = b
	}
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets networks whose bucket is full again, and if that frees
// nothing, one arbitrary network. l.mu is held.
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.m {
		l.refill(b, now)
		if b.tokens >= l.per {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) < maxTracked {
			break
		}
		delete(l.m, k)
	}
}
