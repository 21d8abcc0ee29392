package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/sim"
)

// fakeClock is the cache's injected clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// cachedWorld is a loopback DNS server and a cached resolver on a fake clock.
func cachedWorld(t *testing.T) (*sim.DNSServer, Resolver, *fakeClock) {
	s, r := world(t)
	clk := newClock()
	return s, NewCache(r, 100, clk.now), clk
}

// queries asserts how many queries the server has seen.
func queries(t *testing.T, s *sim.DNSServer, want int64) {
	t.Helper()
	if got := s.Queries(); got != want {
		t.Errorf("server saw %d queries, want %d", got, want)
	}
}

func TestDNSCacheHitAndExpiry(t *testing.T) {
	s, c, clk := cachedWorld(t)
	s.SetTTL(60)
	s.SetMX("c.test", sim.MXRecord{Host: "mx.c.test", Pref: 10})
	ctx := ctxT(t)
	for i := range 3 {
		res, err := c.LookupMX(ctx, "C.test")
		if err != nil || len(res.Hosts) != 1 || res.TTL != 60*time.Second-time.Duration(i)*10*time.Second {
			t.Fatalf("lookup %d: %+v %v", i, res, err)
		}
		clk.advance(10 * time.Second)
	}
	queries(t, s, 1)
	clk.advance(31 * time.Second) // 61s after the answer
	if _, err := c.LookupMX(ctx, "c.test"); err != nil {
		t.Fatal(err)
	}
	queries(t, s, 2)

	s.SetA("mx.c.test", "127.0.0.4", "::1")
	for range 3 {
		addrs, err := c.LookupIP(ctx, "mx.c.test")
		if err != nil || len(addrs) != 2 {
			t.Fatal(addrs, err)
		}
		addrs[0] = netip.Addr{} // the caller's copy: must not reach the cache
	}
	queries(t, s, 4) // one A and one AAAA
	clk.advance(61 * time.Second)
	c.LookupIP(ctx, "mx.c.test")
	queries(t, s, 6)
}

func TestDNSCacheNegative(t *testing.T) {
	s, c, clk := cachedWorld(t)
	ctx := ctxT(t)
	s.SetTTL(3600) // SOA minimum 1h: the cache caps it at 5 minutes
	for range 3 {
		_, err := c.LookupMX(ctx, "gone.test")
		wantErr(t, err, NXDomain)
	}
	queries(t, s, 1)
	clk.advance(4 * time.Minute)
	c.LookupMX(ctx, "gone.test")
	queries(t, s, 1)
	clk.advance(61 * time.Second)
	c.LookupMX(ctx, "gone.test")
	queries(t, s, 2)

	// A short SOA minimum wins over the cap (RFC 2308 §5).
	s.SetTTL(10)
	s.SetNullMX("null.test")
	for range 2 {
		_, err := c.LookupMX(ctx, "null.test")
		wantErr(t, err, NullMX)
	}
	queries(t, s, 3)
	clk.advance(11 * time.Second)
	c.LookupMX(ctx, "null.test")
	queries(t, s, 4)
}

func TestDNSCacheTemporaryErrorsShort(t *testing.T) {
	s, c, clk := cachedWorld(t)
	ctx := ctxT(t)
	s.SetMX("flaky.test", sim.MXRecord{Host: "mx.flaky.test", Pref: 1})
	s.SetRcode("flaky.test", mdns.RcodeServerFailure)
	for range 3 {
		_, err := c.LookupMX(ctx, "flaky.test")
		wantErr(t, err, Temporary, "SERVFAIL")
	}
	queries(t, s, 1)
	s.SetRcode("flaky.test", 0)
	clk.advance(temporaryTTL + time.Millisecond)
	if _, err := c.LookupMX(ctx, "flaky.test"); err != nil {
		t.Fatal(err)
	}
	queries(t, s, 2)
}

func TestDNSCacheTTLZeroNotKept(t *testing.T) {
	s, c, _ := cachedWorld(t)
	s.SetTTL(0)
	s.SetMX("zero.test", sim.MXRecord{Host: "mx.zero.test", Pref: 1})
	for range 3 {
		if _, err := c.LookupMX(ctxT(t), "zero.test"); err != nil {
			t.Fatal(err)
		}
	}
	queries(t, s, 3)
}

