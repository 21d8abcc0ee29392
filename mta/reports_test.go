package mta_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/sim"
)

const bounceDomain = "bounces.penstock.test"

// reportWorld is a node with the bounce listener and the VERP return paths
// of n delivered messages, u0@late.test ... u<n-1>@late.test.
func reportWorld(t *testing.T, n int, mutate func(*config.Config)) (*harness, []string) {
	t.Helper()
	w := newWorld(t)
	var mu sync.Mutex
	paths := map[string]string{}
	_, err := w.AddProvider(sim.Behavior{Name: "late", BodyHook: func(from string, rcpts []string, body []byte) {
		mu.Lock()
		paths[rcpts[0]] = from
		mu.Unlock()
	}}, []string{"late.test"}, "mx.late.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.Bounce.Listen = "127.0.0.1:0"
		c.Bounce.Domain = bounceDomain
		c.Bounce.UnparsedMinFree = 0
		if mutate != nil {
			mutate(c)
		}
	})
	out := make([]string, n)
	if n == 0 {
		return h, out
	}
	h.sendMany(n, 1, func(i int) string { return fmt.Sprintf("u%d@late.test", i) })
	waitFor(t, 10*time.Second, "all delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range out {
			out[i] = paths[fmt.Sprintf("u%d@late.test", i)]
		}
		return len(paths) == n
	})
	return h, out
}

// dsnReport is a DSN (RFC 3464) sent to to, reporting each of rcpts failed
// with 550 5.1.1.
func dsnReport(to string, rcpts ...string) string {
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@mx.late.test\r\nTo: " + to + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.late.test\r\n")
	for _, r := range rcpts {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <%s>: mailbox does not exist\r\n", r, r)
	}
	b.WriteString("--B--\r\n")
	return b.String()
}

// arfReport is a feedback-loop complaint (RFC 5965) about rcpt.
func arfReport(from, to, rcpt string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: complaint\r\nMessage-ID: <c-" + rcpt + ">\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n" +
		"--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n" +
		"Original-Rcpt-To: <" + rcpt + ">\r\n\r\n" +
		"--F\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: sender@penstock.test\r\nSubject: m1\r\n\r\n--F--\r\n"
}

// sendFrom sends one message to the bounce listener from a local address.
func sendFrom(local, addr, from string, to []string, body string) error {
	c, err := dialFrom(local, addr)
	if err != nil {
		return err
	}
	return transact(c, from, to, body)
}

// metricsHave fails the test unless /metrics has every line of want.
func metricsHave(t *testing.T, h *harness, want ...string) {
	t.Helper()
	resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if !strings.Contains(string(b), "\n"+w+"\n") {
			t.Errorf("metrics lack %q", w)
		}
	}
}

func quarantined(h *harness) int {
	n := 0
	for _, c := range h.m.Quarantine.Counts() {
		n += c
	}
	return n
}

// tamper changes the first character of a VERP return path's check.
func tamper(rp string) string {
	at := strings.LastIndexByte(rp, '@')
	dot := strings.LastIndexByte(rp[:at], '.')
	c := rp[dot+1]
	repl := byte('a')
	if c == 'a' {
		repl = 'b'
	}
	return rp[:dot+1] + string(repl) + rp[dot+2:]
}

// The attack: a DSN to a VERP address with a tampered check, naming 5,000
// recipients (one of them a real one), used to quarantine most of them. It
// quarantines nobody now and is counted as unverified.
func TestReportForgedVERPQuarantinesNobody(t *testing.T) {
	t.Parallel()
	h, rp := reportWorld(t, 1, nil)
	rcpts := []string{"u0@late.test"}
	for i := 1; i < 5000; i++ {
		rcpts = append(rcpts, fmt.Sprintf("victim%d@late.test", i))
	}
	forged := tamper(rp[0])
	if err := sendSMTP(h.m.BounceAddr(), "", []string{forged}, dsnReport(forged, rcpts...)); err != nil {
		t.Fatalf("forged DSN: %v", err)
	}
	if n := quarantined(h); n != 0 {
		t.Fatalf("a forged DSN quarantined %d addresses", n)
	}
	st := h.m.Reports()
	if st.Ignored["bad_verp"] != 1 || st.Unverified != 1 || len(st.Acted) != 0 {
		t.Fatalf("stats %+v", st)
	}
	metricsHave(t, h, `penstock_reports_total{outcome="ignored",reason="bad_verp"} 1`)
}

