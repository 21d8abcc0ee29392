package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/sim"
)

// Keys are costly to make under -race: each test binary makes these once.
var (
	rsaKeys = sync.OnceValue(func() []crypto.Signer {
		var ks []crypto.Signer
		for range 3 {
			k, _, err := GenerateKey("rsa", 2048)
			if err != nil {
				panic(err)
			}
			ks = append(ks, k)
		}
		return ks
	})
	edKeys = sync.OnceValue(func() []crypto.Signer {
		var ks []crypto.Signer
		for range 3 {
			k, _, err := GenerateKey("ed25519", 0)
			if err != nil {
				panic(err)
			}
			ks = append(ks, k)
		}
		return ks
	})
)

// writeKey writes key as PKCS#8 PEM (PKCS#1 for RSA when pkcs1) with mode
// 0600 and returns the path.
func writeKey(t testing.TB, dir, name string, key crypto.Signer, pkcs1 bool) string {
	t.Helper()
	var block *pem.Block
	if rk, ok := key.(*rsa.PrivateKey); ok && pkcs1 {
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// env is a simulated DNS with a resolver, a key directory, and helpers to
// build a Signer from TOML and verify with go-msgauth.
type env struct {
	t   testing.TB
	dns *sim.DNSServer
	r   dns.TXTResolver
	dir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r, err := dns.NewTXT([]string{s.Addr()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dns: s, r: r, dir: t.TempDir()}
}

// key writes key under name and publishes its record for selector/domain.
func (e *env) key(name string, key crypto.Signer, selector, domain string) string {
	e.t.Helper()
	rec, err := Record(key.Public())
	if err != nil {
		e.t.Fatal(err)
	}
	e.dns.SetTXT(RecordName(selector, domain), rec)
	return writeKey(e.t, e.dir, name, key, false)
}

func (e *env) signer(toml string) *Signer {
	e.t.Helper()
	cfg, err := config.Parse("penstock.toml", []byte(toml))
	if err != nil {
		e.t.Fatal(err)
	}
	s, _, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// verify runs go-msgauth's verifier on msg with keys from the simulated DNS.
func (e *env) verify(msg []byte) []*msgauth.Verification {
	e.t.Helper()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return e.r.LookupTXT(ctx, name)
		},
	})
	if err != nil {
		e.t.Fatalf("verify: %v", err)
	}
	return vs
}

// allValid reports whether msg has n signatures, all valid.
func (e *env) allValid(msg []byte, n int) error {
	vs := e.verify(msg)
	if len(vs) != n {
		return fmt.Errorf("%d signatures, want %d", len(vs), n)
	}
	for _, v := range vs {
		if v.Err != nil {
			return fmt.Errorf("d=%s: %v", v.Domain, v.Err)
		}
	}
	return nil
}

func keyConf(domain, selector, file, extra string) string {
	return fmt.Sprintf("[[dkim]]\ndomain = %q\nselector = %q\nkey_file = %q\n%s\n", domain, selector, file, extra)
}

func crlfText(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

const header = "From: Ann <ann@example.com>\nTo: bob@example.org\nSubject: Hello\nDate: Mon, 7 Dec 2026 02:00:00 +0000\nMessage-ID: <1@example.com>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"

func TestSignVerify(t *testing.T) {
	e := newEnv(t)
	rsaFile := e.key("rsa.pem", rsaKeys()[0], "r1", "example.com")
	edFile := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	bodies := map[string]string{
		"7bit":           "Hello Bob,\n\nsee you.\n",
		"8bit utf-8":     "Grüße, Zoë — 日本語のテキスト\n\xff raw byte\n",
		"long line":      strings.Repeat("0123456789 ", 1000) + "\n",
		"leading dots":   ".\n..hidden\n.end\n",
		"empty":          "",
		"no final crlf":  "last line",
		"trailing blank": "text\n\n\n\n",
		"whitespace":     "a  \t b \t\n \t\n\tindented\n",
		"only blanks":    "\n\n \n",
	}
	for _, canon := range []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"} {
		extra := fmt.Sprintf("canonicalization = %q", canon)
		s := e.signer(keyConf("example.com", "r1", rsaFile, extra) + keyConf("example.com", "e1", edFile, extra))
		for name, body := range bodies {
			msg := append(crlfText(header+"\n"), crlfText(body)...)
			sig, res, err := s.Sign(msg, time.Now(), "")
			if err != nil {
				t.Fatalf("%s %s: %v", canon, name, err)
			}
			if len(res.Signatures) != 2 || !res.Aligned || res.Via != ViaFrom {
				t.Errorf("%s %s: result %+v, want two aligned signatures", canon, name, res)
			}
			if err := e.allValid(append(sig, msg...), 2); err != nil {
				t.Errorf("%s %s: %v\n%s", canon, name, err, sig)
			}
		}
	}
}

// TestSignedFieldsDoNotVerifyAfterChange: a body or signed field changed
// after signing fails; an unsigned field added does not.
func TestSignedFieldsDoNotVerifyAfterChange(t *testing.T) {
	e := newEnv(t)
	file := e.key("rsa.pem", rsaKeys()[0], "r1", "example.com")
	s := e.signer(keyConf("example.com", "r1", file, ""))
	msg := crlfText(header + "\nPay 10 EUR.\n")
	sig, _, err := s.Sign(msg, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.allValid(append(sig, msg...), 1); err != nil {
		t.Fatalf("unchanged message: %v", err)
	}
	cases := map[string][]byte{
		"body changed":       bytes.Replace(msg, []byte("10 EUR"), []byte("99 EUR"), 1),
		"second From":        append([]byte("From: Mallory <m@evil.example>\r\n"), msg...),
		"Reply-To added":     append([]byte("Reply-To: m@evil.example\r\n"), msg...),
		"second Subject":     append([]byte("Subject: Urgent\r\n"), msg...),
		"Cc added":           append([]byte("Cc: m@evil.example\r\n"), msg...),
		"subject changed":    bytes.Replace(msg, []byte("Subject: Hello"), []byte("Subject: Hallo"), 1),
		"body line appended": append(bytes.Clone(msg), []byte("P.S. more\r\n")...),
	}
	for name, m := range cases {
		vs := e.verify(append(bytes.Clone(sig), m...))
		if len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s: still verifies", name)
		}
	}
	// Fields we do not sign may be added in transit.
	m := append([]byte("Received: from x by y; Mon, 7 Dec 2026 02:00:01 +0000\r\nX-Extra: 1\r\n"), msg...)
	if err := e.allValid(append(bytes.Clone(sig), m...), 1); err != nil {
		t.Errorf("unsigned fields added: %v", err)
	}
	// Relaxed canonicalization tolerates refolding and case changes.
	m = bytes.Replace(msg, []byte("Subject: Hello"), []byte("subject:   Hello  "), 1)
	if err := e.allValid(append(bytes.Clone(sig), m...), 1); err != nil {
		t.Errorf("refolded subject under relaxed: %v", err)
	}
}

func TestOversignedHeaderList(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	s := e.signer(keyConf("example.com", "e1", file, ""))
	sig, _, err := s.Sign(crlfText(header+"\nx\n"), time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	unfolded := strings.NewReplacer("\r\n\t ", "", "\r\n\t", " ").Replace(string(sig))
	_, h, _ := strings.Cut(unfolded, " h=")
	h, _, _ = strings.Cut(h, ";")
	want := "From:From:Reply-To:Subject:Subject:Date:To:To:Cc:Message-ID:MIME-Version:Content-Type"
	if h != want {
		t.Errorf("h=%s\nwant %s", h, want)
	}
}

func TestExpiry(t *testing.T) {
	e := newEnv(t)
	file := e.key("rsa.pem", rsaKeys()[0], "r1", "example.com")
	s := e.signer(keyConf("example.com", "r1", file, `expire = "7d"`))
	msg := crlfText(header + "\nbody\n")
	now := time.Now()
	sig, _, err := s.Sign(msg, now, "")
	if err != nil {
		t.Fatal(err)
	}
	vs := e.verify(append(sig, msg...))
	if len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("fresh: %+v", vs[0])
	}
	if got := vs[0].Expiration.Sub(vs[0].Time); got != 7*24*time.Hour {
		t.Errorf("x= - t= = %v, want 7d", got)
	}
	old, _, err := s.Sign(msg, now.Add(-8*24*time.Hour), "")
	if err != nil {
		t.Fatal(err)
	}
	if vs := e.verify(append(old, msg...)); len(vs) != 1 || vs[0].Err == nil || !strings.Contains(vs[0].Err.Error(), "expired") {
		t.Errorf("signed 8 days ago with expire 7d: %v", vs[0].Err)
	}
	// Without expire there is no x=.
	s = e.signer(keyConf("example.com", "r1", file, ""))
	sig, _, _ = s.Sign(msg, now, "")
	if bytes.Contains(sig, []byte("x=")) {
		t.Errorf("x= without expire: %s", sig)
	}
}

// TestRotation: the old selector signs until the new one's active_from,
// then the new one alone, the old one stops at retire_after; at every hour
// across the change one signature is made and verifies.
func TestRotation(t *testing.T) {
	e := newEnv(t)
	oldFile := e.key("old.pem", rsaKeys()[0], "2025a", "example.com")
	newFile := e.key("new.pem", rsaKeys()[1], "2025b", "example.com")
	s := e.signer(keyConf("example.com", "2025a", oldFile, `retire_after = "2025-03-08"`) +
		keyConf("example.com", "2025b", newFile, `active_from = "2025-03-01T12:00:00Z"`))
	msg := crlfText(header + "\nbody\n")
	start := time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC)
	switchAt := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for at := start; at.Before(start.AddDate(0, 0, 10)); at = at.Add(time.Hour) {
		sig, res, err := s.Sign(msg, at, "")
		if err != nil || len(res.Signatures) != 1 {
			t.Fatalf("at %v: %+v, %v: want one signature", at, res, err)
		}
		want := "2025a"
		if !at.Before(switchAt) {
			want = "2025b"
		}
		if res.Signatures[0].Selector != want {
			t.Fatalf("at %v: selector %s, want %s", at, res.Signatures[0].Selector, want)
		}
		if at.Hour() == 0 || at.Equal(switchAt) {
			if err := e.allValid(append(sig, msg...), 1); err != nil {
				t.Fatalf("at %v: %v", at, err)
			}
		}
	}
	// Only the old key, retired: nothing signs, and the reason says why.
	s = e.signer(keyConf("example.com", "2025a", oldFile, `retire_after = "2025-03-08"`))
	if _, res, _ := s.Sign(msg, time.Date(2025, 3, 9, 0, 0, 0, 0, time.UTC), ""); res.Signed() || res.Reason != ReasonKeyNotActive {
		t.Errorf("retired key: %+v, want unsigned key_not_active", res)
	}
}

