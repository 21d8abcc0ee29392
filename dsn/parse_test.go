package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rcpt is the part of a RecipientStatus a test checks; Diagnostic is
// checked by prefix.
type rcpt struct {
	final, action, status string
	code                  int
	remote, diagPrefix    string
}

func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file     string
		kind     Kind
		reporter string
		envID    string
		rcpts    []rcpt
		id       string // IDHeader of the returned headers
	}{
		{file: "postfix.eml", kind: KindDSN, reporter: "mail.example.net", id: "0123456789abcdef",
			rcpts: []rcpt{{"alice@example.org", "failed", "5.1.1", 550, "mx1.example.org",
				"smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown"}}},
		{file: "postfix-multi.eml", kind: KindDSN, reporter: "relay.example.com", envID: "00000000000000aa",
			rcpts: []rcpt{
				{"bob@slow.example", "delayed", "4.4.1", 0, "", "X-Postfix; connect to mx.slow.example[198.51.100.77]:25:"},
				{"carol@full.example", "failed", "5.2.2", 552, "mx.full.example", "smtp; 552-5.2.2 The email"},
			}},
		{file: "gmail.eml", kind: KindDSN, reporter: "googlemail.com", id: "1111222233334444",
			rcpts: []rcpt{{"dave@corp.example", "failed", "5.1.1", 550,
				"aspmx.l.google.com. (2607:f8b0:4864:20::1b, the server for the domain corp.example.)",
				"smtp; 550-5.1.1 The email account"}}},
		{file: "exchange.eml", kind: KindDSN, reporter: "AM0PR01MB1234.eurprd01.prod.exchangelabs.com", id: "abcdefabcdefabcd",
			rcpts: []rcpt{{"erin@contoso.example", "failed", "5.1.10", 550, "",
				"smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound"}}},
		{file: "exim.eml", kind: KindDSN, id: "fedcba9876543210",
			rcpts: []rcpt{{"frank@nowhere.example", "failed", "5.1.1", 550, "mx.nowhere.example",
				"smtp; 550 5.1.1 <frank@nowhere.example>: Recipient address rejected"}}},
		{file: "qmail.eml", kind: KindDSN, id: "0000111122223333",
			rcpts: []rcpt{
				{"grace@oldhost.example", "failed", "5.1.1", 0, "", "X-Text; Sorry, no mailbox here by that name. (#5.1.1)"},
				{"heidi@far.example", "failed", "5.7.1", 550, "", "smtp; 550 5.7.1 <heidi@far.example>: Relay access denied"},
			}},
		{file: "yahoo.eml", kind: KindDSN, id: "9999888877776666",
			rcpts: []rcpt{{"judy@yahoo.example", "failed", "5.0.0", 554, "", "smtp; 554: delivery error: dd This user"}}},
		{file: "sendmail.eml", kind: KindDSN, id: "5555555555555555",
			rcpts: []rcpt{{"kim@legacy.example", "failed", "5.1.1", 550, "", "smtp; 550 5.1.1 <kim@legacy.example>... User unknown)"}}},
		{file: "rfc3464-multi.eml", kind: KindDSN, reporter: "cs.example.edu",
			rcpts: []rcpt{
				{"/G=L/S=Mn/O=Gw/PRMD=Example/ADMD=Tel/C=us/", "failed", "5.0.0", 0, "", "X400; 26 (unknown originator)"},
				{"mno@vnet.example.com", "delayed", "4.0.0", 426, "", "smtp; 426 connection timed out"},
				{"pqr@mail.example.org", "delivered", "2.0.0", 0, "mail.example.org", ""},
			}},
		{file: "truncated-copy.eml", kind: KindDSN, reporter: "mail.example.net", id: "0123456789abcdef",
			rcpts: []rcpt{{"tom@example.org", "failed", "5.2.1", 550, "", "smtp; 550 5.2.1 mailbox disabled"}}},
		{file: "arf.eml", kind: KindARF, reporter: "mail.isp.example", id: "1234123412341234"},
		{file: "autoreply-rfc3834.eml", kind: KindAutoReply},
		{file: "autoreply-exchange.eml", kind: KindAutoReply},
		{file: "autoreply-french.eml", kind: KindAutoReply},
		{file: "autoreply-xautoreply.eml", kind: KindAutoReply},
		{file: "autoreply-outlook-en.eml", kind: KindAutoReply},
		{file: "mdn.eml", kind: KindAutoReply},
		{file: "human-reply.eml", kind: KindUnknown},
	}
	for _, tc := range tests {
		raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		// Mail arrives with CRLF; files are easier to write with LF. Both
		// must give the same result.
		crlf := bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n"))
		for _, v := range []struct {
			name string
			msg  []byte
		}{{"lf", raw}, {"crlf", crlf}} {
			t.Run(tc.file+"/"+v.name, func(t *testing.T) {
				r, err := Parse(v.msg)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if r.Kind != tc.kind {
					t.Fatalf("kind %v, want %v (recipients %+v)", r.Kind, tc.kind, r.Recipients)
				}
				if r.Reporter != tc.reporter {
					t.Errorf("reporter %q, want %q", r.Reporter, tc.reporter)
				}
				if r.EnvelopeID != tc.envID {
					t.Errorf("envelope id %q, want %q", r.EnvelopeID, tc.envID)
				}
				if got := r.OriginalHeader(IDHeader); got != tc.id {
					t.Errorf("returned %s %q, want %q (headers %v)", IDHeader, got, tc.id, r.OriginalHeaders)
				}
				if len(r.Recipients) != len(tc.rcpts) {
					t.Fatalf("%d recipients, want %d: %+v", len(r.Recipients), len(tc.rcpts), r.Recipients)
				}
				for i, w := range tc.rcpts {
					g := r.Recipients[i]
					if g.Final != w.final || g.Action != w.action || g.Status != w.status || g.Code != w.code || g.RemoteMTA != w.remote {
						t.Errorf("recipient %d: got %q %q %q %d %q, want %q %q %q %d %q", i,
							g.Final, g.Action, g.Status, g.Code, g.RemoteMTA, w.final, w.action, w.status, w.code, w.remote)
					}
					if !strings.HasPrefix(g.Diagnostic, w.diagPrefix) || (w.diagPrefix == "" && g.Diagnostic != "") {
						t.Errorf("recipient %d: diagnostic %q, want prefix %q", i, g.Diagnostic, w.diagPrefix)
					}
				}
			})
		}
	}
}