// The attack: a DSN to postmaster@ of the bounce domain. Nobody is
// quarantined; the report is counted and listed by GET /api/v1/bounces.
func TestReportToPostmasterCounted(t *testing.T) {
	t.Parallel()
	h, _ := reportWorld(t, 1, nil)
	to := "postmaster@" + bounceDomain
	if err := sendSMTP(h.m.BounceAddr(), "", []string{to}, dsnReport(to, "u0@late.test", "x@late.test")); err != nil {
		t.Fatalf("DSN to postmaster: %v", err)
	}
	if n := quarantined(h); n != 0 {
		t.Fatalf("a DSN to postmaster@ quarantined %d addresses", n)
	}
	var res struct {
		Reports struct {
			Unverified uint64            `json:"unverified"`
			Ignored    map[string]uint64 `json:"ignored"`
			Recent     []struct {
				Reason, To string
				Named      int
			} `json:"recent_unverified"`
		} `json:"reports"`
	}
	if code := h.api("GET", "/api/v1/bounces", &res); code != 200 {
		t.Fatalf("GET /api/v1/bounces: %d", code)
	}
	r := res.Reports
	if r.Unverified != 1 || r.Ignored["no_verp"] != 1 || len(r.Recent) != 1 || r.Recent[0].To != to || r.Recent[0].Named != 2 {
		t.Fatalf("unverified reports in the API: %+v", r)
	}
}

// A valid VERP DSN acts on its own recipient only: the other addresses in
// its body are ignored. When the body's Final-Recipient differs (the site
// forwarded) and the Original-Recipient is ours, the VERP one is acted on.
func TestReportVERPActsOnItsRecipientOnly(t *testing.T) {
	t.Parallel()
	h, rp := reportWorld(t, 3, nil)
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp[0]},
		dsnReport(rp[0], "u1@late.test", "u0@late.test", "x1@late.test", "x2@late.test")); err != nil {
		t.Fatal(err)
	}
	if e, _ := h.m.Quarantine.Get("u0@late.test"); e.Status != quarantine.Quarantined {
		t.Fatalf("the VERP recipient: %+v", e)
	}
	if n := quarantined(h); n != 1 {
		t.Fatalf("%d addresses quarantined, want only the VERP recipient", n)
	}
	// A DSN to u2's return path that names only someone else acts on
	// nobody: the body cannot move it to another address.
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp[2]}, dsnReport(rp[2], "u1@late.test")); err != nil {
		t.Fatal(err)
	}
	fwd := strings.Replace(dsnReport(rp[1], "u1.forwarded@elsewhere.test"), "Action: failed", "Original-Recipient: rfc822; u1@late.test\r\nAction: failed", 1)
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp[1]}, fwd); err != nil {
		t.Fatal(err)
	}
	if e, _ := h.m.Quarantine.Get("u1@late.test"); e.Status != quarantine.Quarantined {
		t.Fatalf("the forwarded VERP recipient: %+v", e)
	}
	if n := quarantined(h); n != 2 {
		t.Fatalf("%d addresses quarantined, want u0 and u1", n)
	}
	st := h.m.Reports()
	if st.Acted["verp"] != 2 || st.Ignored["bad_verp"] != 1 || st.ExtraRecipients != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// An ARF complaint without VERP denylists nobody, but from a trusted
// reporter network it does.
func TestReportComplaintTrustedNetwork(t *testing.T) {
	t.Parallel()
	h, _ := reportWorld(t, 0, func(c *config.Config) { c.Bounce.TrustedReporters = []string{"127.0.0.2/32"} })
	to := "fbl@" + bounceDomain
	if err := sendFrom("127.0.0.1", h.m.BounceAddr(), "", []string{to}, arfReport("fbl@isp.test", to, "a@late.test")); err != nil {
		t.Fatal(err)
	}
	if n := quarantined(h); n != 0 {
		t.Fatalf("an untrusted complaint changed %d entries", n)
	}
	if err := sendFrom("127.0.0.2", h.m.BounceAddr(), "", []string{to}, arfReport("fbl@isp.test", to, "b@late.test")); err != nil {
		t.Fatal(err)
	}
	if e, _ := h.m.Quarantine.Get("b@late.test"); e.Status != quarantine.Denylisted {
		t.Fatalf("complaint from a trusted network: %+v", e)
	}
	if _, ok := h.m.Quarantine.Get("a@late.test"); ok {
		t.Fatal("the untrusted complaint's address is in the quarantine")
	}
	st := h.m.Reports()
	if st.Acted["trusted_network"] != 1 || st.Ignored["no_verp"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// signARF signs a complaint with a DKIM key (RFC 6376, ed25519 per RFC
// 8463) for domain.
func signARF(t *testing.T, msg, domain string, key ed25519.PrivateKey) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "s1", Signer: key,
		HeaderKeys: []string{"From", "To", "Subject", "Message-ID", "Content-Type", "MIME-Version"}})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func dkimKey(t *testing.T, w *sim.World, domain string) ed25519.PrivateKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetTXT("s1._domainkey."+domain, "v=DKIM1; k=ed25519; p="+base64.StdEncoding.EncodeToString(pub))
	return priv
}

