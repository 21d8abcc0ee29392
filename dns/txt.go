package dns

import (
	"context"
	"time"
)

// TXTResolver looks up TXT records, such as DKIM public keys (RFC 6376
// §3.6.2): the part of Resolver that DKIM key checks need. A name that
// exists with no TXT record is an *Error of Kind NoHost; NXDOMAIN is Kind
// NXDomain; anything else that fails is Temporary.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// NewTXT returns a TXTResolver asking nameservers as New does.
func NewTXT(nameservers []string, timeout time.Duration) (TXTResolver, error) {
	r, err := New(nameservers, timeout)
	if err != nil {
		return nil, err
	}
	return r, nil
}
