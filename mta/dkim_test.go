package mta_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// signingKey makes a key for domain/selector, writes it (0600) and publishes
// its record in the simulated DNS.
func signingKey(t *testing.T, w *sim.World, dir, typ, domain, selector string) config.DKIM {
	t.Helper()
	key, pemBytes, err := dkim.GenerateKey(typ, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, selector+".pem")
	if err := os.WriteFile(f, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetTXT(dkim.RecordName(selector, domain), rec)
	return config.DKIM{Domain: domain, Selector: selector, KeyFile: f}
}

// verifyAtReceiver checks a received message's DKIM signatures the way a
// receiving provider would: go-msgauth's verifier, keys fetched from the
// world's DNS with a plain DNS client (not Penstock's resolver).
func verifyAtReceiver(t *testing.T, w *sim.World, msg string) []*msgdkim.Verification {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		q := new(mdns.Msg)
		q.SetQuestion(mdns.Fqdn(name), mdns.TypeTXT)
		r, err := mdns.Exchange(q, w.Nameserver())
		if err != nil {
			return nil, err
		}
		var out []string
		for _, rr := range r.Answer {
			if txt, ok := rr.(*mdns.TXT); ok {
				out = append(out, strings.Join(txt.Txt, ""))
			}
		}
		return out, nil
	}
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(msg), &msgdkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("verifying: %v", err)
	}
	return vs
}

// Every message leaves signed with the From domain's keys (RSA and
// Ed25519), on the exact bytes the receiver gets: relayed mail with
// several recipients (signed once), 8-bit bodies, long lines, lines
// starting with a dot, API mail and campaign mail. A body changed in
// transit fails verification.
func TestDKIMSignedEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	got := newCaptured()
	p, err := w.AddProvider(sim.Behavior{Name: "rcv", BodyHook: got.hook}, []string{"rcv.test", "rcv2.test"}, "mx.rcv.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rsaKey := signingKey(t, w, dir, "rsa", "example.test", "rsa1")
	edKey := signingKey(t, w, dir, "ed25519", "example.test", "ed1")
	h := newHarness(t, w, func(c *config.Config) {
		c.DKIM = []config.DKIM{rsaKey, edKey}
		c.ApplyDefaults()
		c.HTTP.Token = "tok"
	})
	long := strings.Repeat("x", 990)
	bodies := map[string]string{
		"7bit":  "Hello.\r\n",
		"dots":  ".leading dot\r\n..two dots\r\n.\r\nend\r\n",
		"long":  long + "\r\n" + long + "\r\n",
		"utf8":  "Grüße aus Köln — ünïcödé ✓\r\n",
		"blank": "\r\n\r\ntrailing blank lines\r\n\r\n\r\n",
	}
	n := 0
	for name, body := range bodies {
		to := []string{name + "1@rcv.test", name + "2@rcv.test", name + "3@rcv2.test"}
		msg := fmt.Sprintf("From: News <news@example.test>\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s",
			strings.Join(to, ", "), name, name, body)
		if err := h.send("news@example.test", to, msg); err != nil {
			t.Fatal(err)
		}
		n += len(to)
	}
	// API mail and a campaign of the same domain.
	code, b := h.call("POST", "/api/v1/messages", "tok", "application/json", jsonBody(t, map[string]any{
		"from": "News <news@example.test>", "to": []string{"api@rcv.test"}, "subject": "api", "text": "from the API\n.dot\n"}))
	if code != 202 {
		t.Fatalf("API: HTTP %d %s", code, b)
	}
	n++
	code, b = h.call("POST", "/api/v1/deliveries", "tok", "application/json", jsonBody(t, map[string]any{
		"name": "dkim", "from": "news@example.test",
		"template":   map[string]any{"from": "News <news@example.test>", "subject": "Hi {{.first_name}}", "text": "Hello {{.first_name}}\n"},
		"recipients": []map[string]any{{"address": "c1@rcv.test", "vars": map[string]string{"first_name": "Ann"}}, {"address": "c2@rcv.test", "vars": map[string]string{"first_name": "Bob"}}}}))
	if code != 201 {
		t.Fatalf("campaign: HTTP %d %s", code, b)
	}
	n += 2
	waitFor(t, 30*time.Second, "every recipient's message at the receiver", func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.body) == n
	})
	_ = p

	for _, rcpt := range []string{"7bit1@rcv.test", "dots2@rcv.test", "long3@rcv2.test", "utf81@rcv.test", "blank2@rcv.test", "api@rcv.test", "c1@rcv.test", "c2@rcv.test"} {
		_, msg := got.get(rcpt)
		if msg == "" {
			t.Fatalf("%s: nothing received", rcpt)
		}
		vs := verifyAtReceiver(t, w, msg)
		if len(vs) != 2 {
			t.Fatalf("%s: %d signatures, want RSA and Ed25519", rcpt, len(vs))
		}
		for _, v := range vs {
			if v.Err != nil || v.Domain != "example.test" {
				t.Errorf("%s: signature d=%s: %v", rcpt, v.Domain, v.Err)
			}
		}
		// The same message with its body changed in transit fails.
		tampered := strings.Replace(msg, "\r\n\r\n", "\r\n\r\nX", 1)
		for _, v := range verifyAtReceiver(t, w, tampered) {
			if v.Err == nil {
				t.Errorf("%s: a changed body still verifies", rcpt)
			}
		}
	}
	// A relayed message with three recipients over two transactions is
	// signed once: both transactions carry the same signature.
	_, a := got.get("dots1@rcv.test")
	_, c := got.get("dots3@rcv2.test")
	if sig := func(s string) string { i := strings.Index(s, "\r\n\r\n"); return s[:i] }; sig(a) != sig(c) {
		t.Errorf("the relayed message was signed per transaction:\n%s\n---\n%s", sig(a), sig(c))
	}
	// The delivery log names the signing domain and selector.
	waitFor(t, 5*time.Second, "deliveries logged", func() bool { return countType(h.records(), events.Delivery) >= n })
	for _, r := range h.records() {
		if r.Type == events.Delivery && (!strings.Contains(r.Detail, "d=example.test s=rsa1") || !strings.Contains(r.Detail, "s=ed1")) {
			t.Fatalf("delivery record without the signature: %+v", r)
		}
	}
}

