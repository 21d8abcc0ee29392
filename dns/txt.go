package dns

import (
	"context"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// TXTResolver looks up TXT records, such as DKIM public keys (RFC 6376
// §3.6.2). It is separate from Resolver so that Resolver's other
// implementations need not grow a method only DKIM uses.
type TXTResolver interface {
	// LookupTXT returns one string per TXT record of name, the record's
	// character-strings concatenated (RFC 6376 §3.6.2.2). A name that exists
	// with no TXT record gives no strings and no error; NXDOMAIN is an
	// *Error of Kind NXDomain; anything else that fails is Temporary.
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// NewTXT returns a TXTResolver asking nameservers as New does.
func NewTXT(nameservers []string, timeout time.Duration) (TXTResolver, error) {
	r, err := New(nameservers, timeout)
	if err != nil {
		return nil, err
	}
	return r.(*client), nil
}

// LookupTXT implements TXTResolver.
func (c *client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	n, err := normalizeName(name)
	if err != nil {
		return nil, &Error{Domain: name, Kind: Invalid, Rcode: -1, Err: err, qtype: "TXT"}
	}
	fqdn := n + "."
	r, rcode, err := c.query(ctx, fqdn, mdns.TypeTXT)
	if err != nil {
		return nil, &Error{Domain: name, Kind: Temporary, Rcode: rcode, Err: err, qtype: "TXT"}
	}
	if r.Rcode == mdns.RcodeNameError {
		return nil, &Error{Domain: name, Kind: NXDomain, Rcode: r.Rcode, qtype: "TXT", ttl: seconds(negativeTTL(r))}
	}
	rrs, _, err := followAnswer(r, fqdn, mdns.TypeTXT)
	if err != nil {
		return nil, &Error{Domain: name, Kind: Temporary, Rcode: r.Rcode, Err: err, qtype: "TXT"}
	}
	out := []string{}
	for _, rr := range rrs {
		if t, ok := rr.(*mdns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}
