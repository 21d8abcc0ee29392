package dane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlspolicy"
)

func chain(t *testing.T, names []string, from, to time.Time) (*sim.CA, tls.ConnectionState) {
	t.Helper()
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Leaf(names, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return ca, tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Leaf, ca.Cert}}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	ca, cs := chain(t, []string{"mx.example.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	leaf := cs.PeerCertificates[0]
	for sel := uint8(0); sel <= 1; sel++ {
		for mt := uint8(0); mt <= 2; mt++ {
			if err := Verify([]dns.TLSA{Record(UsageDANEEE, sel, mt, leaf)}, cs, "mx.example.test", now); err != nil {
				t.Errorf("EE %d %d: %v", sel, mt, err)
			}
			if err := Verify([]dns.TLSA{Record(UsageDANETA, sel, mt, ca.Cert)}, cs, "mx.example.test", now); err != nil {
				t.Errorf("TA %d %d: %v", sel, mt, err)
			}
		}
	}
	// DANE-TA checks the name and the validity; DANE-EE does not.
	ta := []dns.TLSA{Record(UsageDANETA, 1, 1, ca.Cert)}
	if err := Verify(ta, cs, "other.example.test", now); !errors.Is(err, ErrNoMatch) {
		t.Errorf("TA with the wrong name: %v", err)
	}
	if err := Verify(ta, cs, "mx.example.test", now.Add(48*time.Hour)); !errors.Is(err, ErrNoMatch) {
		t.Errorf("TA with an expired leaf: %v", err)
	}
	ee := []dns.TLSA{Record(UsageDANEEE, 1, 1, leaf)}
	if err := Verify(ee, cs, "other.example.test", now.Add(48*time.Hour)); err != nil {
		t.Errorf("EE must ignore names and expiry: %v", err)
	}
	// A record for another certificate does not match.
	_, other := chain(t, []string{"mx.example.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	if err := Verify([]dns.TLSA{Record(UsageDANEEE, 0, 1, other.PeerCertificates[0])}, cs, "mx.example.test", now); !errors.Is(err, ErrNoMatch) {
		t.Errorf("mismatch: %v", err)
	}
	if err := Verify(ee, tls.ConnectionState{}, "mx.example.test", now); err == nil {
		t.Error("no certificate accepted")
	}
}

func TestUsable(t *testing.T) {
	recs := []dns.TLSA{
		{Usage: 0, Selector: 0, MatchingType: 1, Data: []byte{1}}, // PKIX-TA: not for SMTP
		{Usage: 1, Selector: 1, MatchingType: 1, Data: []byte{1}}, // PKIX-EE: not for SMTP
		{Usage: 3, Selector: 2, MatchingType: 1, Data: []byte{1}}, // unknown selector
		{Usage: 3, Selector: 1, MatchingType: 3, Data: []byte{1}}, // unknown matching type
		{Usage: 3, Selector: 1, MatchingType: 1},                  // no data
		{Usage: 2, Selector: 1, MatchingType: 1, Data: []byte{1}},
		{Usage: 3, Selector: 0, MatchingType: 0, Data: []byte{1}},
	}
	if got := Usable(recs); len(got) != 2 || got[0].Usage != 2 || got[1].Usage != 3 {
		t.Fatalf("usable: %+v", got)
	}
}

type fakeDNS struct {
	mxAD   bool
	tlsa   dns.TLSAResult
	tlsaEr error
}

func (f *fakeDNS) LookupMX(ctx context.Context, d string) (dns.MXResult, error) {
	return dns.MXResult{Hosts: []dns.MX{{Host: "mx." + d, Pref: 10}}, AD: f.mxAD}, nil
}
func (f *fakeDNS) LookupIP(ctx context.Context, h string) ([]netip.Addr, error) { return nil, nil }
func (f *fakeDNS) LookupTXT(ctx context.Context, n string) ([]string, error)    { return nil, nil }
func (f *fakeDNS) LookupTLSA(ctx context.Context, n string) (dns.TLSAResult, error) {
	return f.tlsa, f.tlsaEr
}

type next struct{}

func (next) Policy(ctx context.Context, d string) tlspolicy.Policy {
	return tlspolicy.Policy{Domain: d, Source: tlspolicy.SourceSTS, Mode: tlspolicy.ModeEnforce}
}

func TestProviderPrecedence(t *testing.T) {
	good := dns.TLSAResult{AD: true, Records: []dns.TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}}}
	for _, tc := range []struct {
		name string
		f    *fakeDNS
		want string
	}{
		{"secure MX and TLSA: DANE first", &fakeDNS{mxAD: true, tlsa: good}, tlspolicy.SourceDANE},
		{"insecure MX: MTA-STS", &fakeDNS{mxAD: false, tlsa: good}, tlspolicy.SourceSTS},
		{"insecure TLSA: MTA-STS", &fakeDNS{mxAD: true, tlsa: dns.TLSAResult{Records: good.Records}}, tlspolicy.SourceSTS},
		{"only unusable TLSA: MTA-STS", &fakeDNS{mxAD: true, tlsa: dns.TLSAResult{AD: true, Records: []dns.TLSA{{Usage: 1, Data: []byte{1}}}}}, tlspolicy.SourceSTS},
		{"TLSA lookup failed: DANE, host unusable", &fakeDNS{mxAD: true, tlsaEr: errors.New("SERVFAIL")}, tlspolicy.SourceDANE},
	} {
		p := &Provider{MX: tc.f, TLSA: tc.f, Next: next{}}
		got := p.Policy(context.Background(), "example.test")
		if got.Source != tc.want {
			t.Errorf("%s: source %s, want %s (%+v)", tc.name, got.Source, tc.want, got)
		}
	}
}
