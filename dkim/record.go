package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"github.com/penstock-mta/penstock/dns"
)

// RecordName is where a selector's key is published (RFC 6376 §3.6.2.1).
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + domain
}

// Record returns the TXT record value that publishes pub (RFC 6376 §3.6.1):
// an RSA key as DER SubjectPublicKeyInfo, which every verifier reads (RFC
// 6376 erratum 3017), an Ed25519 key as its 32 raw bytes (RFC 8463 §4.2).
func Record(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("dkim: a %T key cannot be published", pub)
}

// ZoneStrings writes a TXT value as a zone file needs it: quoted
// character-strings of at most 255 bytes each (RFC 1035 §3.3.14), which
// verifiers join again (RFC 6376 §3.6.2.2).
func ZoneStrings(value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	return strings.Join(append(parts, `"`+value+`"`), " ")
}

// GenerateKey makes a new private key, "rsa" (of bits, at least 2048) or
// "ed25519", and returns it with its PKCS#8 PEM encoding.
func GenerateKey(typ string, bits int) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	switch typ {
	case "rsa":
		if bits < MinRSABits {
			return nil, nil, fmt.Errorf("dkim: %d-bit RSA: use at least %d bits (RFC 8301 §3.2)", bits, MinRSABits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, nil, err
		}
		key = k
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("dkim: key type %q: want rsa or ed25519", typ)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseRecord reads a DKIM key record (RFC 6376 §3.6.1): a tag list with
// v=DKIM1 (optional, first), k= (rsa when absent) and p=. revoked reports an
// empty p= (§3.6.1: the key was revoked).
func ParseRecord(txt string) (pub crypto.PublicKey, revoked bool, err error) {
	tags := map[string]string{}
	for i, item := range strings.Split(txt, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, false, fmt.Errorf("%q is not tag=value", item)
		}
		if _, dup := tags[name]; dup {
			return nil, false, fmt.Errorf("tag %s appears twice (RFC 6376 §3.2)", name)
		}
		if name == "v" && i != 0 {
			return nil, false, errors.New("v= must come first (RFC 6376 §3.6.1)")
		}
		tags[name] = strings.TrimSpace(value)
	}
	if v, ok := tags["v"]; ok && v != "DKIM1" {
		return nil, false, fmt.Errorf("v=%s is not DKIM1", v)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, false, errors.New("no p= tag")
	}
	p = strings.Join(strings.Fields(p), "")
	if p == "" {
		return nil, true, nil
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, false, fmt.Errorf("p= is not base64: %v", err)
	}
	switch k := tags["k"]; k {
	case "", "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// RFC 6376 §3.6.1 literally says RSAPublicKey; both are met.
			pub, err = x509.ParsePKCS1PublicKey(der)
		}
		if err != nil {
			return nil, false, fmt.Errorf("p= is not an RSA public key: %v", err)
		}
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return nil, false, fmt.Errorf("k=rsa but p= holds a %T key", pub)
		}
		return pub, false, nil
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, false, fmt.Errorf("p= has %d bytes; an Ed25519 key has %d (RFC 8463 §4.2)", len(der), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(der), false, nil
	default:
		return nil, false, fmt.Errorf("k=%s: unknown key type", k)
	}
}

// States of a published key, as KeyStatus.State.
const (
	StatePublished  = "published"  // the record holds our key, and a test signature verifies
	StateMissing    = "missing"    // no such name, or no TXT record
	StateDifferent  = "different"  // the record holds another key
	StateRevoked    = "revoked"    // p= is empty
	StateUnparsable = "unparsable" // the record is not a DKIM key, or there are several
	StateLookupFail = "lookup_failed"
)

// KeyStatus is what DNS publishes for one configured key.
type KeyStatus struct {
	Key    *Key
	Name   string // selector._domainkey.domain
	State  string // one of the State constants
	Detail string // the reason, for everything but published
	Want   string // the record to publish, unless published
}

// Check looks up each key's record through r and compares it with the key.
// A record that holds our key is also put to the test: a message signed with
// the key is verified by an independent verifier (go-msgauth) against the
// record as fetched.
func Check(ctx context.Context, r dns.TXTResolver, s *Signer) []KeyStatus {
	out := make([]KeyStatus, 0, len(s.keys))
	for _, k := range s.keys {
		st := KeyStatus{Key: k, Name: RecordName(k.Selector, k.Domain)}
		st.Want, _ = k.Record()
		st.State, st.Detail = checkOne(ctx, r, k, st.Name)
		if st.State == StatePublished {
			st.Want = ""
		}
		out = append(out, st)
	}
	return out
}

func checkOne(ctx context.Context, r dns.TXTResolver, k *Key, name string) (string, string) {
	txts, err := r.LookupTXT(ctx, name)
	var de *dns.Error
	switch {
	case errors.As(err, &de) && (de.Kind == dns.NXDomain || de.Kind == dns.NoHost):
		return StateMissing, name + " has no TXT record"
	case err != nil:
		return StateLookupFail, err.Error()
	case len(txts) == 0:
		return StateMissing, name + " has no TXT record"
	case len(txts) > 1:
		// RFC 6376 §3.6.2.2: several records make the result undefined.
		return StateUnparsable, fmt.Sprintf("%d TXT records: a selector must publish exactly one", len(txts))
	}
	pub, revoked, err := ParseRecord(txts[0])
	switch {
	case err != nil:
		return StateUnparsable, err.Error()
	case revoked:
		return StateRevoked, "p= is empty: the key was revoked; use a new selector"
	}
	if !samePublic(pub, k.Public()) {
		return StateDifferent, "the record holds another key than " + k.File
	}
	if err := selfTest(k, txts[0]); err != nil {
		return StateDifferent, "a test signature does not verify: " + err.Error()
	}
	return StatePublished, ""
}

func samePublic(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	x, ok := a.(eq)
	return ok && x.Equal(b)
}

// selfTest signs a small message with k (active or not) and verifies it
// with go-msgauth against record.
func selfTest(k *Key, record string) error {
	msg := []byte("From: <check@" + k.Domain + ">\r\nSubject: penstock dkim check\r\n\r\nOne line.\r\n")
	fields, body := splitMessage(msg)
	sig, err := k.signature(fields, NewBody(body), time.Now())
	if err != nil {
		return err
	}
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(append(sig, msg...)), &msgauth.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{record}, nil },
	})
	if err != nil {
		return err
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d signatures seen, want 1", len(vs))
	}
	return vs[0].Err
}
