package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// Key sizes (RFC 8301 §3.2: signers SHOULD use 2048 bits; verifiers need not
// handle more than 4096).
const (
	MinRSABits     = 2048
	MaxRSABitsSafe = 4096
)

// Algorithms (RFC 6376 §3.3, RFC 8463 §3).
const (
	AlgRSA     = "rsa-sha256"
	AlgEd25519 = "ed25519-sha256"
)

// Key is one loaded [[dkim]] key.
type Key struct {
	Domain    string // d=, lower case
	Selector  string // s=
	Algorithm string // AlgRSA or AlgEd25519
	Bits      int    // RSA modulus size; 256 for Ed25519
	File      string // key_file

	signer         crypto.Signer
	headers        []string // h= candidates, as configured, no duplicates
	oversigned     []bool   // by headers: listed once more in h=
	canon          string   // c=
	relaxedHeader  bool
	relaxedBody    bool
	expire         time.Duration
	activeFrom     time.Time // zero: always
	retireAfter    time.Time // zero: never
	signSubdomains bool
}

// Public is the key's public half, as published in DNS.
func (k *Key) Public() crypto.PublicKey { return k.signer.Public() }

// ActiveAt reports whether the key signs at t: from active_from (included)
// until retire_after (excluded).
func (k *Key) ActiveAt(t time.Time) bool {
	return (k.activeFrom.IsZero() || !t.Before(k.activeFrom)) &&
		(k.retireAfter.IsZero() || t.Before(k.retireAfter))
}

// Record is the TXT record value to publish for the key (RFC 6376 §3.6.1).
func (k *Key) Record() (string, error) { return Record(k.signer.Public()) }

// Signer signs outgoing mail with the configured keys. It holds no mutable
// state: one Signer serves every goroutine, and a reload builds a new one.
type Signer struct {
	keys          []*Key            // in configuration order
	byDomain      map[string][]*Key // by d=
	poolDomain    map[string]string // [[pool]] dkim_domain
	defaultDomain string            // [dkim_default] domain
	keepExisting  bool
}

// Keys returns the loaded keys in configuration order.
func (s *Signer) Keys() []*Key { return append([]*Key(nil), s.keys...) }

// KeyError is a key that cannot be used.
type KeyError struct {
	File string
	Err  error
}