func TestParseDetails(t *testing.T) {
	read := func(name string) *Report {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("arf", func(t *testing.T) {
		r := read("arf.eml")
		f := r.Feedback
		if f == nil {
			t.Fatal("no Feedback")
		}
		want := Feedback{Type: "abuse", UserAgent: "SomeGenerator/1.0", Version: "1",
			OriginalRcptTo:   "user@isp.example",
			OriginalMailFrom: "b+1234123412341234.7.aaaaaaaa@bounce.penstock.example",
			SourceIP:         "192.0.2.1", ReportedDomain: "shop.example"}
		got := *f
		got.ArrivalDate = time.Time{}
		if got != want {
			t.Errorf("feedback\n got %+v\nwant %+v", got, want)
		}
		if f.ArrivalDate.IsZero() || f.ArrivalDate.Year() != 2025 || f.ArrivalDate.Month() != time.March {
			t.Errorf("arrival date %v", f.ArrivalDate)
		}
		if got := r.OriginalHeader("message-id"); got != "8787KJKJ3K4J3K4J3K4J3.mail@shop.example" {
			t.Errorf("returned Message-ID %q", got)
		}
	})
	t.Run("postfix original recipient and subject", func(t *testing.T) {
		r := read("postfix.eml")
		if r.Recipients[0].Original != "alice@example.org" {
			t.Errorf("original %q", r.Recipients[0].Original)
		}
		if r.Subject != "Undelivered Mail Returned to Sender" || !strings.Contains(r.From, "MAILER-DAEMON@mail.example.net") {
			t.Errorf("subject %q from %q", r.Subject, r.From)
		}
	})
	t.Run("gmail folded diagnostic", func(t *testing.T) {
		d := read("gmail.eml").Recipients[0].Diagnostic
		if !strings.Contains(d, "Please try 550-5.1.1 double-checking") || strings.ContainsAny(d, "\r\n") {
			t.Errorf("diagnostic not unfolded: %q", d)
		}
	})
	t.Run("exim returned copy stops heuristics", func(t *testing.T) {
		// sales@shop.example in the returned body must not become a recipient.
		for _, rs := range read("exim.eml").Recipients {
			if rs.Final != "frank@nowhere.example" {
				t.Errorf("unexpected recipient %+v", rs)
			}
		}
	})
	t.Run("exchange decoded subject", func(t *testing.T) {
		if s := read("autoreply-exchange.eml").Subject; s != "Abwesenheitsnotiz: Frühlingsangebot" {
			t.Errorf("subject %q", s)
		}
	})
}

// TestParseHeuristicVariants covers text bounces written inline.
func TestParseHeuristicVariants(t *testing.T) {
	msg := func(hdr, body string) []byte { return []byte(hdr + "\n\n" + body) }
	tests := []struct {
		name  string
		msg   []byte
		kind  Kind
		rcpts []string // final:status
	}{
		{"postfix text bounce", msg("From: MAILER-DAEMON@a.example\nSubject: Undelivered Mail Returned to Sender",
			"<u1@b.example>: host mx.b.example[192.0.2.9] said: 552 5.2.2 mailbox full (in\n    reply to RCPT TO command)\n"),
			KindDSN, []string{"u1@b.example:5.2.2"}},
		{"delay warning", msg("From: MAILER-DAEMON@a.example\nSubject: Warning: message delayed",
			"<u2@b.example>: 451 4.7.1 greylisted, try later\n"),
			KindDSN, []string{"u2@b.example:4.7.1"}},
		{"single address, code in a later paragraph", msg("From: Mail Delivery Subsystem <mailer-daemon@googlemail.example>\nSubject: Delivery Status Notification (Failure)",
			"Delivery to the following recipient failed permanently:\n\n     u3@b.example\n\nTechnical details of permanent failure:\nThe server said: 550 5.1.1 no such user\n"),
			KindDSN, []string{"u3@b.example:5.1.1"}},
		{"X-Failed-Recipients only", msg("From: Mailer-Daemon@a.example\nX-Failed-Recipients: u4@b.example, u5@b.example\nSubject: Mail delivery failed",
			"  u4@b.example\n    Unrouteable address\n"),
			KindDSN, []string{"u4@b.example:5.0.0", "u5@b.example:5.0.0"}},
		{"bounce without addresses", msg("From: MAILER-DAEMON@a.example\nSubject: failure notice",
			"Something went wrong.\n"), KindUnknown, nil},
		{"bounce with auto-submitted wins over auto-reply", msg("From: MAILER-DAEMON@a.example\nAuto-Submitted: auto-replied\nSubject: Mail delivery failed",
			"<u6@b.example>: 550 5.1.1 unknown\n"), KindDSN, []string{"u6@b.example:5.1.1"}},
		{"precedence auto_reply", msg("From: x@b.example\nPrecedence: auto_reply\nSubject: hi", "away"), KindAutoReply, nil},
		{"auto-submitted no is not automatic", msg("From: x@b.example\nAuto-Submitted: no\nSubject: hi", "hello"), KindUnknown, nil},
		{"lotus notes", msg("From: x@b.example\nSubject: AUTO: Jane is out", "away"), KindAutoReply, nil},
		{"IP address is not a status", msg("From: MAILER-DAEMON@a.example\nSubject: Undeliverable",
			"<u7@b.example>: connect to 5.9.12.34 failed: 421 try again\n"), KindDSN, []string{"u7@b.example:4.0.0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != tc.kind {
				t.Fatalf("kind %v, want %v", r.Kind, tc.kind)
			}
			var got []string
			for _, rs := range r.Recipients {
				got = append(got, rs.Final+":"+rs.Status)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.rcpts) {
				t.Errorf("recipients %v, want %v (%+v)", got, tc.rcpts, r.Recipients)
			}
		})
	}
}

