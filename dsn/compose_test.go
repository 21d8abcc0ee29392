package dsn

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testCompose() Compose {
	at := time.Date(2025, 3, 3, 10, 0, 0, 0, time.UTC)
	return Compose{
		ReportingMTA: "out1.penstock.example",
		To:           "news@shop.example",
		Arrival:      at.Add(-time.Hour),
		Failed: []Failed{
			{Recipient: "alice@example.org", Status: "5.1.1", Action: "failed",
				Diagnostic: "smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
				RemoteMTA:  "mx1.example.org", LastAttempt: at},
			{Recipient: "bob@example.net", Status: "5.2.2",
				Diagnostic: "552-5.2.2 The email account that you tried to reach is over quota. " + strings.Repeat("Please direct the recipient to the help page. ", 8),
				RemoteMTA:  "mx.example.net", LastAttempt: at.Add(-time.Minute)},
			{Recipient: "carol@example.com", Action: "failed", Diagnostic: "X-Penstock; validity expired after 5 days: connect to mx.example.com: connection refused"},
		},
		OriginalHeaders: []byte("From: News <news@shop.example>\nTo: alice@example.org\nSubject: Spring sale\nMessage-ID: <0123456789abcdef@out1.penstock.example>\nX-Penstock-Id: 0123456789abcdef\n\nbody that must not be copied\n"),
	}
}

func TestComposeRoundTrip(t *testing.T) {
	c := testCompose()
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexByte(bytes.ReplaceAll(b, []byte("\r\n"), nil), '\n'); i >= 0 {
		t.Errorf("bare LF at %d", i)
	}
	for _, l := range strings.Split(string(b), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line of %d bytes (RFC 5322 §2.1.1)", len(l))
		}
	}
	for _, want := range []string{
		"\r\nAuto-Submitted: auto-replied\r\n",
		"\r\nTo: <news@shop.example>\r\n",
		"From: Mail Delivery System <MAILER-DAEMON@out1.penstock.example>\r\n",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: message/delivery-status\r\n",
		"Content-Type: text/rfc822-headers\r\n",
		"\r\nIn-Reply-To: <0123456789abcdef@out1.penstock.example>\r\n",
		"\r\nDate: Mon, 03 Mar 2025 10:00:00 +0000\r\n",
		"Reporting-MTA: dns; out1.penstock.example\r\n",
		"Diagnostic-Code: smtp; 552-5.2.2", // a bare reply gets its type
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if bytes.Contains(b, []byte("body that must not be copied")) {
		t.Error("original body copied")
	}

	r, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Compose.Bytes()): %v\n%s", err, b)
	}
	if r.Kind != KindDSN || r.Reporter != "out1.penstock.example" {
		t.Fatalf("kind %v reporter %q", r.Kind, r.Reporter)
	}
	if r.OriginalHeader(IDHeader) != "0123456789abcdef" {
		t.Errorf("returned headers %v", r.OriginalHeaders)
	}
	if len(r.Recipients) != len(c.Failed) {
		t.Fatalf("%d recipients, want %d", len(r.Recipients), len(c.Failed))
	}
	for i, f := range c.Failed {
		g := r.Recipients[i]
		wantDiag := f.Diagnostic
		if !strings.Contains(wantDiag, ";") {
			wantDiag = "smtp; " + wantDiag
		}
		wantDiag = strings.Join(strings.Fields(wantDiag), " ")
		wantStatus := f.Status
		if wantStatus == "" {
			wantStatus = "5.0.0"
		}
		if g.Final != f.Recipient || g.Status != wantStatus || g.Action != "failed" || g.RemoteMTA != f.RemoteMTA || g.Diagnostic != wantDiag {
			t.Errorf("recipient %d:\n got %+v\nwant %+v (diagnostic %q)", i, g, f, wantDiag)
		}
	}
	if r.Recipients[0].Code != 550 || r.Recipients[1].Code != 552 || r.Recipients[2].Code != 0 {
		t.Errorf("codes %d %d %d", r.Recipients[0].Code, r.Recipients[1].Code, r.Recipients[2].Code)
	}
}

func TestComposeDelayedAndGlobal(t *testing.T) {
	c := Compose{ReportingMTA: "out1.penstock.example", To: "<news@shop.example>", MessageID: "x1@out1.penstock.example",
		Failed: []Failed{{Recipient: "jürgen@例え.example", Action: "delayed", Diagnostic: "smtp; 451 4.7.1 Bitte später"}}}
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: Delayed Mail (still being retried)\r\n", "report-type=global-delivery-status",
		"Final-Recipient: utf-8; jürgen@例え.example", "Message-ID: <x1@out1.penstock.example>\r\n", "To: <news@shop.example>\r\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	r, err := Parse(b)
	if err != nil || len(r.Recipients) != 1 {
		t.Fatalf("%v %+v", err, r)
	}
	if g := r.Recipients[0]; g.Final != "jürgen@例え.example" || g.Status != "4.7.1" || g.Action != "delayed" || g.Code != 451 {
		t.Errorf("%+v", g)
	}
}

func TestComposeRefused(t *testing.T) {
	for _, to := range []string{"", "<>", "  "} {
		c := testCompose()
		c.To = to
		if _, err := c.Bytes(); !errors.Is(err, ErrNullSender) {
			t.Errorf("To %q: %v, want ErrNullSender", to, err)
		}
	}
	bad := []func(*Compose){
		func(c *Compose) { c.ReportingMTA = "" },
		func(c *Compose) { c.Failed = nil },
		func(c *Compose) { c.Failed[0].Recipient = "" },
		func(c *Compose) { c.Failed[0].Recipient = "a@b\r\nBcc: victim@example.com" },
		func(c *Compose) { c.Failed[0].Status = "550" },
		func(c *Compose) { c.Failed[0].Action = "bounced" },
		func(c *Compose) { c.To = "a@b\nBcc: x@y" },
		func(c *Compose) { c.MessageID = "<a b>" },
	}
	for i, f := range bad {
		c := testCompose()
		f(&c)
		if _, err := c.Bytes(); err == nil {
			t.Errorf("case %d accepted", i)
		}
	}
}

// TestComposeInjection: a remote server's reply cannot add fields or parts.
func TestComposeInjection(t *testing.T) {
	c := testCompose()
	c.Failed = []Failed{{Recipient: "a@example.org",
		Diagnostic: "smtp; 550 no\r\nFinal-Recipient: rfc822; forged@example.org\r\n\r\n--boundary\x00\x1b[31m" + strings.Repeat("x", 5000),
		RemoteMTA:  "mx.example.org\r\nX-Evil: 1"}}
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("\r\nFinal-Recipient: rfc822; forged")) || bytes.Contains(b, []byte("\r\nX-Evil")) || bytes.ContainsAny(b, "\x00\x1b") {
		t.Errorf("injection got through:\n%s", b)
	}
	r, err := Parse(b)
	if err != nil || len(r.Recipients) != 1 || r.Recipients[0].Final != "a@example.org" {
		t.Fatalf("%v %+v", err, r)
	}
	if n := len(r.Recipients[0].Diagnostic); n > maxDiagLen {
		t.Errorf("diagnostic of %d bytes", n)
	}
}