// A complaint DKIM-signed by a trusted domain acts; unsigned, signed by
// another domain, or altered after signing, it does not.
func TestReportComplaintTrustedDKIM(t *testing.T) {
	t.Parallel()
	h, _ := reportWorld(t, 0, func(c *config.Config) { c.Bounce.TrustedReporters = []string{"fbl.test"} })
	good, evil := dkimKey(t, h.world, "fbl.test"), dkimKey(t, h.world, "evil.test")
	to := "fbl@" + bounceDomain
	send := func(body string) {
		t.Helper()
		if err := sendSMTP(h.m.BounceAddr(), "", []string{to}, body); err != nil {
			t.Fatal(err)
		}
	}
	send(arfReport("fbl@fbl.test", to, "unsigned@late.test"))
	send(signARF(t, arfReport("fbl@evil.test", to, "other@late.test"), "evil.test", evil))
	forged := strings.Replace(signARF(t, arfReport("fbl@fbl.test", to, "orig@late.test"), "fbl.test", good),
		"<orig@late.test>", "<forged@late.test>", 1)
	send(forged)
	if n := quarantined(h); n != 0 {
		t.Fatalf("unsigned or forged complaints changed %d entries", n)
	}
	send(signARF(t, arfReport("fbl@fbl.test", to, "signed@late.test"), "fbl.test", good))
	if e, _ := h.m.Quarantine.Get("signed@late.test"); e.Status != quarantine.Denylisted {
		t.Fatalf("complaint signed by the trusted domain: %+v", e)
	}
	if n := quarantined(h); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
	st := h.m.Reports()
	if st.Acted["trusted_dkim"] != 1 || st.Ignored["no_verp"] != 1 || st.Ignored["untrusted"] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// The attack: junk sent to the listener filled log_dir without bound. Kept
// reports stay within unparsed_max_files and unparsed_max_bytes, the oldest
// removed first; a report over max_report_size is refused with 552.
func TestReportJunkKeptWithinBounds(t *testing.T) {
	t.Parallel()
	h, _ := reportWorld(t, 0, func(c *config.Config) {
		c.Bounce.UnparsedMaxFiles = 5
		c.Bounce.UnparsedMaxBytes = 50_000
		c.Bounce.MaxReportSize = 64 << 10
	})
	to := []string{"postmaster@" + bounceDomain}
	for i := 0; i < 12; i++ {
		junk := fmt.Sprintf("Subject: junk-%02d\r\n\r\n%s", i, strings.Repeat(strings.Repeat("j", 98)+"\r\n", 120))
		if err := sendSMTP(h.m.BounceAddr(), "", to, junk); err != nil {
			t.Fatalf("junk %d: %v", i, err)
		}
	}
	dir := filepath.Join(h.cfg.Server.LogDir, "unparsed-reports")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	var subjects []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		total += int64(len(b))
		if k := bytes.Index(b, []byte("junk-")); k >= 0 {
			subjects = append(subjects, string(b[k:k+7]))
		}
	}
	sort.Strings(subjects)
	t.Logf("12 junk reports of ~12 kB: %d files, %d bytes kept", len(ents), total)
	if len(ents) > 5 || total > 50_000 || len(ents) == 0 {
		t.Fatalf("%d files, %d bytes kept: bounds are 5 files, 50000 bytes", len(ents), total)
	}
	if subjects[len(subjects)-1] != "junk-11" || subjects[0] != fmt.Sprintf("junk-%02d", 12-len(subjects)) {
		t.Fatalf("kept %v: want the newest", subjects)
	}
	st := h.m.Reports()
	if st.KeptDropped != uint64(12-len(ents)) || st.Kept != 12 || st.KeptFiles != len(ents) {
		t.Fatalf("stats %+v", st)
	}
	metricsHave(t, h, fmt.Sprintf("penstock_reports_kept_dropped_total %d", 12-len(ents)),
		`penstock_reports_total{outcome="ignored",reason="not_a_report"} 12`)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("b", 998)+"\r\n", 80)
	if err := sendSMTP(h.m.BounceAddr(), "", to, big); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("report over max_report_size: %v, want 552", err)
	}
}

// The per-network rate refuses the excess with a temporary 450, for the
// whole /24; a trusted reporter network is not limited.
func TestReportRatePerNetwork(t *testing.T) {
	t.Parallel()
	h, _ := reportWorld(t, 0, func(c *config.Config) {
		c.Bounce.ReportsPerMinute = 3
		c.Bounce.TrustedReporters = []string{"127.0.0.3/32"}
	})
	to := []string{"postmaster@" + bounceDomain}
	body := "Subject: hello\r\n\r\nnot a report\r\n"
	for i := 0; i < 3; i++ {
		if err := sendFrom("127.0.0.1", h.m.BounceAddr(), "", to, body); err != nil {
			t.Fatalf("report %d within the rate: %v", i, err)
		}
	}
	for _, local := range []string{"127.0.0.1", "127.0.0.2"} {
		if err := sendFrom(local, h.m.BounceAddr(), "", to, body); err == nil || !strings.Contains(err.Error(), "450") {
			t.Fatalf("report from %s beyond the rate: %v, want 450", local, err)
		}
	}
	for i := 0; i < 5; i++ {
		if err := sendFrom("127.0.0.3", h.m.BounceAddr(), "", to, body); err != nil {
			t.Fatalf("trusted reporter %d: %v", i, err)
		}
	}
	if st := h.m.Reports(); st.Refused["rate"] != 2 {
		t.Fatalf("stats %+v", st)
	}
	metricsHave(t, h, `penstock_reports_refused_total{reason="rate"} 2`)
}