func TestDNSCacheShufflesOnHit(t *testing.T) {
	s, c, _ := cachedWorld(t)
	s.SetMX("eq.test", sim.MXRecord{Host: "a.eq.test", Pref: 10}, sim.MXRecord{Host: "b.eq.test", Pref: 10})
	firsts := map[string]bool{}
	for i := 0; i < 200 && len(firsts) < 2; i++ {
		res, err := c.LookupMX(ctxT(t), "eq.test")
		if err != nil {
			t.Fatal(err)
		}
		firsts[res.Hosts[0].Host] = true
	}
	if len(firsts) != 2 {
		t.Errorf("cached MX set never reshuffled: %v", firsts)
	}
	queries(t, s, 1)
}

func TestDNSCacheEvictsLeastRecentlyUsed(t *testing.T) {
	s, r := world(t)
	c := NewCache(r, 2, newClock().now)
	ctx := ctxT(t)
	for _, d := range []string{"a.test", "b.test", "c.test"} {
		s.SetMX(d, sim.MXRecord{Host: "mx." + d, Pref: 1})
	}
	c.LookupMX(ctx, "a.test")
	c.LookupMX(ctx, "b.test")
	c.LookupMX(ctx, "a.test") // a is now the most recent
	c.LookupMX(ctx, "c.test") // evicts b
	queries(t, s, 3)
	c.LookupMX(ctx, "a.test")
	queries(t, s, 3)
	c.LookupMX(ctx, "b.test")
	queries(t, s, 4)
}

func TestDNSCacheSingleflightRealServer(t *testing.T) {
	s, c, _ := cachedWorld(t)
	s.SetMX("popular.test", sim.MXRecord{Host: "mx.popular.test", Pref: 1})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 100 {
		wg.Go(func() {
			if _, err := c.LookupMX(ctxT(t), "popular.test"); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d lookups failed", failed.Load())
	}
	queries(t, s, 1)
}

// gate is a Resolver whose lookups block until released.
type gate struct {
	calls     atomic.Int32
	release   chan struct{}
	cancelled chan struct{}
}

func newGate() *gate {
	return &gate{release: make(chan struct{}), cancelled: make(chan struct{}, 10)}
}

func (g *gate) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	g.calls.Add(1)
	select {
	case <-g.release:
		return MXResult{Hosts: []MX{{Host: "mx." + domain, Pref: 1}}, TTL: time.Minute}, nil
	case <-ctx.Done():
		g.cancelled <- struct{}{}
		return MXResult{}, &Error{Domain: domain, Kind: Temporary, Rcode: -1, Err: ctx.Err()}
	}
}

func (g *gate) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return nil, errors.New("not used")
}

func (g *gate) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return nil, errors.New("not used")
}

// recv waits for a value from ch, failing the test after a few seconds.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestDNSCacheSingleflight(t *testing.T) {
	g := newGate()
	c := NewCache(g, 0, nil).(*cache)
	joined := make(chan string, 100)
	c.joined = joined
	results := make(chan error, 100)
	for range 100 {
		go func() {
			res, err := c.LookupMX(context.Background(), "one.test")
			if err == nil && res.Hosts[0].Host != "mx.one.test" {
				err = fmt.Errorf("got %+v", res)
			}
			results <- err
		}()
	}
	for i := range 100 {
		recv(t, joined, fmt.Sprintf("caller %d to join", i))
	}
	close(g.release)
	for range 100 {
		if err := recv(t, results, "a result"); err != nil {
			t.Error(err)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("100 concurrent lookups made %d calls, want 1", n)
	}
}

