package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/spool"
)

var day1 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func record(r *Recorder) {
	for range 3 {
		r.Record(Result{Time: day1, PolicyDomain: "Example.COM.", MXHost: "mx1.example.com", ReceivingIP: "192.0.2.1", Success: true})
	}
	for range 2 {
		r.Record(Result{Time: day1, PolicyDomain: "example.com", MXHost: "mx2.example.com.", ReceivingIP: "192.0.2.2",
			SendingIP: "198.51.100.1", FailureType: CertificateExpired, Detail: "x509: certificate has expired"})
	}
	r.Record(Result{Time: day1, PolicyDomain: "example.com", MXHost: "mx2.example.com", ReceivingIP: "192.0.2.3",
		FailureType: StartTLSNotSupported})
	r.Record(Result{Time: day1, PolicyDomain: "other.example", PolicyType: PolicySTS,
		PolicyStrings: []string{"version: STSv1", "mode: enforce"}, PolicyMX: []string{"*.other.example"}, Success: true})
	// The next day: another report.
	r.Record(Result{Time: day1.Add(24 * time.Hour), PolicyDomain: "example.com", Success: true})
}

func TestReportJSON(t *testing.T) {
	r, _ := New(nil, nil)
	record(r)
	reps, err := r.Reports("2026-12-06", "", Org{Name: "Acme", Contact: "tls@acme.example", Submitter: "mta.acme.example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].Domain != "example.com" || reps[1].Domain != "other.example" {
		t.Fatalf("reports %+v", reps)
	}
	j, err := reps[0].JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatal(err)
	}
	want := `{"contact-info":"tls@acme.example","date-range":{"end-datetime":"2026-12-06T23:59:59Z","start-datetime":"2026-12-06T00:00:00Z"},` +
		`"organization-name":"Acme","policies":[{"failure-details":[` +
		`{"additional-information":"x509: certificate has expired","failed-session-count":2,"receiving-ip":"192.0.2.2","receiving-mx-hostname":"mx2.example.com","result-type":"certificate-expired","sending-mta-ip":"198.51.100.1"},` +
		`{"failed-session-count":1,"receiving-ip":"192.0.2.3","receiving-mx-hostname":"mx2.example.com","result-type":"starttls-not-supported"}],` +
		`"policy":{"policy-domain":"example.com","policy-type":"no-policy-found"},` +
		`"summary":{"total-failure-session-count":3,"total-successful-session-count":3}}],` +
		`"report-id":"2026-12-06T00:00:00Z_example.com@mta.acme.example"}`
	norm, _ := json.Marshal(got)
	if string(norm) != want {
		t.Fatalf("report\n got %s\nwant %s", norm, want)
	}
	j2, _ := reps[1].JSON()
	if !strings.Contains(string(j2), `"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: enforce"],"policy-domain":"other.example","mx-host":["*.other.example"]}`) {
		t.Fatalf("sts report %s", j2)
	}
	if c := r.Counts(); c["success"] != 5 || c[CertificateExpired] != 2 || c[StartTLSNotSupported] != 1 {
		t.Fatalf("counts %v", c)
	}
	if d := r.Days(); len(d) != 2 || d[0] != "2026-12-06" || d[1] != "2026-12-07" {
		t.Fatalf("days %v", d)
	}
	if _, err := r.Reports("yesterday", "", Org{}); err == nil {
		t.Fatal("bad day accepted")
	}
}

func TestFailureDetailsBounded(t *testing.T) {
	r, _ := New(nil, nil)
	for i := range maxFailureDetails + 50 {
		r.Record(Result{Time: day1, PolicyDomain: "example.com", ReceivingIP: fmt.Sprintf("192.0.2.%d", i%256), MXHost: fmt.Sprint("mx", i)})
	}
	reps, _ := r.Reports("2026-12-06", "example.com", Org{})
	p := reps[0].Policies[0]
	if len(p.FailureDetails) != maxFailureDetails || p.Summary.Failed != maxFailureDetails+50 {
		t.Fatalf("%d details, %d failed", len(p.FailureDetails), p.Summary.Failed)
	}
}