func TestKeyChoice(t *testing.T) {
	e := newEnv(t)
	ex := e.key("ex.pem", edKeys()[0], "s1", "example.com")
	esp := e.key("esp.pem", edKeys()[1], "s1", "esp.example")
	dflt := e.key("dflt.pem", edKeys()[2], "s1", "default.example")
	uk := e.key("uk.pem", rsaKeys()[2], "s1", "shop.co.uk")
	conf := keyConf("example.com", "s1", ex, "sign_subdomains = true") +
		keyConf("esp.example", "s1", esp, "") +
		keyConf("default.example", "s1", dflt, "") +
		keyConf("shop.co.uk", "s1", uk, "") + `
[[source]]
name = "ip1"
ip = "127.0.0.2"
[[pool]]
name = "customers"
sources = [{ source = "ip1" }]
dkim_domain = "esp.example"
[[pool]]
name = "other"
sources = [{ source = "ip1" }]
[dkim_default]
domain = "default.example"
`
	s := e.signer(conf)
	for _, tc := range []struct {
		name, from, pool string
		domain, via      string
		aligned          bool
		reason           string
	}{
		{"own key", "ann@example.com", "customers", "example.com", ViaFrom, true, ""},
		{"case", "=?utf-8?q?Ann_M=C3=BCller?= <ANN@Example.COM>", "", "example.com", ViaFrom, true, ""},
		{"subdomain via parent", "news@news.example.com", "customers", "example.com", ViaParent, true, ""},
		{"deep subdomain via parent", "a@b.c.example.com", "", "example.com", ViaParent, true, ""},
		{"pool domain", "ann@customer.org", "customers", "esp.example", ViaPool, false, ""},
		{"default domain", "ann@customer.org", "other", "default.example", ViaPool, false, ""},
		{"no pool: default domain", "ann@customer.org", "", "default.example", ViaPool, false, ""},
		// shop.co.uk has no sign_subdomains: its subdomain gets the default.
		{"parent without sign_subdomains", "x@mail.shop.co.uk", "", "default.example", ViaPool, false, ""},
		{"no From", "", "", "", "", false, ReasonNoFrom},
		{"bad From", "not an address", "", "", "", false, ReasonBadFrom},
		{"authors of two domains", "a@example.com, b@customer.org", "", "", "", false, ReasonBadFrom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := "Subject: x\r\n"
			if tc.from != "" {
				h = "From: " + tc.from + "\r\n" + h
			}
			msg := []byte(h + "\r\nbody\r\n")
			sig, res, err := s.Sign(msg, time.Now(), tc.pool)
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tc.reason {
				t.Fatalf("reason %q, want %q (%+v)", res.Reason, tc.reason, res)
			}
			if tc.reason != "" {
				if sig != nil || res.Signed() {
					t.Errorf("signed: %+v", res)
				}
				return
			}
			if len(res.Signatures) != 1 || res.Signatures[0].Domain != tc.domain || res.Via != tc.via || res.Aligned != tc.aligned {
				t.Errorf("got %+v, want d=%s via %s aligned %v", res, tc.domain, tc.via, tc.aligned)
			}
			if err := e.allValid(append(sig, msg...), 1); err != nil {
				t.Error(err)
			}
		})
	}
	// Two From fields.
	if _, res, _ := s.Sign([]byte("From: a@example.com\r\nFrom: b@example.com\r\n\r\n"), time.Now(), ""); res.Reason != ReasonBadFrom {
		t.Errorf("two From fields: %+v", res)
	}
	// No key anywhere and no default.
	s = e.signer(keyConf("example.com", "s1", ex, ""))
	if _, res, _ := s.Sign([]byte("From: a@customer.org\r\n\r\n"), time.Now(), ""); res.Reason != ReasonNoKey {
		t.Errorf("no key: %+v", res)
	}
	// A parent key never reaches past the organisational domain: a key for
	// co.uk, were it configurable, would not sign shop.co.uk. The parent
	// walk stops at shop.co.uk for mail.shop.co.uk.
	if got := orgDomain("mail.shop.co.uk"); got != "shop.co.uk" {
		t.Errorf("orgDomain = %q", got)
	}
}