// TestParseMalformed: broken input is an error, never a panic, and damage
// after the report part is tolerated.
func TestParseMalformed(t *testing.T) {
	postfix, err := os.ReadFile("testdata/postfix.eml")
	if err != nil {
		t.Fatal(err)
	}
	cut := bytes.Index(postfix, []byte("Content-Type: message/delivery-status"))
	nested := func(depth int) []byte {
		var b bytes.Buffer
		b.WriteString("From: MAILER-DAEMON@a.example\nContent-Type: multipart/mixed; boundary=b0\n\n")
		for i := 1; i <= depth; i++ {
			fmt.Fprintf(&b, "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n", i-1, i)
		}
		return b.Bytes()
	}
	many := func(n int) []byte {
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "X-H%d: v\n", i)
		}
		b.WriteString("Subject: x\n\nbody\n")
		return b.Bytes()
	}
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7919 + i/13)
	}
	tests := []struct {
		name string
		msg  []byte
		want string // substring of the error
	}{
		{"empty", nil, "empty"},
		{"binary garbage", garbage, "header"},
		{"NUL bytes", []byte("\x00\x00\x00\x00\r\n\r\n"), "header"},
		{"huge header", append([]byte("Subject: "+strings.Repeat("x", 600<<10)+"\n\n"), "body"...), "header"},
		{"too many header fields", many(1500), "header fields"},
		{"deep nesting", nested(20), "nested deeper"},
		{"too big", append(bytes.Repeat([]byte("X-A: b\n"), 10), make([]byte, MaxSize)...), "too big"},
		{"status without recipients", []byte("From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a.example\n\n--x--\n"), "no recipient"},
		{"feedback without type", []byte("From: a@b.example\nContent-Type: multipart/report; report-type=feedback-report; boundary=x\n\n--x\nContent-Type: message/feedback-report\n\nUser-Agent: x/1\nVersion: 1\n\n--x--\n"), "Feedback-Type"},
		{"header continuation first", []byte(" folded: first\nSubject: x\n\n"), "header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse(tc.msg)
			if err == nil {
				t.Fatalf("no error; report %+v", r)
			}
			if r != nil {
				t.Errorf("report %+v with error", r)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := Parse(append(bytes.Repeat([]byte("X-A: b\n"), 10), make([]byte, MaxSize)...)); !errors.Is(err, ErrTooBig) {
		t.Errorf("too big: %v is not ErrTooBig", err)
	}

	// Damage before or inside the status part (a cut, a lost boundary
	// parameter) falls back to what can still be read: the status part
	// found by its boundary lines, or the human-readable text.
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"truncated in the delivery-status header", postfix[:cut+20]},
		{"truncated in the delivery-status body", postfix[:cut+80]},
		{"truncated before the report part", postfix[:cut-50]},
		{"missing boundary", []byte("From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n--x--\n")},
		{"wrong boundary", []byte("From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=y\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\nStatus: 5.1.1\n--x--\n")},
		{"boundary folded without indentation", []byte("From: a@b.example\nContent-Type: multipart/report; report-type=delivery-status;\nboundary=\"x\"\n\n--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\nStatus: 5.1.1\n--x--\n")},
	} {
		r, err := Parse(tc.msg)
		if err != nil || r.Kind != KindDSN || len(r.Recipients) != 1 || r.Recipients[0].Status != "5.1.1" {
			t.Errorf("%s: %v %+v", tc.name, err, r)
		}
	}

	// A cut after the status part (no final boundary, copy cut short) is
	// the everyday truncated bounce: the report stands.
	end := bytes.Index(postfix, []byte("Return-Path: <b+"))
	r, err := Parse(postfix[:end+10])
	if err != nil || r.Kind != KindDSN || len(r.Recipients) != 1 {
		t.Errorf("truncated copy: %v %+v", err, r)
	}
}
