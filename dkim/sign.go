package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Reasons a message is left unsigned, as Result.Reason.
const (
	ReasonNoFrom       = "no_from"        // the message has no From field
	ReasonBadFrom      = "bad_from"       // several From fields, an unreadable address, or authors of several domains
	ReasonNoKey        = "no_key"         // no key for the From domain, its parent or the pool
	ReasonKeyNotActive = "key_not_active" // keys exist, but none is inside its active_from/retire_after window now
)

// How the signing domain was chosen, as Result.Via.
const (
	ViaFrom   = "from"   // the From domain's own key
	ViaParent = "parent" // a parent domain's key with sign_subdomains
	ViaPool   = "pool"   // the pool's dkim_domain or [dkim_default] domain
)

// Signature names one DKIM-Signature added.
type Signature struct {
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=: rsa-sha256 or ed25519-sha256
}

// Result says what Sign did.
type Result struct {
	Signatures []Signature // empty when unsigned
	FromDomain string      // the From address's domain, "" if none could be read
	Via        string      // how the signing domain was chosen; "" when unsigned
	// Aligned: the signing domain has the From domain's organisational
	// domain (DMARC relaxed alignment, RFC 7489 §3.1.1). A pool-level
	// signature of another domain is not aligned: it authenticates the
	// sender but does not pass DMARC for the From domain.
	Aligned bool
	Reason  string // why unsigned: one of the Reason constants; "" when signed
	// RemoveExisting: [dkim_default] keep_existing is false and the
	// message carries DKIM-Signature fields; write the message through
	// WithoutSignatures after the fields Sign returned. Ours never cover
	// them, so removing them does not break ours.
	RemoveExisting bool
}

// Signed reports whether at least one signature was made.
func (r Result) Signed() bool { return len(r.Signatures) > 0 }

// Body is a message body whose canonical hashes are computed once, on first
// use, and then reused by every SignHeader call given the same Body: a
// campaign whose body has no per-recipient variables hashes it once per
// template. Safe for concurrent use. The bytes must not change after NewBody.
type Body struct {
	data []byte
	once [2]sync.Once // [0] simple, [1] relaxed
	sum  [2][]byte
}

// NewBody wraps a message body (everything after the header's empty line,
// CRLF line endings, not dot-stuffed).
func NewBody(body []byte) *Body { return &Body{data: body} }

// Hash returns the SHA-256 of the body in simple or relaxed canonical form
// (RFC 6376 §3.4.3, §3.4.4), computing it at most once.
func (b *Body) Hash(relaxed bool) []byte {
	i := 0
	if relaxed {
		i = 1
	}
	b.once[i].Do(func() { b.sum[i] = bodyHash(b.data, relaxed) })
	return b.sum[i]
}

// Sign signs msg, a whole message (header, empty line, body) with CRLF line
// endings and not dot-stuffed, as of now, for mail leaving through pool. It
// returns the DKIM-Signature fields to write before the message (nil when
// unsigned; Result says why). An error means a key failed to sign, which
// does not happen with the keys New loads unless a hardware signer fails.
func (s *Signer) Sign(msg []byte, now time.Time, pool string) ([]byte, Result, error) {
	fields, body := splitMessage(msg)
	return s.sign(fields, NewBody(body), now, pool)
}

// WriteSigned writes msg to w signed: our DKIM-Signature fields, then the
// message, without its own DKIM-Signature fields when [dkim_default]
// keep_existing is false. An unsigned message is written unchanged but for
// that removal; Result says why it is unsigned. This is the one call a
// delivery path needs.
func (s *Signer) WriteSigned(w io.Writer, msg []byte, now time.Time, pool string) (Result, error) {
	fields, res, err := s.Sign(msg, now, pool)
	if err != nil {
		return res, err
	}
	if res.RemoveExisting {
		msg = WithoutSignatures(msg)
	}
	if _, err := w.Write(fields); err != nil {
		return res, err
	}
	_, err = w.Write(msg)
	return res, err
}

// SignHeader is Sign for a message given as its header section (the fields,
// each with its CRLF, without the empty line) and a Body that may be shared
// by many messages, so its hash is computed once.
func (s *Signer) SignHeader(header []byte, body *Body, now time.Time, pool string) ([]byte, Result, error) {
	fields, _ := splitMessage(header)
	return s.sign(fields, body, now, pool)
}

