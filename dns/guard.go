package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// A broken or hijacked resolver that answers NXDOMAIN for everything
// would make real addresses (bob@gmail.com) bounce hard and land in the
// quarantine. Guard stands between the cache and the resolver and
// believes an NXDOMAIN only when the resolver shows it is sane: it asks
// the canaries, names that must exist (the root zone's NS, the MX of the
// largest providers).
//
//   - If a canary resolves, the NXDOMAIN stands: the domain really does
//     not exist (a dirty list bounces as before).
//   - If every canary fails too, the NXDOMAIN becomes a temporary error:
//     the mail waits as "Messages queued (MX lookup failed)", and the
//     MX-lookup local-problem indicator counts it.
//
// The canaries' verdict is kept for a few seconds, so that a storm of
// NXDOMAINs (a dirty list, or a broken resolver) costs one round of
// canary lookups every few seconds, not one per domain. Checking every
// NXDOMAIN rather than only spikes means not even the first few domains
// of a broken resolver's storm bounce.

// DefaultCanaries are names that always exist: "." stands for the root
// zone's NS records, the others are asked for their MX.
func DefaultCanaries() []string {
	return []string{".", "gmail.com", "outlook.com", "yahoo.com"}
}

// GuardConfig tunes a Guard.
type GuardConfig struct {
	Canaries []string // nil: DefaultCanaries(); empty: no guard
	Now      func() time.Time
}

// ErrResolverSuspect is the cause of an NXDOMAIN that was not believed.
var ErrResolverSuspect = errors.New("NXDOMAIN not believed: names that must exist (the canaries) do not resolve either; the resolver is failing (local problem)")

// canaryTTL is how long a verdict of failing canaries holds; a healthy
// verdict holds only healthyTTL, so that a resolver going bad right after
// a check makes few NXDOMAINs believed.
const (
	canaryTTL  = 10 * time.Second
	healthyTTL = 2 * time.Second
)

// Guard wraps a Resolver; see above.
type Guard struct {
	r   Resolver
	cfg GuardConfig

	mu       sync.Mutex
	checked  time.Time     // when the canaries were last asked
	healthy  bool          // their verdict
	inflight chan struct{} // one canary round at a time
}

// NewGuard wraps r. With an empty canary list it returns r itself.
func NewGuard(r Resolver, cfg GuardConfig) Resolver {
	if cfg.Canaries == nil {
		cfg.Canaries = DefaultCanaries()
	}
	if len(cfg.Canaries) == 0 {
		return r
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard{r: r, cfg: cfg, inflight: make(chan struct{}, 1)}
}

// LookupIP implements Resolver; address lookups pass through.
func (g *Guard) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return g.r.LookupIP(ctx, host)
}

// LookupTXT implements Resolver; TXT lookups pass through.
func (g *Guard) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return g.r.LookupTXT(ctx, name)
}

// lookupIPTTL keeps the cache's TTL-aware path when the wrapped resolver
// has it.
func (g *Guard) lookupIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	if tr, ok := g.r.(ttlIPResolver); ok {
		return tr.lookupIPTTL(ctx, host)
	}
	addrs, err := g.r.LookupIP(ctx, host)
	return addrs, foreignIPTTL, err
}

// LookupMX implements Resolver.
func (g *Guard) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	res, err := g.r.LookupMX(ctx, domain)
	var e *Error
	if err == nil || !errors.As(err, &e) || e.Kind != NXDomain || g.canariesHealthy(ctx) {
		return res, err
	}
	return MXResult{}, &Error{Domain: domain, Kind: Temporary, Rcode: e.Rcode, qtype: "MX", Err: ErrResolverSuspect}
}

// canariesHealthy asks the canaries (at most one round every canaryTTL)
// and reports whether the resolver answers for names that must exist.
// Any canary that resolves is enough: one provider's outage must not
// make the resolver look broken.
func (g *Guard) canariesHealthy(ctx context.Context) bool {
	select {
	case g.inflight <- struct{}{}:
		defer func() { <-g.inflight }()
	case <-ctx.Done():
		return true // cannot tell: do as without the guard
	}
	g.mu.Lock()
	ttl := canaryTTL
	if g.healthy {
		ttl = healthyTTL
	}
	if !g.checked.IsZero() && g.cfg.Now().Sub(g.checked) < ttl {
		h := g.healthy
		g.mu.Unlock()
		return h
	}
	g.mu.Unlock()
	healthy := false
	for _, c := range g.cfg.Canaries {
		if g.canary(ctx, c) == nil {
			healthy = true
			break
		}
	}
	g.mu.Lock()
	g.checked, g.healthy = g.cfg.Now(), healthy
	g.mu.Unlock()
	return healthy
}

// nsResolver is implemented by resolvers that can ask for NS records.
type nsResolver interface {
	lookupNS(ctx context.Context, name string) error
}

func (g *Guard) canary(ctx context.Context, name string) error {
	if name == "." {
		ns, ok := g.r.(nsResolver)
		if !ok {
			return errors.New("this resolver cannot ask for NS records")
		}
		return ns.lookupNS(ctx, ".")
	}
	_, err := g.r.LookupMX(ctx, name)
	return err
}

// lookupNS asks for name's NS records: nil when there are some.
func (c *client) lookupNS(ctx context.Context, name string) error {
	fqdn := mdns.Fqdn(name)
	r, _, err := c.query(ctx, fqdn, mdns.TypeNS)
	if err != nil {
		return err
	}
	if r.Rcode != mdns.RcodeSuccess {
		return fmt.Errorf("NS %s: %s", fqdn, rcodeName(r.Rcode))
	}
	for _, rr := range r.Answer {
		if _, ok := rr.(*mdns.NS); ok {
			return nil
		}
	}
	return fmt.Errorf("NS %s: no records", fqdn)
}

// Close closes the resolver the guard wraps when that is an io.Closer.
func (g *Guard) Close() error { return closeResolver(g.r) }