func TestDNSCacheCallerCancellation(t *testing.T) {
	g := newGate()
	c := NewCache(g, 0, nil).(*cache)
	joined := make(chan string, 10)
	c.joined = joined

	// One caller giving up does not fail the others.
	ctxA, cancelA := context.WithCancel(context.Background())
	errA := make(chan error, 1)
	go func() { _, err := c.LookupMX(ctxA, "x.test"); errA <- err }()
	recv(t, joined, "caller A")
	errB := make(chan error, 1)
	go func() { _, err := c.LookupMX(context.Background(), "x.test"); errB <- err }()
	recv(t, joined, "caller B")
	cancelA()
	err := recv(t, errA, "caller A's error")
	wantErr(t, err, Temporary)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("caller A: %v", err)
	}
	close(g.release)
	if err := recv(t, errB, "caller B's result"); err != nil {
		t.Errorf("caller B: %v", err)
	}

	// When every caller has left, the lookup is stopped and not cached.
	g2 := newGate()
	c2 := NewCache(g2, 0, nil).(*cache)
	c2.joined = joined
	ctxC, cancelC := context.WithCancel(context.Background())
	errC := make(chan error, 1)
	go func() { _, err := c2.LookupMX(ctxC, "y.test"); errC <- err }()
	recv(t, joined, "caller C")
	cancelC()
	recv(t, errC, "caller C's error")
	recv(t, g2.cancelled, "the abandoned lookup to be cancelled")
	close(g2.release)
	if _, err := c2.LookupMX(context.Background(), "y.test"); err != nil {
		t.Fatal(err)
	}
	if n := g2.calls.Load(); n != 2 {
		t.Errorf("calls = %d, want 2 (the abandoned lookup must not be cached)", n)
	}
}

func TestDNSCacheInvalidNameNotForwarded(t *testing.T) {
	g := newGate()
	c := NewCache(g, 0, nil)
	_, err := c.LookupMX(context.Background(), "a..b")
	wantErr(t, err, Invalid)
	_, err = c.LookupIP(context.Background(), strings.Repeat("x", 300))
	wantErr(t, err, Invalid)
	if g.calls.Load() != 0 {
		t.Error("invalid name reached the resolver")
	}
}

func BenchmarkDNSLookupMX(b *testing.B) {
	s, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.SetMX("bench.test", sim.MXRecord{Host: "mx1.bench.test", Pref: 10}, sim.MXRecord{Host: "mx2.bench.test", Pref: 10})
	r, err := New([]string{s.Addr()}, 2*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.LookupMX(ctx, "bench.test"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TLSA answers are cached per name for their TTL, with the AD bit and the
// records, and so is an answer without records (for its negative TTL); a
// SERVFAIL is kept only briefly. Counted at the real server on loopback.
func TestTLSACache(t *testing.T) {
	s, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	tr, err := NewTLSA([]string{s.Addr()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	c := NewTLSACache(tr, 100, clk.now)
	ctx := ctxT(t)
	s.SetTTL(60)
	s.SetTLSA("_25._tcp.mx.c.test", sim.TLSARecord{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2, 3}})
	s.SetAD("_25._tcp.mx.c.test", true)
	for i := range 3 {
		res, err := c.LookupTLSA(ctx, "_25._tcp.MX.c.test")
		if err != nil || !res.AD || len(res.Records) != 1 || res.TTL != 60*time.Second-time.Duration(i)*10*time.Second {
			t.Fatalf("lookup %d: %+v %v", i, res, err)
		}
		res.Records[0].Usage = 0 // the caller's copy: must not reach the cache
		clk.advance(10 * time.Second)
	}
	queries(t, s, 1)
	clk.advance(31 * time.Second) // 61s after the answer
	if res, err := c.LookupTLSA(ctx, "_25._tcp.mx.c.test"); err != nil || res.Records[0].Usage != 3 {
		t.Fatal(res, err)
	}
	queries(t, s, 2)

	// No records: kept for the negative TTL (the SOA minimum, 60s here).
	for range 3 {
		if res, err := c.LookupTLSA(ctx, "_25._tcp.mx.none.test"); err != nil || len(res.Records) != 0 {
			t.Fatal(res, err)
		}
	}
	queries(t, s, 3)
	clk.advance(61 * time.Second)
	c.LookupTLSA(ctx, "_25._tcp.mx.none.test")
	queries(t, s, 4)

	// A failure is not kept past 2 seconds: the fixed name is seen.
	s.SetRcode("_25._tcp.mx.bad.test", mdns.RcodeServerFailure)
	if _, err := c.LookupTLSA(ctx, "_25._tcp.mx.bad.test"); err == nil {
		t.Fatal("SERVFAIL not reported")
	}
	s.SetRcode("_25._tcp.mx.bad.test", 0)
	if _, err := c.LookupTLSA(ctx, "_25._tcp.mx.bad.test"); err == nil {
		t.Fatal("SERVFAIL not kept for a moment")
	}
	clk.advance(3 * time.Second)
	if _, err := c.LookupTLSA(ctx, "_25._tcp.mx.bad.test"); err != nil {
		t.Fatal(err)
	}
}