func (s *Signer) sign(fields []field, body *Body, now time.Time, pool string) ([]byte, Result, error) {
	var res Result
	if !s.keepExisting {
		for _, f := range fields {
			if strings.EqualFold(f.name, "DKIM-Signature") {
				res.RemoveExisting = true
			}
		}
	}
	from, reason := fromDomain(fields)
	res.FromDomain = from
	if reason != "" {
		res.Reason = reason
		return nil, res, nil
	}
	keys, via, reason := s.choose(from, now, pool)
	if reason != "" {
		res.Reason = reason
		return nil, res, nil
	}
	res.Via = via
	res.Aligned = orgDomain(keys[0].Domain) == orgDomain(from)
	var out []byte
	for _, k := range keys {
		sig, err := k.signature(fields, body, now)
		if err != nil {
			return nil, Result{FromDomain: from}, err
		}
		out = append(out, sig...)
		res.Signatures = append(res.Signatures, Signature{Domain: k.Domain, Selector: k.Selector, Algorithm: k.Algorithm})
	}
	return out, res, nil
}

// choose returns the keys that sign mail From domain from: the From
// domain's own, else a parent's that signs subdomains (up to the
// organisational domain), else the pool's signing domain's.
func (s *Signer) choose(from string, now time.Time, pool string) ([]*Key, string, string) {
	inactive := false
	try := func(domain string, parent bool) []*Key {
		var ks []*Key
		for _, k := range s.byDomain[domain] {
			if parent && !k.signSubdomains {
				continue
			}
			if !k.ActiveAt(now) {
				inactive = true
				continue
			}
			ks = append(ks, k)
		}
		return newestPerAlgorithm(ks)
	}
	if ks := try(from, false); len(ks) > 0 {
		return ks, ViaFrom, ""
	}
	org := orgDomain(from)
	for d := from; d != org; {
		_, parent, ok := strings.Cut(d, ".")
		if !ok {
			break
		}
		d = parent
		if ks := try(d, true); len(ks) > 0 {
			return ks, ViaParent, ""
		}
	}
	d := s.poolDomain[pool]
	if d == "" {
		d = s.defaultDomain
	}
	if d != "" {
		if ks := try(d, false); len(ks) > 0 {
			return ks, ViaPool, ""
		}
	}
	if inactive {
		return nil, "", ReasonKeyNotActive
	}
	return nil, "", ReasonNoKey
}

// newestPerAlgorithm keeps, for each algorithm, the key that became active
// last (the first listed on a tie): during a rotation's overlap the new key
// signs alone, and an RSA and an Ed25519 key both sign (RFC 8463 §4).
func newestPerAlgorithm(ks []*Key) []*Key {
	var out []*Key
next:
	for _, k := range ks {
		for i, o := range out {
			if o.Algorithm == k.Algorithm {
				if k.activeFrom.After(o.activeFrom) {
					out[i] = k
				}
				continue next
			}
		}
		out = append(out, k)
	}
	return out
}

// fromDomain returns the domain of the message's author (RFC 5322 §3.6.2),
// lower-cased ASCII, or why there is none usable.
func fromDomain(fields []field) (string, string) {
	var from *field
	for i := range fields {
		if strings.EqualFold(fields[i].name, "From") {
			if from != nil {
				return "", ReasonBadFrom // RFC 5322 §3.6: at most one From
			}
			from = &fields[i]
		}
	}
	if from == nil {
		return "", ReasonNoFrom
	}
	addrs, err := mail.ParseAddressList(from.value())
	if err != nil || len(addrs) == 0 {
		return "", ReasonBadFrom
	}
	domain := ""
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", ReasonBadFrom
		}
		d, err := idna.Lookup.ToASCII(strings.TrimSuffix(a.Address[at+1:], "."))
		if err != nil || d == "" {
			return "", ReasonBadFrom
		}
		d = strings.ToLower(d)
		if domain != "" && d != domain {
			// RFC 7489 §6.6.1: authors of several domains cannot be
			// aligned with one signature.
			return "", ReasonBadFrom
		}
		domain = d
	}
	return domain, ""
}

