package mta_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dane"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlspolicy"
)

func simTLSA(r dns.TLSA) sim.TLSARecord {
	return sim.TLSARecord{Usage: r.Usage, Selector: r.Selector, MatchingType: r.MatchingType, Data: r.Data}
}

// daneWorld: dane.test behind mx.dane.test, the MX and TLSA answers
// authenticated (AD), the provider presenting cert. prep edits the
// configuration before the MTA starts.
func daneWorld(t *testing.T, beh sim.Behavior, tlsa func(ca *sim.CA, cert *tls.Certificate) dns.TLSA, dnssec bool,
	prep ...func(*config.Config)) (*harness, *sim.Provider, *outcomes) {
	t.Helper()
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t)
	if beh.Certificate == nil {
		c, err := ca.Leaf([]string{"mx.dane.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		beh.Certificate = &c
	}
	p, err := w.AddProvider(beh, []string{"dane.test"}, "mx.dane.test")
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetAD("dane.test", true)
	w.DNS.SetTLSA("_25._tcp.mx.dane.test", simTLSA(tlsa(ca, beh.Certificate)))
	w.DNS.SetAD("_25._tcp.mx.dane.test", true)
	rep := &outcomes{}
	cfg := testConfig(t, w, t.TempDir())
	cfg.DNS.DNSSEC = dnssec
	for _, f := range prep {
		f(cfg)
	}
	h := &harness{t: t, world: w, cfg: cfg, opts: mta.Options{TLSReport: rep}}
	h.start()
	return h, p, rep
}

func eeRecord(ca *sim.CA, c *tls.Certificate) dns.TLSA {
	return dane.Record(dane.UsageDANEEE, 1, 1, c.Leaf)
}

func taRecord(ca *sim.CA, c *tls.Certificate) dns.TLSA {
	return dane.Record(dane.UsageDANETA, 0, 2, ca.Cert)
}

func TestDANEMatchDelivers(t *testing.T) {
	t.Parallel()
	past := time.Now().Add(-48 * time.Hour)
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	// DANE-EE ignores names and expiry (RFC 7672 §3.1.1).
	odd, err := ca.Leaf([]string{"not-the-mx.example"}, past, past.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		beh  sim.Behavior
		tlsa func(*sim.CA, *tls.Certificate) dns.TLSA
	}{
		{"DANE-EE", sim.Behavior{Name: "dane", STARTTLS: true, Certificate: &odd}, eeRecord},
		{"DANE-TA", sim.Behavior{Name: "dane", STARTTLS: true}, taRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, rep := daneWorld(t, tc.beh, tc.tlsa, true)
			if err := h.send("s@penstock.test", []string{"a@dane.test"}, message("s@penstock.test", "a@dane.test", "dane", 300)); err != nil {
				t.Fatal(err)
			}
			waitDelivered(t, p, 1, 15*time.Second)
			if p.Stats().TLSConns == 0 {
				t.Fatal("no TLS")
			}
			waitFor(t, 5*time.Second, "delivery record", func() bool { return countType(h.records(), events.Delivery) == 1 })
			for _, r := range h.records() {
				if r.Type == events.Delivery && (!strings.Contains(r.Detail, "tls policy dane") || !strings.HasSuffix(r.Site, "|dane") ||
					r.TLSPolicy != "dane enforce" || !strings.HasSuffix(r.TLSInfo, " verified")) {
					t.Fatalf("record does not show DANE: %+v", r)
				}
			}
			if !rep.has(tlspolicy.ResultSuccess, true) {
				t.Fatalf("no success reported: %s", rep)
			}
			var ex queue.Explanation
			h.api("GET", "/api/v1/explain?domain=dane.test", &ex)
			if ex.TLSPolicy == nil || ex.TLSPolicy.Source != "dane" || ex.TLSPolicy.Mode != "enforce" || ex.TLSPolicy.Expires.IsZero() {
				t.Fatalf("explain: %+v", ex.TLSPolicy)
			}
			// The dashboard's API: the policy in force and the host's
			// last outcome, verified by DANE.
			var v api.TLSStatusView
			h.api("GET", "/api/v1/tls", &v)
			if len(v.Domains) != 1 || v.Domains[0].Source != "dane" || v.Domains[0].Expires.IsZero() ||
				len(v.Hosts) != 1 || v.Hosts[0].Host != "mx.dane.test" || !v.Hosts[0].Verified || v.Hosts[0].Policy != "dane enforce" {
				t.Fatalf("GET /api/v1/tls: %+v", v)
			}
		})
	}
}