// TestPersisted: the counts survive a restart (Flush, then a new recorder
// over the same spool), and Forget removes a day for good.
func TestPersisted(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(sp.KV(Bucket), nil)
	if err != nil {
		t.Fatal(err)
	}
	record(r)
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	r.Record(Result{Time: day1, PolicyDomain: "example.com", Success: true})
	if err := r.Flush(); err != nil {
		t.Fatal(err)
	}
	before, _ := r.Reports("2026-12-06", "", Org{})
	sp.Close()

	sp, err = spool.Open(dir, spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r2, err := New(sp.KV(Bucket), nil)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := r2.Reports("2026-12-06", "", Org{})
	bj, _ := json.Marshal(before)
	aj, _ := json.Marshal(after)
	if string(bj) != string(aj) || after[0].Policies[0].Summary.Successful != 4 {
		t.Fatalf("after restart\n%s\nwant\n%s", aj, bj)
	}
	if err := r2.Forget("2026-12-06", "example.com"); err != nil {
		t.Fatal(err)
	}
	r3, _ := New(sp.KV(Bucket), nil)
	if reps, _ := r3.Reports("2026-12-06", "", Org{}); len(reps) != 1 || reps[0].Domain != "other.example" {
		t.Fatalf("after Forget: %+v", reps)
	}
}

func TestParseRecord(t *testing.T) {
	rua, err := ParseRecord("v=TLSRPTv1; rua=mailto:tls@example.com, https://r.example.com/tlsrpt ,ftp://x; ext=1")
	if err != nil || len(rua) != 2 || rua[0] != "mailto:tls@example.com" || rua[1] != "https://r.example.com/tlsrpt" {
		t.Fatalf("%v %v", rua, err)
	}
	for _, bad := range []string{"v=TLSRPTv2; rua=mailto:a@b", "v=TLSRPTv1", "v=TLSRPTv1; rua=ftp://x", "rua=mailto:a@b; v=TLSRPTv1"} {
		if _, err := ParseRecord(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{&smtpclient.Error{Command: "STARTTLS", Err: smtpclient.ErrNoSTARTTLS}, StartTLSNotSupported},
		{&smtpclient.Error{Command: "STARTTLS", Err: &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "mx"}}}, CertificateHostMismatch},
		{&smtpclient.Error{Command: "STARTTLS", Err: x509.CertificateInvalidError{Reason: x509.Expired}}, CertificateExpired},
		{&smtpclient.Error{Command: "STARTTLS", Err: x509.UnknownAuthorityError{}}, CertificateNotTrusted},
		{&smtpclient.Error{Command: "STARTTLS", Reply: smtpclient.Reply{Code: 454}}, StartTLSNotSupported},
		{&smtpclient.Error{Command: "TLS", Err: errors.New("remote error: tls: handshake failure")}, ValidationFailure},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// txtResolver answers LookupTXT from a map; the other lookups fail.
type txtResolver map[string][]string

func (r txtResolver) LookupMX(context.Context, string) (dns.MXResult, error) {
	return dns.MXResult{}, &dns.Error{Kind: dns.Temporary}
}
func (r txtResolver) LookupIP(context.Context, string) ([]netip.Addr, error) {
	return nil, &dns.Error{Kind: dns.Temporary}
}
func (r txtResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if name == "_smtp._tls.tempfail.example" {
		return nil, &dns.Error{Kind: dns.Temporary}
	}
	if v, ok := r[name]; ok {
		return v, nil
	}
	return nil, &dns.Error{Kind: dns.NXDomain}
}

// TestSendDue: a finished day's reports go by mail (RFC 8460 §5.3 format)
// and HTTPS POST (§5.4, certificate verified); a domain without a record is
// dropped, one whose lookup failed temporarily is kept for the next run,
// and today is never sent.
func TestSendDue(t *testing.T) {
	var mu sync.Mutex
	var posted [][]byte
	var postType string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		mu.Lock()
		posted = append(posted, b)
		postType = req.Header.Get("Content-Type")
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	res := txtResolver{
		"_smtp._tls.example.com":   {"v=spf1 -all", "v=TLSRPTv1; rua=mailto:tls-reports@example.com," + srv.URL + "/r"},
		"_smtp._tls.other.example": {"v=TLSRPTv1; rua=" + srv.URL + "/other"},
	}
	type sentMail struct {
		from, to string
		msg      []byte
	}
	var mails []sentMail
	s := &Sender{Resolver: res, HTTP: srv.Client(), From: "tlsrpt@mta.acme.example",
		Org: Org{Name: "Acme", Contact: "tls@acme.example", Submitter: "mta.acme.example"},
		Mail: func(_ context.Context, from, to string, msg []byte) error {
			mails = append(mails, sentMail{from, to, msg})
			return nil
		}}
	r, _ := New(nil, nil)
	record(r)
	r.Record(Result{Time: day1, PolicyDomain: "none.example", Success: true})
	r.Record(Result{Time: day1, PolicyDomain: "tempfail.example", Success: true})

	outs := s.SendDue(context.Background(), r, day1.Add(24*time.Hour+time.Hour))
	by := map[string]Outcome{}
	for _, o := range outs {
		by[o.Domain] = o
	}
	if len(outs) != 4 {
		t.Fatalf("outcomes %+v", outs)
	}
	if o := by["example.com"]; o.Err != nil || len(o.Sent) != 2 || o.Dropped {
		t.Fatalf("example.com: %+v", o)
	}
	if o := by["other.example"]; o.Err != nil || len(o.Sent) != 1 {
		t.Fatalf("other.example: %+v", o)
	}
	if o := by["none.example"]; !errors.Is(o.Err, ErrNoRecord) || !o.Dropped {
		t.Fatalf("none.example: %+v", o)
	}
	if o := by["tempfail.example"]; o.Err == nil || o.Dropped {
		t.Fatalf("tempfail.example: %+v", o)
	}
	// Kept: the temporary failure, and today's day.
	if reps, _ := r.Reports("2026-12-06", "", Org{}); len(reps) != 1 || reps[0].Domain != "tempfail.example" {
		t.Fatalf("kept %+v", reps)
	}
	if d := r.Days(); len(d) != 2 || d[1] != "2026-12-07" {
		t.Fatalf("days %v", d)
	}

	// The POST: gzipped JSON of the report.
	if len(posted) != 2 || postType != ContentType {
		t.Fatalf("posted %d, type %q", len(posted), postType)
	}
	checkGzipReport(t, posted[0], "example.com")

	// A server whose certificate the client does not trust gets nothing.
	s.HTTP = &http.Client{Timeout: 10 * time.Second}
	reps, _ := r.Reports("2026-12-07", "example.com", s.Org)
	res["_smtp._tls.example.com"] = []string{"v=TLSRPTv1; rua=" + srv.URL}
	if sent, err := s.Send(context.Background(), reps[0]); err == nil || len(sent) != 0 || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: sent %v, err %v", sent, err)
	}
	if len(posted) != 2 {
		t.Fatal("posted to an untrusted server")
	}

	// The mail: RFC 8460 §5.3.
	if len(mails) != 1 || mails[0].to != "tls-reports@example.com" || mails[0].from != "tlsrpt@mta.acme.example" {
		t.Fatalf("mails %+v", mails)
	}
	m, err := mail.ReadMessage(bytes.NewReader(mails[0].msg))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get("Subject"), "Report Domain: example.com Submitter: mta.acme.example Report-ID: <2026-12-06T00:00:00Z_example.com@mta.acme.example>"; got != want {
		t.Fatalf("subject %q", got)
	}
	if _, err := mail.ParseAddress(strings.Trim(m.Header.Get("Message-ID"), "<>")); err != nil {
		t.Errorf("Message-ID %q: %v", m.Header.Get("Message-ID"), err)
	}
	if m.Header.Get("TLS-Report-Domain") != "example.com" || m.Header.Get("TLS-Report-Submitter") != "mta.acme.example" {
		t.Fatalf("headers %v", m.Header)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("content type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	if _, err := mr.NextPart(); err != nil {
		t.Fatal(err)
	}
	att, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if att.Header.Get("Content-Type") != ContentType {
		t.Fatalf("attachment type %q", att.Header.Get("Content-Type"))
	}
	if fn := att.FileName(); fn != "mta.acme.example!example.com!1796515200!1796601599.json.gz" {
		t.Fatalf("filename %q", fn)
	}
	b64, _ := io.ReadAll(att)
	gz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b64), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	checkGzipReport(t, gz, "example.com")
}

func checkGzipReport(t *testing.T, gz []byte, domain string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	j, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(j, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Policies) != 1 || rep.Policies[0].Policy.Domain != domain || rep.Policies[0].Summary.Successful == 0 {
		t.Fatalf("report %s", j)
	}
}