func (e *KeyError) Error() string { return fmt.Sprintf("dkim: key %s: %v", e.File, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// New loads the keys of cfg's [[dkim]] entries (cfg validated, defaults
// filled, as config.Parse returns it) and builds the Signer. Every key that
// cannot be used is reported, each as file:line: [[dkim]] key_file: why.
// warnings are problems that do not stop signing: a key file readable by
// its group, an RSA key above 4096 bits, a domain with only Ed25519 keys.
func New(cfg *config.Config) (s *Signer, warnings []string, err error) {
	s = &Signer{
		byDomain:      map[string][]*Key{},
		poolDomain:    map[string]string{},
		defaultDomain: strings.ToLower(cfg.DKIMDefault.Domain),
		keepExisting:  cfg.DKIMDefault.KeepExisting,
	}
	for _, p := range cfg.Pools {
		if p.DKIMDomain != "" {
			s.poolDomain[p.Name] = strings.ToLower(p.DKIMDomain)
		}
	}
	var errs []error
	for i, d := range cfg.DKIM {
		signer, bits, warn, err := loadKey(d.KeyFile)
		if err != nil {
			errs = append(errs, cfg.DKIMError(i, "key_file", "%v", err))
			continue
		}
		if warn != "" {
			warnings = append(warnings, cfg.DKIMError(i, "key_file", "%s", warn).Error())
		}
		if rk, ok := signer.(*rsa.PrivateKey); ok {
			var err error
			if signer, err = rsaSigner(rk); err != nil {
				warnings = append(warnings, cfg.DKIMError(i, "key_file", "%s: signing with Go's crypto/rsa instead (slower): %v", d.KeyFile, err).Error())
			}
		}
		k := &Key{
			Domain:         d.Domain,
			Selector:       d.Selector,
			Bits:           bits,
			File:           d.KeyFile,
			signer:         signer,
			canon:          d.Canonicalization,
			expire:         time.Duration(d.Expire),
			signSubdomains: d.SignSubdomains,
		}
		k.Algorithm = AlgRSA
		if _, ok := signer.(ed25519.PrivateKey); ok {
			k.Algorithm = AlgEd25519
		}
		if bits > MaxRSABitsSafe {
			warnings = append(warnings, cfg.DKIMError(i, "key_file", "%d-bit RSA key: verifiers need not check keys above %d bits (RFC 8301 §3.2); 2048 is usual", bits, MaxRSABitsSafe).Error())
		}
		hc, bc, _ := strings.Cut(d.Canonicalization, "/")
		k.relaxedHeader, k.relaxedBody = hc == "relaxed", bc == "relaxed"
		seen := map[string]bool{}
		for _, h := range d.Headers {
			if l := strings.ToLower(h); !seen[l] {
				seen[l] = true
				k.headers = append(k.headers, h)
			}
		}
		for _, h := range k.headers {
			k.oversigned = append(k.oversigned, slices.ContainsFunc(d.Oversign, func(o string) bool { return strings.EqualFold(o, h) }))
		}
		// Validated by config already.
		k.activeFrom, _ = config.ParseDKIMTime(d.ActiveFrom)
		k.retireAfter, _ = config.ParseDKIMTime(d.RetireAfter)
		s.keys = append(s.keys, k)
		s.byDomain[k.Domain] = append(s.byDomain[k.Domain], k)
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	domains := slices.Sorted(maps.Keys(s.byDomain))
	for _, domain := range domains {
		rsaKey := false
		for _, k := range s.byDomain[domain] {
			rsaKey = rsaKey || k.Algorithm == AlgRSA
		}
		if !rsaKey {
			warnings = append(warnings, fmt.Sprintf("dkim: %s has only Ed25519 keys: many receivers do not verify them yet (RFC 8463 §4 advises signing with RSA too)", domain))
		}
	}
	return s, warnings, nil
}

// loadKey reads a PEM private key: PKCS#1 RSA, PKCS#8 RSA or PKCS#8
// Ed25519. RSA keys under 2048 bits are refused. A file any user of the
// machine can read is refused (whoever reads it can sign as the domain); one
// its group can read is a warning, since a group shared only with the MTA is
// a common and sound setup.
func loadKey(path string) (crypto.Signer, int, string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, "", fmt.Errorf("cannot read %s: %v", path, cause(err))
	}
	if !st.Mode().IsRegular() {
		return nil, 0, "", fmt.Errorf("%s is not a regular file", path)
	}
	warn := ""
	perm := st.Mode().Perm()
	switch {
	case perm&0o004 != 0:
		return nil, 0, "", fmt.Errorf("%s is readable by every user of this machine (mode %04o): a private key must not be; chmod 600 it (or 640 with a group only penstock is in)", path, perm)
	case perm&0o040 != 0:
		warn = fmt.Sprintf("%s is readable by its group (mode %04o): make sure only penstock is in it, or chmod 600", path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, "", fmt.Errorf("cannot read %s: %v", path, cause(err))
	}
	signer, bits, err := ParsePrivateKey(data)
	if err != nil {
		return nil, 0, "", fmt.Errorf("%s: %v", path, err)
	}
	return signer, bits, warn, nil
}

// cause drops the path from a file error: the message names it already.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ParsePrivateKey reads the first PEM private key in data and checks that
// DKIM can use it.
func ParsePrivateKey(data []byte) (crypto.Signer, int, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, 0, errors.New("no PEM private key found (want \"-----BEGIN PRIVATE KEY-----\" or \"-----BEGIN RSA PRIVATE KEY-----\")")
		}
		var key any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, 0, errors.New("the key is encrypted with a passphrase: store it unencrypted, readable only by penstock")
		case "EC PRIVATE KEY":
			return nil, 0, errors.New("an EC key: DKIM signs with RSA or Ed25519 only (RFC 6376 §3.3, RFC 8463)")
		default:
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("unreadable %s: %v", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			bits := k.N.BitLen()
			if bits <= 1024 {
				return nil, 0, fmt.Errorf("a %d-bit RSA key is refused: 1024-bit keys can be factored by a well-funded attacker and receivers treat them as weak; generate a 2048-bit key (penstock dkim keygen) and publish it under a new selector", bits)
			}
			if bits < MinRSABits {
				return nil, 0, fmt.Errorf("a %d-bit RSA key is refused: use at least %d bits (RFC 8301 §3.2)", bits, MinRSABits)
			}
			return k, bits, nil
		case ed25519.PrivateKey:
			return k, 256, nil
		default:
			return nil, 0, fmt.Errorf("a %T key: DKIM signs with RSA or Ed25519 only", key)
		}
	}
}
