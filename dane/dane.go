// Package dane implements DANE for SMTP (RFC 7672): which TLSA records of
// an MX host are usable, and whether a TLS connection matches them.
//
// Algorithm. TLSA records at _25._tcp.<mx host> count only when both the
// domain's MX answer and the TLSA answer are DNSSEC-authenticated (the AD
// bit from a resolver trusted to validate, [dns] dnssec; RFC 7672 §2.1,
// §2.2). Of those, only DANE-TA(2) and DANE-EE(3) with selector 0 (full
// certificate) or 1 (SubjectPublicKeyInfo) and matching type 0 (exact),
// 1 (SHA-256) or 2 (SHA-512) are usable: PKIX-TA(0) and PKIX-EE(1) are not
// for SMTP (§3.1.3). A host with usable records must be reached over TLS
// (a missing STARTTLS defers the mail, never sent in clear, §2.2) and its
// certificate must match one record: DANE-EE matches the leaf and ignores
// names and expiry (§3.1.1); DANE-TA matches a certificate of the chain the
// server presents, which must then issue the leaf, valid now and for the MX
// host name (which is also the TLSA base domain, as Penstock never follows
// a CNAME for it) (§3.1.2, §3.2.2).
//
// The package does no I/O: the caller looks the records up and calls
// Verify from the TLS handshake (tls.Config.VerifyConnection).
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/penstock-mta/penstock/dns"
)

// Usages, selectors and matching types (RFC 6698 §2.1, RFC 7218).
const (
	UsageDANETA = 2
	UsageDANEEE = 3
)

// TLSAName is the owner name of an MX host's TLSA records (RFC 7672 §2.2.1).
func TLSAName(mxHost string) string { return "_25._tcp." + mxHost }

// Usable returns the records DANE for SMTP can use.
func Usable(recs []dns.TLSA) []dns.TLSA {
	var out []dns.TLSA
	for _, r := range recs {
		if (r.Usage == UsageDANETA || r.Usage == UsageDANEEE) && r.Selector <= 1 && r.MatchingType <= 2 && len(r.Data) > 0 {
			out = append(out, r)
		}
	}
	return out
}

// ErrNoMatch is a certificate that matches none of the usable records.
var ErrNoMatch = errors.New("dane: the certificate matches no TLSA record")

// Verify checks a TLS connection to mxHost against usable TLSA records.
func Verify(recs []dns.TLSA, cs tls.ConnectionState, mxHost string, now time.Time) error {
	chain := cs.PeerCertificates
	if len(chain) == 0 {
		return errors.New("dane: the server presented no certificate")
	}
	if len(recs) == 0 {
		return errors.New("dane: no usable TLSA record")
	}
	var taErr error
	for _, r := range recs {
		switch r.Usage {
		case UsageDANEEE:
			// §3.1.1: the leaf's key or certificate is the whole check.
			if match(r, chain[0]) {
				return nil
			}
		case UsageDANETA:
			for i, c := range chain {
				if !match(r, c) {
					continue
				}
				err := verifyTA(c, chain[:i], mxHost, now)
				if err == nil {
					return nil
				}
				taErr = err
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("%w: a trust anchor matched but %v", ErrNoMatch, taErr)
	}
	return ErrNoMatch
}

// verifyTA checks that the leaf chains up to ta, valid at now and for
// mxHost (RFC 7672 §3.1.2, §3.2.2).
func verifyTA(ta *x509.Certificate, below []*x509.Certificate, mxHost string, now time.Time) error {
	leaf := ta
	if len(below) > 0 {
		leaf = below[0]
	}
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range below[min(1, len(below)):] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: mxHost, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// match compares a certificate with one record's association data.
func match(r dns.TLSA, c *x509.Certificate) bool {
	var data []byte
	switch r.Selector {
	case 0:
		data = c.Raw
	case 1:
		data = c.RawSubjectPublicKeyInfo
	default:
		return false
	}
	switch r.MatchingType {
	case 0:
		return bytes.Equal(data, r.Data)
	case 1:
		h := sha256.Sum256(data)
		return bytes.Equal(h[:], r.Data)
	case 2:
		h := sha512.Sum512(data)
		return bytes.Equal(h[:], r.Data)
	}
	return false
}

// Record makes the TLSA record that matches c with the given usage,
// selector and matching type (for tests and operators).
func Record(usage, selector, mtype uint8, c *x509.Certificate) dns.TLSA {
	r := dns.TLSA{Usage: usage, Selector: selector, MatchingType: mtype}
	data := c.Raw
	if selector == 1 {
		data = c.RawSubjectPublicKeyInfo
	}
	switch mtype {
	case 1:
		h := sha256.Sum256(data)
		r.Data = h[:]
	case 2:
		h := sha512.Sum512(data)
		r.Data = h[:]
	default:
		r.Data = bytes.Clone(data)
	}
	return r
}