// TestSharedBody: SignHeader with one Body for many headers gives what
// Sign gives for each whole message, and each verifies.
func TestSharedBody(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	s := e.signer(keyConf("example.com", "e1", file, ""))
	bodyText := crlfText("Same body for everyone.\n")
	body := NewBody(bodyText)
	now := time.Now()
	for i := range 5 {
		h := []byte(fmt.Sprintf("From: ann@example.com\r\nTo: r%d@example.org\r\nSubject: n%d\r\n", i, i))
		got, _, err := s.SignHeader(h, body, now, "")
		if err != nil {
			t.Fatal(err)
		}
		msg := append(append(append([]byte(nil), h...), "\r\n"...), bodyText...)
		want, _, _ := s.Sign(msg, now, "")
		if !bytes.Equal(got, want) { // Ed25519 is deterministic
			t.Fatalf("SignHeader differs from Sign:\n%s\n%s", got, want)
		}
		if err := e.allValid(append(got, msg...), 1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeepExisting(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	theirs := "DKIM-Signature: v=1; a=rsa-sha256; d=app.example; s=x; h=from;\r\n\tbh=AAAA; b=BBBB\r\n"
	msg := []byte(theirs + string(crlfText(header+"\nbody\n")))
	keep := e.signer(keyConf("example.com", "e1", file, ""))
	_, res, _ := keep.Sign(msg, time.Now(), "")
	if res.RemoveExisting {
		t.Errorf("keep_existing default true: RemoveExisting set")
	}
	strip := e.signer(keyConf("example.com", "e1", file, "") + "[dkim_default]\nkeep_existing = false\n")
	sig, res, _ := strip.Sign(msg, time.Now(), "")
	if !res.RemoveExisting {
		t.Fatalf("keep_existing false: RemoveExisting not set")
	}
	out := append(sig, WithoutSignatures(msg)...)
	if bytes.Count(out, []byte("DKIM-Signature:")) != 1 {
		t.Errorf("theirs not removed:\n%s", out)
	}
	if err := e.allValid(out, 1); err != nil {
		t.Errorf("ours after removing theirs: %v", err)
	}
	var buf bytes.Buffer
	res, err := strip.WriteSigned(&buf, msg, time.Now(), "")
	if err != nil || !res.Signed() || bytes.Count(buf.Bytes(), []byte("DKIM-Signature:")) != 1 || e.allValid(buf.Bytes(), 1) != nil {
		t.Errorf("WriteSigned with keep_existing false: %+v %v\n%s", res, err, buf.Bytes())
	}
	buf.Reset()
	if _, err := keep.WriteSigned(&buf, msg, time.Now(), ""); err != nil || bytes.Count(buf.Bytes(), []byte("DKIM-Signature:")) != 2 ||
		!bytes.HasSuffix(buf.Bytes(), msg) {
		t.Errorf("WriteSigned keeping theirs: %v\n%s", err, buf.Bytes())
	}
	if got := WithoutSignatures(msg[len(theirs):]); !bytes.Equal(got, msg[len(theirs):]) {
		t.Errorf("WithoutSignatures changed a message with none")
	}
}

// newWithFile loads a config with one key file; it returns New's outcome.
func newWithFile(t *testing.T, file string) (*Signer, []string, error) {
	t.Helper()
	cfg, err := config.Parse("penstock.toml", []byte("# keys\n"+keyConf("example.com", "s1", file, "")))
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg)
}

func TestNewRefusesBadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa1536, _ := rsa.GenerateKey(rand.Reader, 1536)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := pkcs8(edKeys()[0])
	for _, tc := range []struct {
		name string
		file string
		want []string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), []string{"cannot read", "nope.pem", "no such file"}},
		{"directory", dir, []string{"not a regular file"}},
		{"1024 bits", write("k1024.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa1024)}), 0o600),
			[]string{"1024-bit RSA key is refused", "2048"}},
		{"1536 bits", write("k1536.pem", pkcs8(rsa1536), 0o600), []string{"1536-bit RSA key is refused", "at least 2048"}},
		{"world readable", write("open.pem", good, 0o644), []string{"readable by every user", "0644"}},
		{"not PEM", write("junk.pem", []byte("hello"), 0o600), []string{"no PEM private key"}},
		{"public key only", write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), 0o600), []string{"no PEM private key"}},
		{"encrypted", write("enc.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), 0o600), []string{"encrypted"}},
		{"EC", write("ec.pem", pkcs8(ec), 0o600), []string{"RSA or Ed25519 only"}},
		{"corrupt", write("bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600), []string{"unreadable PRIVATE KEY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, err := newWithFile(t, tc.file)
			if err == nil || s != nil {
				t.Fatalf("accepted")
			}
			// file:line: [[dkim]] d/s key_file: ... (key_file is on line 5)
			want := append([]string{"penstock.toml:5: [[dkim]] example.com/s1 key_file: "}, tc.want...)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Group-readable: loaded, with a warning; Ed25519 alone: a warning too.
	s, warns, err := newWithFile(t, write("group.pem", good, 0o640))
	if err != nil || s == nil {
		t.Fatalf("group-readable refused: %v", err)
	}
	all := strings.Join(warns, "\n")
	for _, w := range []string{"penstock.toml:5:", "readable by its group", "only Ed25519 keys"} {
		if !strings.Contains(all, w) {
			t.Errorf("warnings %q lack %q", all, w)
		}
	}
	// PKCS#1 and PKCS#8 RSA both load, without warnings.
	for _, pkcs1 := range []bool{true, false} {
		s, warns, err := newWithFile(t, writeKey(t, dir, fmt.Sprint("rsa", pkcs1, ".pem"), rsaKeys()[0], pkcs1))
		if err != nil || len(warns) != 0 || s.Keys()[0].Bits != 2048 || s.Keys()[0].Algorithm != AlgRSA {
			t.Errorf("pkcs1=%v: %v %q", pkcs1, err, warns)
		}
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	files := map[string]string{}
	for _, sel := range []string{"ok", "missing", "nodata", "different", "revoked", "junk", "two"} {
		files[sel] = writeKey(t, e.dir, sel+".pem", rsaKeys()[0], false)
	}
	edOK := e.key("ed.pem", edKeys()[0], "edok", "example.com")
	rec, _ := Record(rsaKeys()[0].Public())
	other, _ := Record(rsaKeys()[1].Public())
	e.dns.SetTXT(RecordName("ok", "example.com"), rec)
	e.dns.SetA(RecordName("nodata", "example.com"), "127.0.0.9")
	e.dns.SetTXT(RecordName("different", "example.com"), other)
	e.dns.SetTXT(RecordName("revoked", "example.com"), "v=DKIM1; k=rsa; p=")
	e.dns.SetTXT(RecordName("junk", "example.com"), "v=DKIM1; k=rsa; p=%%%")
	e.dns.SetTXT(RecordName("two", "example.com"), rec, rec)
	var conf string
	for _, sel := range []string{"ok", "missing", "nodata", "different", "revoked", "junk", "two"} {
		conf += keyConf("example.com", sel, files[sel], "")
	}
	conf += keyConf("example.com", "edok", edOK, "")
	s := e.signer(conf)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]KeyStatus{}
	for _, st := range Check(ctx, e.r, s) {
		got[st.Key.Selector] = st
	}
	for sel, want := range map[string]string{
		"ok": StatePublished, "edok": StatePublished, "missing": StateMissing, "nodata": StateMissing,
		"different": StateDifferent, "revoked": StateRevoked, "junk": StateUnparsable, "two": StateUnparsable,
	} {
		st := got[sel]
		if st.State != want {
			t.Errorf("%s: %s (%s), want %s", sel, st.State, st.Detail, want)
		}
		if (want == StatePublished) != (st.Want == "") {
			t.Errorf("%s: want record %q", sel, st.Want)
		}
	}
	e.dns.SetRcode(RecordName("ok", "example.com"), 2)
	if st := Check(ctx, e.r, s)[0]; st.State != StateLookupFail {
		t.Errorf("SERVFAIL: %s", st.State)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, typ := range []string{"rsa", "ed25519"} {
		key, pemData, err := GenerateKey(typ, 2048)
		if err != nil {
			t.Fatal(err)
		}
		back, bits, err := ParsePrivateKey(pemData)
		if err != nil || !samePublic(back.Public(), key.Public()) || (typ == "rsa") != (bits == 2048) {
			t.Fatalf("%s: PEM does not read back: %v", typ, err)
		}
		rec, err := Record(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		pub, revoked, err := ParseRecord(rec)
		if err != nil || revoked || !samePublic(pub, key.Public()) {
			t.Errorf("%s: record %q does not parse back: %v", typ, rec, err)
		}
		z := ZoneStrings(rec)
		joined := strings.NewReplacer(`" "`, "", `"`, "").Replace(z)
		if joined != rec {
			t.Errorf("%s: zone strings %s do not join back", typ, z)
		}
		for _, part := range strings.Split(z, `" "`) {
			if len(strings.Trim(part, `"`)) > 255 {
				t.Errorf("%s: a zone string is longer than 255", typ)
			}
		}
	}
	if _, _, err := GenerateKey("rsa", 1024); err == nil {
		t.Errorf("1024-bit keygen accepted")
	}
	for _, bad := range []string{"v=DKIM2; p=AAAA", "k=rsa; v=DKIM1; p=AAAA", "v=DKIM1; k=dsa; p=AAAA", "v=DKIM1; k=rsa", "p=AAAA; p=AAAA", "garbage", "v=DKIM1; k=ed25519; p=AAAA"} {
		if _, _, err := ParseRecord(bad); err == nil {
			t.Errorf("ParseRecord(%q) accepted", bad)
		}
	}
}

func benchSign(b *testing.B, conf func(e *env) string, n int) {
	e := newEnv(b)
	s := e.signer(conf(e))
	body := strings.Repeat("This line is about seventy characters long, give or take a few. ok\n", 28)
	msg := crlfText(header + "\n" + body)
	if len(msg) < 2000 || len(msg) > 2200 {
		b.Fatalf("message is %d bytes, want about 2 KB", len(msg))
	}
	sig, res, err := s.Sign(msg, time.Now(), "")
	if err != nil || len(res.Signatures) != n {
		b.Fatalf("%+v %v", res, err)
	}
	if err := e.allValid(append(sig, msg...), n); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	done := reportCPU(b)
	for b.Loop() {
		if _, _, err := s.Sign(msg, now, ""); err != nil {
			b.Fatal(err)
		}
	}
	done()
}

func BenchmarkSignRSA2048(b *testing.B) {
	benchSign(b, func(e *env) string {
		return keyConf("example.com", "r1", e.key("r.pem", rsaKeys()[0], "r1", "example.com"), "")
	}, 1)
}

func BenchmarkSignEd25519(b *testing.B) {
	benchSign(b, func(e *env) string {
		return keyConf("example.com", "e1", e.key("e.pem", edKeys()[0], "e1", "example.com"), "")
	}, 1)
}

func BenchmarkSignDual(b *testing.B) {
	benchSign(b, func(e *env) string {
		return keyConf("example.com", "r1", e.key("r.pem", rsaKeys()[0], "r1", "example.com"), "") +
			keyConf("example.com", "e1", e.key("e.pem", edKeys()[0], "e1", "example.com"), "")
	}, 2)
}

// TestRandomBodies: bodies made of words, runs of spaces and tabs, dots and
// empty lines, signed with each body canonicalization, verify with
// go-msgauth: our canonicalization agrees with an independent one.
func TestRandomBodies(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	relaxed := e.signer(keyConf("example.com", "e1", file, ""))
	simple := e.signer(keyConf("example.com", "e1", file, `canonicalization = "simple/simple"`))
	rng := mrand.New(mrand.NewPCG(1, 2))
	pieces := []string{"word", " ", "  ", "\t", " \t ", "\r\n", "\r\n\r\n", ".", "é", "\r\n ", "\r\n\t"}
	for i := range 300 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		msg := append(crlfText(header+"\n"), b.String()...)
		for name, s := range map[string]*Signer{"relaxed": relaxed, "simple": simple} {
			sig, _, err := s.Sign(msg, time.Now(), "")
			if err != nil {
				t.Fatal(err)
			}
			if err := e.allValid(append(sig, msg...), 1); err != nil {
				t.Fatalf("body #%d %q (%s): %v", i, b.String(), name, err)
			}
		}
	}
}

// TestConcurrentSigning: one Signer and one shared Body serve many
// goroutines (run under -race).
func TestConcurrentSigning(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "example.com")
	s := e.signer(keyConf("example.com", "e1", file, ""))
	body := NewBody([]byte("shared\r\n"))
	var wg sync.WaitGroup
	sigs := make([][]byte, 8)
	for g := range sigs {
		wg.Go(func() {
			for range 20 {
				h := []byte(fmt.Sprintf("From: a@example.com\r\nTo: r%d@example.org\r\n", g))
				sig, _, err := s.SignHeader(h, body, time.Now(), "")
				if err != nil {
					t.Error(err)
					return
				}
				sigs[g] = append(sig, append(append(h, "\r\n"...), "shared\r\n"...)...)
			}
		})
	}
	wg.Wait()
	for g, m := range sigs {
		if err := e.allValid(m, 1); err != nil {
			t.Errorf("goroutine %d: %v", g, err)
		}
	}
}

// TestInternationalFrom: an IDN From domain signs with the key of its
// A-label form, as configured.
func TestInternationalFrom(t *testing.T) {
	e := newEnv(t)
	file := e.key("ed.pem", edKeys()[0], "e1", "xn--exmple-cua.com")
	s := e.signer(keyConf("xn--exmple-cua.com", "e1", file, ""))
	msg := []byte("From: Zoë <zoë@exämple.com>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nGrüße\r\n")
	sig, res, err := s.Sign(msg, time.Now(), "")
	if err != nil || !res.Signed() || res.FromDomain != "xn--exmple-cua.com" || !res.Aligned {
		t.Fatalf("%+v %v", res, err)
	}
	if err := e.allValid(append(sig, msg...), 1); err != nil {
		t.Error(err)
	}
}
