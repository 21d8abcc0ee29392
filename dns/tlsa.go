package dns

import (
	"context"
	"encoding/hex"
	"slices"
	"time"

	mdns "github.com/miekg/dns"
)

// TLSA is one TLSA record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8 // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
	Selector     uint8 // 0 full certificate, 1 SubjectPublicKeyInfo
	MatchingType uint8 // 0 exact, 1 SHA-256, 2 SHA-512
	Data         []byte
}

// TLSAResult is the answer to a TLSA lookup.
type TLSAResult struct {
	Records []TLSA
	// AD is the reply's Authenticated Data bit; see MXResult.AD.
	AD bool
	// TTL is how long the answer may be kept: the records' smallest TTL,
	// or for an answer without records the negative TTL of RFC 2308 §5
	// (at most 5 minutes; 30 seconds when the reply had no SOA). From
	// NewTLSACache, the time left.
	TTL time.Duration
}

// TLSAResolver looks up TLSA records, for DANE (RFC 7672).
type TLSAResolver interface {
	// LookupTLSA returns the TLSA records at name ("_25._tcp.mx.example.com")
	// and whether the resolver authenticated the answer. A name without
	// TLSA records gives no records and no error (AD then says whether the
	// denial is authenticated); NXDOMAIN likewise. Other failures are
	// *Error of Kind Temporary.
	LookupTLSA(ctx context.Context, name string) (TLSAResult, error)
}

// NewTLSA returns a TLSAResolver asking nameservers as New does.
func NewTLSA(nameservers []string, timeout time.Duration) (TLSAResolver, error) {
	r, err := New(nameservers, timeout)
	if err != nil {
		return nil, err
	}
	return r.(*client), nil
}

// maxTLSA bounds the records kept for one name.
const maxTLSA = 32

// LookupTLSA implements TLSAResolver.
func (c *client) LookupTLSA(ctx context.Context, name string) (TLSAResult, error) {
	n, err := normalizeName(name)
	if err != nil {
		return TLSAResult{}, &Error{Domain: name, Kind: Invalid, Rcode: -1, Err: err, qtype: "TLSA"}
	}
	fqdn := n + "."
	r, rcode, err := c.query(ctx, fqdn, mdns.TypeTLSA)
	if err != nil {
		return TLSAResult{}, &Error{Domain: name, Kind: Temporary, Rcode: rcode, Err: err, qtype: "TLSA"}
	}
	res := TLSAResult{AD: r.AuthenticatedData}
	var ttl uint32
	if r.Rcode != mdns.RcodeNameError {
		res.Records, ttl, err = parseTLSA(r, fqdn)
		if err != nil {
			return TLSAResult{}, &Error{Domain: name, Kind: Temporary, Rcode: r.Rcode, Err: err, qtype: "TLSA"}
		}
	}
	if len(res.Records) > 0 {
		res.TTL = seconds(ttl)
	} else if res.TTL = min(seconds(negativeTTL(r)), maxNegativeTTL); res.TTL <= 0 {
		res.TTL = unknownNegativeTTL
	}
	return res, nil
}

// tlsaCache is the cache of NewCache for TLSA answers.
type tlsaCache struct {
	r TLSAResolver
	c *cache
}

// NewTLSACache wraps r with a cache like NewCache's (at most maxEntries
// names, 0: 65536; least recently used evicted; concurrent lookups of one
// name share a query): an answer, with or without records, lives for its
// TTL (at most a day), a failure for 2 seconds. DANE looks up the TLSA
// records of each MX host on every connection; a busy site asks once per
// TTL.
func NewTLSACache(r TLSAResolver, maxEntries int, now func() time.Time) TLSAResolver {
	return &tlsaCache{r: r, c: NewCache(nil, maxEntries, now).(*cache)}
}

// LookupTLSA implements TLSAResolver.
func (t *tlsaCache) LookupTLSA(ctx context.Context, name string) (TLSAResult, error) {
	n, err := normalizeName(name)
	if err != nil {
		return TLSAResult{}, &Error{Domain: name, Kind: Invalid, Rcode: -1, Err: err, qtype: "TLSA"}
	}
	ans := t.c.get(ctx, "tlsa:"+n, name, "TLSA", func(ctx context.Context) answer {
		res, err := t.r.LookupTLSA(ctx, name)
		return answer{tlsa: res, ttl: res.TTL, err: err}
	})
	if ans.err != nil {
		return TLSAResult{}, ans.err
	}
	res := ans.tlsa
	res.Records = slices.Clone(res.Records)
	res.TTL = ans.ttl
	return res, nil
}

// parseTLSA reads the TLSA records answering qname (FQDN, lowercased), at
// most maxTLSA, and their smallest TTL; a record whose data is not hex is
// skipped.
func parseTLSA(r *mdns.Msg, qname string) ([]TLSA, uint32, error) {
	rrs, ttl, err := followAnswer(r, qname, mdns.TypeTLSA)
	if err != nil {
		return nil, 0, err
	}
	var out []TLSA
	for _, rr := range rrs {
		t, ok := rr.(*mdns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			// miekg/dns stores the data as hex it wrote itself; a record
			// it could not render is skipped, not fatal.
			continue
		}
		out = append(out, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		if len(out) == maxTLSA {
			break
		}
	}
	return out, ttl, nil
}

// Close ends the TLSA cache's idle lookup goroutines and closes the
// resolver it wraps when that is an io.Closer.
func (t *tlsaCache) Close() error {
	t.c.w.close()
	return closeResolver(t.r)
}
