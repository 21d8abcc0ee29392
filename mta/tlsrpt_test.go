package mta_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// TestTLSReports: outcomes of real STARTTLS sessions (a success, a server
// without STARTTLS, a certificate that tls = verify refuses) are
// counted per recipient domain, survive a restart, show in the API and the
// metrics, and the daily job mails the report (RFC 8460 §5.3) to the rua of
// the one domain that publishes a TLSRPT record, through Penstock itself.
func TestTLSReports(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ok, err := w.AddProvider(sim.Behavior{Name: "tlsok", STARTTLS: true}, []string{"tlsok.test"}, "mx.tlsok.test")
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := w.AddProvider(sim.Behavior{Name: "plain"}, []string{"plain.test"}, "mx.plain.test")
	bad, _ := w.AddProvider(sim.Behavior{Name: "badcert", STARTTLS: true}, []string{"badcert.test"}, "mx.badcert.test")
	var mu sync.Mutex
	var reports [][]byte
	collector, _ := w.AddProvider(sim.Behavior{Name: "collector", BodyHook: func(_ string, _ []string, body []byte) {
		mu.Lock()
		reports = append(reports, bytes.Clone(body))
		mu.Unlock()
	}}, []string{"reports.test"}, "mx.reports.test")
	w.DNS.SetTXT("_smtp._tls.tlsok.test", "v=TLSRPTv1; rua=mailto:tls@reports.test")

	verify := rule("verify", "*.badcert.test", "source", 2, 10, 0)
	verify.TLS = "verify"
	h := newHarness(t, w, both(withRules(verify), func(c *config.Config) {
		c.TLSRPT = config.TLSRPT{Enabled: true, Organization: "Penstock Test", Contact: "ops@penstock.test", SendAt: "00:30"}
	}))
	for i, to := range []string{"a@tlsok.test", "b@tlsok.test", "c@plain.test", "d@badcert.test"} {
		if err := h.send("sender@penstock.test", []string{to}, message("sender@penstock.test", to, fmt.Sprint("t", i), 512)); err != nil {
			t.Fatal(err)
		}
	}
	waitDelivered(t, ok, 2, 10*time.Second)
	waitDelivered(t, plain, 1, 10*time.Second)

	byDomain := func() map[string]tlsrpt.PolicyResult {
		var v api.TLSReportsView
		if code := h.api("GET", "/api/v1/tlsrpt", &v); code != 200 {
			t.Fatalf("GET /api/v1/tlsrpt: %d", code)
		}
		out := map[string]tlsrpt.PolicyResult{}
		for _, r := range v.Reports {
			out[r.Domain] = r.Report.Policies[0]
		}
		return out
	}
	waitFor(t, 10*time.Second, "a certificate failure reported", func() bool {
		return byDomain()["badcert.test"].Summary.Failed > 0
	})
	got := byDomain()
	if p := got["tlsok.test"]; p.Summary.Successful < 1 || p.Summary.Failed != 0 || p.Policy.Type != tlsrpt.PolicyNone {
		t.Fatalf("tlsok.test: %+v", p)
	}
	if p := got["plain.test"]; p.Summary.Failed < 1 || p.FailureDetails[0].ResultType != tlsrpt.StartTLSNotSupported ||
		p.FailureDetails[0].ReceivingMXHostname != "mx.plain.test" {
		t.Fatalf("plain.test: %+v", p)
	}
	// The simulator's certificate names "badcert", not the MX host: Go
	// checks the name first.
	if p := got["badcert.test"]; p.FailureDetails[0].ResultType != tlsrpt.CertificateHostMismatch ||
		!strings.HasPrefix(bad.Addrs()[0], p.FailureDetails[0].ReceivingIP+":") || p.Summary.Successful != 0 {
		t.Fatalf("badcert.test: %+v", p)
	}
	for _, r := range h.records() {
		if r.Type == events.Delivery && r.Recipient == "a@tlsok.test" && !strings.HasSuffix(r.TLSInfo, " unverified") {
			t.Fatalf("delivery over a self-signed certificate: tls_info %q", r.TLSInfo)
		}
	}
	if bad.Stats().Delivered != 0 {
		t.Fatal("delivered despite tls = verify and an untrusted certificate")
	}

	resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`penstock_tls_sessions_total{result="success"}`, `penstock_tls_sessions_total{result="certificate-host-mismatch"}`,
		`penstock_tls_sessions_total{result="starttls-not-supported"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// A restart loses nothing: the day's counts come back from the spool.
	before, _ := json.Marshal(got["tlsok.test"])
	h.stop()
	h.start()
	after, _ := json.Marshal(byDomain()["tlsok.test"])
	if string(before) != string(after) {
		t.Fatalf("after restart\n%s\nwant\n%s", after, before)
	}

	// The next day's run mails tlsok.test's report and forgets the domains
	// that asked for none.
	outs := h.m.SendTLSReportsAt(time.Now().Add(24 * time.Hour))
	sent := 0
	for _, o := range outs {
		if o.Domain == "tlsok.test" {
			if o.Err != nil || len(o.Sent) != 1 || o.Sent[0] != "mailto:tls@reports.test" {
				t.Fatalf("tlsok.test: %+v", o)
			}
			sent++
		} else if !o.Dropped {
			t.Fatalf("%s kept though it has no TLSRPT record: %+v", o.Domain, o)
		}
	}
	if sent != 1 {
		t.Fatalf("outcomes %+v", outs)
	}
	waitDelivered(t, collector, 1, 10*time.Second)
	mu.Lock()
	body := reports[0]
	mu.Unlock()
	m, err := mail.ReadMessage(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Header.Get("Subject"); !strings.HasPrefix(s, "Report Domain: tlsok.test Submitter: penstock.test Report-ID: <") {
		t.Fatalf("subject %q", s)
	}
	if m.Header.Get("TLS-Report-Domain") != "tlsok.test" || m.Header.Get("TLS-Report-Submitter") != "penstock.test" ||
		!strings.Contains(m.Header.Get("From"), "tlsrpt@penstock.test") {
		t.Fatalf("headers %v", m.Header)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["report-type"] != "tlsrpt" {
		t.Fatalf("content type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	mr.NextPart()
	att, err := mr.NextPart()
	if err != nil || att.Header.Get("Content-Type") != tlsrpt.ContentType {
		t.Fatalf("attachment: %v %v", err, att)
	}
	b64, _ := io.ReadAll(att)
	gz, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b64)))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := io.ReadAll(zr)
	var rep tlsrpt.Report
	if err := json.Unmarshal(j, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.OrganizationName != "Penstock Test" || rep.ContactInfo != "ops@penstock.test" ||
		rep.Policies[0].Policy.Domain != "tlsok.test" || rep.Policies[0].Summary.Successful < 1 {
		t.Fatalf("report %s", j)
	}
	// The days run are gone (badcert.test, retried, and reports.test, the
	// report's own delivery, record again).
	var v api.TLSReportsView
	h.api("GET", "/api/v1/tlsrpt", &v)
	for _, r := range v.Reports {
		if r.Domain == "tlsok.test" || r.Domain == "plain.test" {
			t.Errorf("still held after the run: %s %s", r.Day, r.Domain)
		}
	}
}