func TestDANEMismatchDefers(t *testing.T) {
	t.Parallel()
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Leaf([]string{"mx.dane.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wrong := func(*sim.CA, *tls.Certificate) dns.TLSA { return dane.Record(dane.UsageDANEEE, 0, 1, other.Leaf) }
	for _, tc := range []struct {
		name, why string
		beh       sim.Behavior
		bogus     bool // the TLSA lookup fails (SERVFAIL, as for bogus DNSSEC)
	}{
		{"mismatch", "TLSA", sim.Behavior{Name: "dane", STARTTLS: true}, false},
		{"starttls stripped", "STARTTLS", sim.Behavior{Name: "dane"}, false},
		{"tlsa lookup fails", "TLSA lookups", sim.Behavior{Name: "dane", STARTTLS: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, _ := daneWorld(t, tc.beh, wrong, true)
			if tc.bogus {
				h.world.DNS.SetRcode("_25._tcp.mx.dane.test", mdns.RcodeServerFailure)
			}
			if err := h.send("s@penstock.test", []string{"a@dane.test"}, message("s@penstock.test", "a@dane.test", "dane", 300)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 15*time.Second, "deferrals", func() bool { return countType(h.records(), events.TransientFailure) >= 2 })
			for _, r := range h.records() {
				if r.Type == events.TransientFailure && (!strings.Contains(r.Text, "DANE") || !strings.Contains(r.Text, tc.why) ||
					!strings.HasPrefix(r.Status, queue.StatusDANE+": ")) {
					t.Fatalf("record does not say DANE refused: %+v", r)
				}
			}
			// The recipient waits with the DANE status, counted under it,
			// and explain says why.
			var ex queue.Explanation
			waitFor(t, 5*time.Second, "explain status", func() bool {
				h.api("GET", "/api/v1/explain?address=a@dane.test", &ex)
				return len(ex.Recipients) == 1 && ex.Recipients[0].Status == queue.StatusDANE
			})
			if ex.Site == nil || ex.Site.ByStatus[queue.StatusDANE] != 1 || !strings.HasPrefix(ex.Verdict, queue.StatusDANE) ||
				!strings.Contains(ex.Verdict, tc.why) {
				t.Fatalf("explain: verdict %q, site %+v", ex.Verdict, ex.Site)
			}
			series := fmt.Sprintf("penstock_queue_recipients{status=%q} 1", queue.StatusDANE)
			waitFor(t, 5*time.Second, "the metrics series", func() bool {
				resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return strings.Contains(string(b), series)
			})
			if st := p.Stats(); st.Delivered != 0 {
				t.Fatalf("delivered despite a DANE failure: %+v", st)
			}
		})
	}
}

// Without [dns] dnssec the AD bit is not trusted: no DANE, delivered as
// the MX rule says even though the TLSA record does not match.
func TestDANEOffWithoutDNSSEC(t *testing.T) {
	t.Parallel()
	wrong := func(ca *sim.CA, c *tls.Certificate) dns.TLSA {
		return dns.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	}
	h, p, _ := daneWorld(t, sim.Behavior{Name: "dane", STARTTLS: true}, wrong, false)
	if err := h.send("s@penstock.test", []string{"a@dane.test"}, message("s@penstock.test", "a@dane.test", "dane", 300)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, p, 1, 15*time.Second)
}
