package dns

import (
	"container/list"
	"context"
	"errors"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"
)

const (
	// defaultCacheEntries is the cache size when NewCache is given none.
	defaultCacheEntries = 65536
	// maxPositiveTTL caps how long an answer is kept, whatever its TTL, so a
	// changed MX set is seen within a day (unbound's cache-max-ttl default).
	maxPositiveTTL = 24 * time.Hour
	// maxNegativeTTL caps negative caching: RFC 2308 §5 allows up to the SOA
	// minimum, but a domain that has just been fixed should not bounce mail
	// for long.
	maxNegativeTTL = 5 * time.Minute
	// unknownNegativeTTL applies to a permanent error whose reply carried no
	// SOA. RFC 2308 §5 says not to cache those at all; we keep them for a
	// short while so a campaign to a dead domain does not send one query per
	// recipient.
	unknownNegativeTTL = 30 * time.Second
	// temporaryTTL: a SERVFAIL or timeout is remembered just long enough to
	// absorb a burst of recipients at the same domain.
	temporaryTTL = 2 * time.Second
	// foreignIPTTL is the lifetime of addresses (and TXT records) from a
	// Resolver that does not tell their TTL.
	foreignIPTTL = time.Minute
)

// ttlIPResolver is implemented by resolvers that can tell how long addresses
// stay valid; the cache uses it when present.
type ttlIPResolver interface {
	lookupIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error)
}

// ttlTXTResolver is ttlIPResolver for TXT records.
type ttlTXTResolver interface {
	lookupTXTTTL(ctx context.Context, name string) ([]string, time.Duration, error)
}

// answer is one lookup's outcome, cached or shared with concurrent callers.
type answer struct {
	mx    MXResult
	addrs []netip.Addr
	txt   []string
	tlsa  TLSAResult
	ttl   time.Duration // of the positive result
	err   error
}

type cacheEntry struct {
	key     string
	ans     answer
	expires time.Time
}

// flight is a lookup in progress that concurrent callers of the same name
// wait for instead of asking again.
type flight struct {
	done    chan struct{}
	ans     answer
	waiters int
	cancel  context.CancelFunc
}

type cache struct {
	r    Resolver
	max  int
	now  func() time.Time
	mu   sync.Mutex
	lru  *list.List               // of *cacheEntry, most recently used first
	byK  map[string]*list.Element // key -> element of lru
	busy map[string]*flight
	w    *workers // the lookups' goroutines

	joined chan<- string // tests only: told the key each time a caller waits for a flight
}

// NewCache wraps r with a TTL cache of at most maxEntries names (0: 65536),
// evicting the least recently used. Answers live for their TTL (at most a
// day), permanent errors for the negative TTL of RFC 2308 §5 (at most 5
// minutes), temporary errors for 2 seconds. Concurrent lookups of one name
// share a single query. now is the clock (nil: time.Now). The result's TTL on
// a hit is the time left; MX hosts of equal preference are shuffled anew on
// every hit, so load still spreads (RFC 5321 §5.1).
func NewCache(r Resolver, maxEntries int, now func() time.Time) Resolver {
	if maxEntries <= 0 {
		maxEntries = defaultCacheEntries
	}
	if now == nil {
		now = time.Now
	}
	return &cache{
		r:    r,
		w:    newWorkers(),
		max:  maxEntries,
		now:  now,
		lru:  list.New(),
		byK:  make(map[string]*list.Element),
		busy: make(map[string]*flight),
	}
}

// LookupMX implements Resolver.
func (c *cache) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	name, err := normalizeName(domain)
	if err != nil {
		return MXResult{}, &Error{Domain: domain, Kind: Invalid, Rcode: -1, Err: err, qtype: "MX"}
	}
	ans := c.get(ctx, "mx:"+name, domain, "MX", func(ctx context.Context) answer {
		mx, err := c.r.LookupMX(ctx, domain)
		return answer{mx: mx, ttl: mx.TTL, err: err}
	})
	if ans.err != nil {
		return MXResult{}, ans.err
	}
	res := ans.mx
	res.Hosts = slices.Clone(res.Hosts)
	shuffleEqualPrefs(res.Hosts)
	res.TTL = ans.ttl
	return res, nil
}

// LookupIP implements Resolver.
func (c *cache) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, err := normalizeName(host)
	if err != nil {
		return nil, &Error{Domain: host, Kind: Invalid, Rcode: -1, Err: err, qtype: "A/AAAA"}
	}
	ans := c.get(ctx, "ip:"+name, host, "A/AAAA", func(ctx context.Context) answer {
		if tr, ok := c.r.(ttlIPResolver); ok {
			addrs, ttl, err := tr.lookupIPTTL(ctx, host)
			return answer{addrs: addrs, ttl: ttl, err: err}
		}
		addrs, err := c.r.LookupIP(ctx, host)
		return answer{addrs: addrs, ttl: foreignIPTTL, err: err}
	})
	if ans.err != nil {
		return nil, ans.err
	}
	return slices.Clone(ans.addrs), nil
}