// Mail of a domain without a key leaves unsigned, with the reason in the
// delivery log; with a default signing domain it is signed by it and the
// log says it is not aligned.
func TestDKIMUnsignedAndThirdParty(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	got := newCaptured()
	p, err := w.AddProvider(sim.Behavior{Name: "rcv", BodyHook: got.hook}, []string{"rcv.test"}, "mx.rcv.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := signingKey(t, w, dir, "rsa", "esp.test", "s1")
	h := newHarness(t, w, func(c *config.Config) { c.DKIM = []config.DKIM{k}; c.ApplyDefaults() })
	msg := "From: a@other.test\r\nTo: u1@rcv.test\r\nSubject: x\r\n\r\nbody\r\n"
	if err := h.send("a@other.test", []string{"u1@rcv.test"}, msg); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, p, 1, 20*time.Second)
	if _, m := got.get("u1@rcv.test"); strings.Contains(m, "DKIM-Signature") {
		t.Fatal("signed without a key for its domain")
	}
	waitFor(t, 5*time.Second, "delivery logged", func() bool { return countType(h.records(), events.Delivery) == 1 })
	for _, r := range h.records() {
		if r.Type == events.Delivery && !strings.Contains(r.Detail, "unsigned: no_key") {
			t.Fatalf("no unsigned reason: %+v", r)
		}
	}
	// With [dkim_default] domain = esp.test: a third-party signature.
	cfg := *h.cfg
	cfg.DKIMDefault.Domain = "esp.test"
	if err := h.m.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := h.send("a@other.test", []string{"u2@rcv.test"}, strings.Replace(msg, "u1@", "u2@", 1)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, p, 2, 20*time.Second)
	_, m := got.get("u2@rcv.test")
	vs := verifyAtReceiver(t, w, m)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "esp.test" {
		t.Fatalf("third-party signature: %+v", vs)
	}
	waitFor(t, 5*time.Second, "second delivery logged", func() bool { return countType(h.records(), events.Delivery) == 2 })
	found := false
	for _, r := range h.records() {
		if r.Type == events.Delivery && strings.Contains(r.Detail, "third-party: not aligned with other.test") {
			found = true
		}
	}
	if !found {
		t.Fatal("the delivery log does not say the signature is not aligned")
	}
	// The per-domain status the API shows: one unsigned, one third-party.
	ds := h.m.DKIMStatus()
	if len(ds) != 1 || ds[0].Domain != "other.test" || ds[0].Status != "mixed" || ds[0].LastHour.ThirdParty != 1 ||
		ds[0].LastHour.Unsigned["no_key"] != 1 || ds[0].LastHour.Signed != 0 || !strings.Contains(ds[0].SignedBy, "d=esp.test") {
		t.Errorf("DKIM status by domain: %+v", ds)
	}
}