// orgDomain is the organisational domain (RFC 7489 §3.2): the public suffix
// plus one label; a name that is itself a public suffix is its own.
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// signature returns this key's DKIM-Signature field for the message, CRLF
// included (RFC 6376 §3.5 tags, §3.7 hashes, §5.4.2 field selection).
func (k *Key) signature(fields []field, body *Body, now time.Time) ([]byte, error) {
	// A name listed n times in h= signs its last n instances, bottom-up
	// (§5.4.2), and one listed once more than it occurs signs the absence
	// of a further one (over-signing, §8.15). signed are those instances,
	// in h= order.
	h := make([]string, 0, 2*len(k.headers))
	signed := make([]int, 0, len(fields))
	for j, name := range k.headers {
		for i := len(fields) - 1; i >= 0; i-- {
			if strings.EqualFold(fields[i].name, name) {
				signed = append(signed, i)
				h = append(h, name)
			}
		}
		if k.oversigned[j] {
			h = append(h, name)
		}
	}

	var sb strings.Builder
	sb.WriteString("DKIM-Signature: v=1; a=")
	sb.WriteString(k.Algorithm)
	sb.WriteString("; c=")
	sb.WriteString(k.canon)
	sb.WriteString("; d=")
	sb.WriteString(k.Domain)
	sb.WriteString("; s=")
	sb.WriteString(k.Selector)
	sb.WriteString(";\r\n\tt=")
	sb.WriteString(strconv.FormatInt(now.Unix(), 10))
	if k.expire > 0 {
		sb.WriteString("; x=")
		sb.WriteString(strconv.FormatInt(now.Add(k.expire).Unix(), 10))
	}
	sb.WriteString(";\r\n\th=")
	line := 3
	for i, name := range h {
		if i > 0 {
			sb.WriteByte(':')
			line++
		}
		if line+len(name) > 76 {
			sb.WriteString("\r\n\t ")
			line = 2
		}
		sb.WriteString(name)
		line += len(name)
	}
	sb.WriteString(";\r\n\tbh=")
	sb.WriteString(base64.StdEncoding.EncodeToString(body.Hash(k.relaxedBody)))
	sb.WriteString(";\r\n\tb=")
	unsigned := sb.String()

	hh := sha256.New()
	buf := make([]byte, 0, 1024)
	for _, i := range signed {
		buf = canonHeader(buf[:0], fields[i].raw, k.relaxedHeader)
		hh.Write(buf)
	}
	// §3.7: the DKIM-Signature field itself, b= empty, without its CRLF.
	buf = canonHeader(buf[:0], []byte(unsigned), k.relaxedHeader)
	if k.relaxedHeader {
		buf = buf[:len(buf)-2]
	}
	hh.Write(buf)
	digest := hh.Sum(nil)

	var sig []byte
	var err error
	if key, ok := k.signer.(ed25519.PrivateKey); ok {
		// RFC 8463 §3: Ed25519 (PureEdDSA) signs the SHA-256 hash.
		sig = ed25519.Sign(key, digest)
	} else {
		// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2): crypto/rsa's key, or
		// libcrypto's (rsa.go).
		sig, err = k.signer.Sign(nil, digest, crypto.SHA256)
	}
	if err != nil {
		return nil, &KeyError{File: k.File, Err: err}
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	out := make([]byte, 0, len(unsigned)+len(b64)+len(b64)/70*3+2)
	out = append(out, unsigned...)
	for len(b64) > 70 {
		out = append(out, b64[:70]...)
		out = append(out, "\r\n\t "...)
		b64 = b64[70:]
	}
	out = append(out, b64...)
	return append(out, '\r', '\n'), nil
}

// WithoutSignatures returns msg without its DKIM-Signature fields, for a
// Result with RemoveExisting. It copies only when there is one to remove.
func WithoutSignatures(msg []byte) []byte {
	fields, _ := splitMessage(msg)
	found := false
	for _, f := range fields {
		found = found || strings.EqualFold(f.name, "DKIM-Signature")
	}
	if !found {
		return msg
	}
	out := make([]byte, 0, len(msg))
	n := 0
	for _, f := range fields {
		n += len(f.raw)
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			out = append(out, f.raw...)
		}
	}
	return append(out, msg[n:]...)
}