// LookupTXT implements Resolver.
func (c *cache) LookupTXT(ctx context.Context, name string) ([]string, error) {
	n, err := normalizeName(name)
	if err != nil {
		return nil, &Error{Domain: name, Kind: Invalid, Rcode: -1, Err: err, qtype: "TXT"}
	}
	ans := c.get(ctx, "txt:"+n, name, "TXT", func(ctx context.Context) answer {
		if tr, ok := c.r.(ttlTXTResolver); ok {
			txt, ttl, err := tr.lookupTXTTTL(ctx, name)
			return answer{txt: txt, ttl: ttl, err: err}
		}
		txt, err := c.r.LookupTXT(ctx, name)
		return answer{txt: txt, ttl: foreignIPTTL, err: err}
	})
	if ans.err != nil {
		return nil, ans.err
	}
	return slices.Clone(ans.txt), nil
}

// get returns the cached answer for key, or joins or starts the lookup.
// The lookup runs on a goroutine of its own (a kept worker, workers.go)
// with a context that ends when every caller waiting for it has given up,
// so one caller's cancellation never fails the others.
func (c *cache) get(ctx context.Context, key, given, qtype string, fetch func(context.Context) answer) answer {
	c.mu.Lock()
	if el, ok := c.byK[key]; ok {
		e := el.Value.(*cacheEntry)
		if left := e.expires.Sub(c.now()); left > 0 {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			ans := e.ans
			ans.ttl = left
			ans.err = copyErr(ans.err)
			return ans
		}
		c.lru.Remove(el)
		delete(c.byK, key)
	}
	f := c.busy[key]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{done: make(chan struct{}), cancel: cancel}
		c.busy[key] = f
		c.w.run(func() { c.run(fctx, key, f, fetch) })
	}
	f.waiters++
	c.mu.Unlock()
	if c.joined != nil {
		c.joined <- key
	}

	select {
	case <-f.done:
		ans := f.ans
		ans.err = copyErr(ans.err)
		return ans
	case <-ctx.Done():
		c.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants the answer any more: stop asking, and let the next
			// caller start afresh rather than join a dying lookup.
			f.cancel()
			if c.busy[key] == f {
				delete(c.busy, key)
			}
		}
		c.mu.Unlock()
		return answer{err: &Error{Domain: given, Kind: Temporary, Rcode: -1, Err: ctx.Err(), qtype: qtype}}
	}
}

func (c *cache) run(ctx context.Context, key string, f *flight, fetch func(context.Context) answer) {
	ans := fetch(ctx)
	c.mu.Lock()
	if c.busy[key] == f {
		delete(c.busy, key)
	}
	// A lookup cut short because its callers left says nothing about the
	// name: do not keep it.
	if ctx.Err() == nil {
		c.store(key, ans)
	}
	f.ans = ans
	c.mu.Unlock()
	f.cancel()
	close(f.done)
}

// store caches ans for as long as it may be kept. c.mu is held.
func (c *cache) store(key string, ans answer) {
	var ttl time.Duration
	var e *Error
	switch {
	case ans.err == nil:
		ttl = min(ans.ttl, maxPositiveTTL)
	case errors.As(ans.err, &e) && e.Permanent():
		ttl = e.ttl
		if ttl <= 0 {
			ttl = unknownNegativeTTL
		}
		ttl = min(ttl, maxNegativeTTL)
	default:
		ttl = temporaryTTL
	}
	if ttl <= 0 {
		return // RFC 1035 §3.2.1: TTL 0 means use once, do not cache
	}
	entry := &cacheEntry{key: key, ans: ans, expires: c.now().Add(ttl)}
	if el, ok := c.byK[key]; ok {
		el.Value = entry
		c.lru.MoveToFront(el)
		return
	}
	c.byK[key] = c.lru.PushFront(entry)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.byK, old.Value.(*cacheEntry).key)
	}
}

// copyErr gives each caller its own *Error, so one caller's changes cannot
// reach another's.
func copyErr(err error) error {
	if e, ok := err.(*Error); ok {
		c := *e
		return &c
	}
	return err
}

// Close ends the cache's idle lookup goroutines, then closes the resolver
// it wraps when that is an io.Closer.
func (c *cache) Close() error {
	c.w.close()
	return closeResolver(c.r)
}

// closeResolver closes r when it is an io.Closer (a resolver of this
// package wrapped in another).
func closeResolver(r any) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
