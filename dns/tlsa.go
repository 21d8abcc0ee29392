package dns

import (
	"context"
	"encoding/hex"
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
	if r.Rcode == mdns.RcodeNameError {
		return res, nil
	}
	res.Records, err = parseTLSA(r, fqdn)
	if err != nil {
		return TLSAResult{}, &Error{Domain: name, Kind: Temporary, Rcode: r.Rcode, Err: err, qtype: "TLSA"}
	}
	return res, nil
}

// parseTLSA reads the TLSA records answering qname (FQDN, lowercased), at
// most maxTLSA; a record whose data is not hex is skipped.
func parseTLSA(r *mdns.Msg, qname string) ([]TLSA, error) {
	rrs, _, err := followAnswer(r, qname, mdns.TypeTLSA)
	if err != nil {
		return nil, err
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
	return out, nil
}
