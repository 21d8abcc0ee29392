package config

import (
	"fmt"
	"strings"
	"time"
)

// DKIM canonicalizations (RFC 6376 §3.4), written header/body.
const (
	CanonRelaxed = "relaxed/relaxed"
	CanonSimple  = "simple/simple"
)

// DefaultDKIMHeaders returns the header fields signed when a [[dkim]] key
// gives no headers list: those RFC 6376 §5.4.1 recommends, plus the ones a
// receiver's filters and unsubscribe buttons act on (RFC 2369, RFC 8058,
// Feedback-ID). A field listed here but absent from a message is not signed
// (unless over-signed).
func DefaultDKIMHeaders() []string {
	return []string{
		"From", "Reply-To", "Subject", "Date", "To", "Cc", "Sender",
		"Message-ID", "In-Reply-To", "References",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
		"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
		"List-Help", "List-Subscribe", "List-Post", "List-Owner", "List-Archive",
		"Feedback-ID",
	}
}

// DefaultDKIMOversign returns the fields signed once more than they occur (RFC
// 6376 §8.15), so that nobody can add one after signing without breaking the
// signature: the fields a reader trusts to say who wrote the mail, to whom,
// what about, and where replies go. Reply-To is included because adding one
// to a signed message would silently redirect the answers.
func DefaultDKIMOversign() []string {
	return []string{"From", "Reply-To", "Subject", "To", "Cc"}
}

// DKIM is one [[dkim]]: a signing key for a domain. Several entries may share
// a domain: an RSA and an Ed25519 key (both sign, RFC 8463 §4), or
// successive keys of a rotation (active_from / retire_after).
type DKIM struct {
	Domain           string   `toml:"domain"`           // d=, the signing domain
	Selector         string   `toml:"selector"`         // s=; the key is published at selector._domainkey.domain
	KeyFile          string   `toml:"key_file"`         // PEM: PKCS#1 or PKCS#8 RSA (2048 bits or more), PKCS#8 Ed25519
	Headers          []string `toml:"headers"`          // fields to sign; default DefaultDKIMHeaders()
	Oversign         []string `toml:"oversign"`         // fields signed one extra time; default DefaultDKIMOversign()
	Canonicalization string   `toml:"canonicalization"` // header/body: relaxed or simple each; default relaxed/relaxed
	Expire           Duration `toml:"expire"`           // x= this long after signing; 0 = no x=
	ActiveFrom       string   `toml:"active_from"`      // RFC 3339 time or date (UTC); "" = always
	RetireAfter      string   `toml:"retire_after"`     // RFC 3339 time or date (UTC); "" = never
	SignSubdomains   bool     `toml:"sign_subdomains"`  // also sign mail From any subdomain of domain
}

// DKIMDefault is [dkim_default]: what applies to every DKIM signature.
type DKIMDefault struct {
	// Domain signs mail whose From domain (or its parent with
	// sign_subdomains) has no active key, in pools that name no
	// dkim_domain: a third-party signature (not DMARC-aligned). "" = none.
	Domain string `toml:"domain"`
	// KeepExisting keeps the DKIM-Signature fields a message already
	// carries when it is injected (default true); false removes them before
	// ours is added.
	KeepExisting bool `toml:"keep_existing"`
}

// ApplyDefaults fills the key's unset keys: the header and over-sign lists
// and relaxed/relaxed canonicalization; and lower-cases the domain.
func (d *DKIM) ApplyDefaults() {
	if d.Headers == nil {
		d.Headers = DefaultDKIMHeaders()
	}
	if d.Oversign == nil {
		d.Oversign = DefaultDKIMOversign()
	}
	if d.Canonicalization == "" {
		d.Canonicalization = CanonRelaxed
	}
	d.Domain = strings.ToLower(strings.TrimSuffix(d.Domain, "."))
}

// ParseDKIMTime parses active_from and retire_after: an RFC 3339 time
// ("2025-03-01T06:00:00Z") or a date ("2025-03-01", midnight UTC). "" is the
// zero time (no bound).
func ParseDKIMTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time like \"2025-03-01T06:00:00Z\" or a date like \"2025-03-01\"", s)
}

// DKIMError is a problem with key of [[dkim]] entry i found outside this
// package (reading its key file), placed like the validator's own: file,
// line and key.
func (c *Config) DKIMError(i int, key, format string, args ...any) *Error {
	v := &validator{file: c.File, idx: c.lines}
	d := c.DKIM[i]
	v.errf(dkimEntry(i, d), key, format, args...)
	return v.probs[0]
}

