package dane

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// maxHosts bounds the TLSA lookups for one domain: MX hosts beyond it are
// rarely reached and are treated as having no TLSA records.
const maxHosts = 8

// Provider finds a domain's DANE policy and falls back to Next (MTA-STS)
// when DANE does not apply: usable DANE takes precedence (RFC 8461 §2).
type Provider struct {
	MX   dns.Resolver     // the (caching) resolver the queue uses for MX
	TLSA dns.TLSAResolver // TLSA lookups
	Next tlspolicy.Provider
	Now  func() time.Time // the clock, for the policy's expiry (nil: time.Now)
}

// Policy implements tlspolicy.Provider. DANE applies when the MX answer is
// authenticated and at least one MX host has authenticated, usable TLSA
// records, or a TLSA lookup for a host failed (RFC 7672 §2.2: that host
// must not be used, rather than used without TLS).
func (p *Provider) Policy(ctx context.Context, domain string) tlspolicy.Policy {
	if pol, ok := p.lookup(ctx, domain); ok {
		return pol
	}
	if p.Next != nil {
		return p.Next.Policy(ctx, domain)
	}
	return tlspolicy.Policy{Domain: domain, Source: tlspolicy.SourceNone, Mode: tlspolicy.ModeNone}
}

func (p *Provider) lookup(ctx context.Context, domain string) (tlspolicy.Policy, bool) {
	mx, err := p.MX.LookupMX(ctx, domain)
	if err != nil || !mx.AD {
		return tlspolicy.Policy{}, false
	}
	pol := tlspolicy.Policy{Domain: domain, Source: tlspolicy.SourceDANE, Mode: tlspolicy.ModeEnforce,
		TLSA: map[string][]dns.TLSA{}, TLSAError: map[string]string{}}
	var notes []string
	var ttl time.Duration // the shortest TTL of the answers used
	for i, h := range mx.Hosts {
		if i == maxHosts {
			break
		}
		res, err := p.TLSA.LookupTLSA(ctx, TLSAName(h.Host))
		switch {
		case err != nil:
			pol.TLSAError[h.Host] = err.Error()
			notes = append(notes, h.Host+": TLSA lookup failed")
		case !res.AD:
			// An unauthenticated answer (or denial) is as good as none:
			// this host gets opportunistic TLS (RFC 7672 §2.2).
		default:
			if res.TTL > 0 && (ttl == 0 || res.TTL < ttl) {
				ttl = res.TTL
			}
			usable := Usable(res.Records)
			if len(usable) > 0 {
				pol.TLSA[h.Host] = usable
				notes = append(notes, h.Host+": "+strconv.Itoa(len(usable))+" usable TLSA record(s)")
			} else if len(res.Records) > 0 {
				notes = append(notes, h.Host+": TLSA records, none usable")
			}
		}
	}
	if len(pol.TLSA) == 0 && len(pol.TLSAError) == 0 {
		return tlspolicy.Policy{}, false
	}
	pol.Note = strings.Join(notes, "; ")
	if ttl > 0 {
		// The TLSA answers are looked up again (or served from the cache)
		// once their TTL runs out: that is when this policy may change.
		now := time.Now
		if p.Now != nil {
			now = p.Now
		}
		pol.Expires = now().Add(ttl)
	}
	return pol, true
}