func dkimEntry(i int, d DKIM) place {
	at := entry("dkim", i, "")
	if d.Domain != "" {
		at.title = fmt.Sprintf("[[dkim]] %s/%s", d.Domain, d.Selector)
	}
	return at
}

// headerName reports whether s is a header field name (RFC 5322 §3.6.8:
// printable ASCII but ':').
func headerName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

func (v *validator) dkim(keys []DKIM, def *DKIMDefault, pools []Pool) {
	domains := map[string]bool{}
	seen := map[string]int{}
	for i, d := range keys {
		at := dkimEntry(i, d)
		if !hostname(d.Domain) || !strings.Contains(d.Domain, ".") {
			v.errf(at, "domain", "%q is not a domain name like \"example.com\"", d.Domain)
		}
		domains[d.Domain] = true
		// RFC 6376 §3.1: a selector is one or more DNS labels.
		if !hostname(d.Selector) {
			v.errf(at, "selector", "%q is not a selector (DNS labels: letters, digits, '-', '.')", d.Selector)
		}
		id := d.Domain + "/" + strings.ToLower(d.Selector)
		if first, dup := seen[id]; dup {
			v.errf(at, "selector", "selector %q of %s is also [[dkim]] #%d: one selector publishes one key", d.Selector, d.Domain, first+1)
		} else {
			seen[id] = i
		}
		if d.KeyFile == "" {
			v.errf(at, "key_file", "missing: give the PEM file of the private key (penstock dkim keygen writes one)")
		}
		hasFrom := false
		signed := map[string]bool{}
		for j, h := range d.Headers {
			if !headerName(h) {
				v.errf(at, elem("headers", j), "%q is not a header field name", h)
			}
			l := strings.ToLower(h)
			switch l {
			case "from":
				hasFrom = true
			case "dkim-signature", "received", "return-path":
				// Added or changed in transit: signing them breaks the
				// signature (RFC 6376 §5.4).
				v.errf(at, elem("headers", j), "%q is added or changed in transit: do not sign it", h)
			}
			signed[l] = true
		}
		if !hasFrom {
			// RFC 6376 §5.4: the From field MUST be signed.
			v.errf(at, "headers", "must include \"From\" (RFC 6376 §5.4)")
		}
		for j, h := range d.Oversign {
			if !signed[strings.ToLower(h)] {
				v.errf(at, elem("oversign", j), "%q is not in headers: only a signed field can be over-signed", h)
			}
		}
		if !validCanon(d.Canonicalization) {
			v.errf(at, "canonicalization", "%q is not one of relaxed/relaxed, relaxed/simple, simple/relaxed, simple/simple", d.Canonicalization)
		}
		if d.Expire < 0 {
			v.errf(at, "expire", "%s is negative (leave it out for no expiry)", d.Expire)
		} else if d.Expire > 0 && d.Expire < Duration(time.Hour) {
			// x= too close to t= fails mail that waits in a queue.
			v.errf(at, "expire", "%s is shorter than an hour: mail retried later would fail verification; use at least \"1h\" (\"7d\" is usual)", d.Expire)
		}
		from, err1 := ParseDKIMTime(d.ActiveFrom)
		if err1 != nil {
			v.errf(at, "active_from", "%v", err1)
		}
		until, err2 := ParseDKIMTime(d.RetireAfter)
		if err2 != nil {
			v.errf(at, "retire_after", "%v", err2)
		}
		if err1 == nil && err2 == nil && !from.IsZero() && !until.IsZero() && !until.After(from) {
			v.errf(at, "retire_after", "%s is not after active_from (%s): the key would never sign", d.RetireAfter, d.ActiveFrom)
		}
	}
	at := table("dkim_default")
	if def.Domain != "" && !domains[strings.ToLower(def.Domain)] {
		v.errf(at, "domain", "no [[dkim]] key has domain %q", def.Domain)
	}
	for i, p := range pools {
		if p.DKIMDomain != "" && !domains[strings.ToLower(p.DKIMDomain)] {
			v.errf(entry("pool", i, p.Name), "dkim_domain", "no [[dkim]] key has domain %q", p.DKIMDomain)
		}
	}
}

func validCanon(s string) bool {
	h, b, ok := strings.Cut(s, "/")
	return ok && oneOf(h, "relaxed", "simple") && oneOf(b, "relaxed", "simple")
}
