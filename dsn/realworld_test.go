package dsn

import (
	"strings"
	"testing"
)

// lf joins lines with LF.
func lf(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// report is a minimal multipart/report around a text part and a status
// part, with the given line end.
func report(text, status, eol string) []byte {
	s := strings.Join([]string{
		"From: MAILER-DAEMON@mx.example.net",
		"To: sender@example.com",
		"Subject: Undelivered Mail Returned to Sender",
		"MIME-Version: 1.0",
		`Content-Type: multipart/report; report-type=delivery-status; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain",
		"",
		text,
		"--b1",
		"Content-Type: message/delivery-status",
		"",
		status,
		"--b1--",
		"",
	}, "\n")
	return []byte(strings.ReplaceAll(s, "\n", eol))
}

func parseOne(t *testing.T, msg []byte) *Report {
	t.Helper()
	r, err := Parse(msg)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return r
}

func wantRcpt(t *testing.T, r *Report, addr, status string, code int) RecipientStatus {
	t.Helper()
	if r.Kind != KindDSN {
		t.Fatalf("kind %v, want dsn (report %+v)", r.Kind, r)
	}
	for _, rs := range r.Recipients {
		if strings.EqualFold(rs.Final, addr) {
			if rs.Status != status || rs.Code != code {
				t.Errorf("%s: status %q code %d, want %q %d (diagnostic %q)", addr, rs.Status, rs.Code, status, code, rs.Diagnostic)
			}
			return rs
		}
	}
	t.Fatalf("no recipient %s in %+v", addr, r.Recipients)
	return RecipientStatus{}
}

// Each case is one way real MTAs broke the parser; before the fix the
// recipient, status or code came out wrong or not at all.
func TestParseRealWorldShapes(t *testing.T) {
	status := "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; rcpt@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 user unknown"

	t.Run("mbox From line", func(t *testing.T) {
		msg := append([]byte("From MAILER-DAEMON Thu Apr 29 23:34:45 2010\n"), report("x", status, "\n")...)
		wantRcpt(t, parseOne(t, msg), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("CR-only line ends", func(t *testing.T) {
		wantRcpt(t, parseOne(t, report("x", status, "\r")), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("CRLF", func(t *testing.T) {
		wantRcpt(t, parseOne(t, report("x", status, "\r\n")), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("lone CRs inside CRLF text", func(t *testing.T) {
		text := "a@example.org: 550 5.1.1 <a@example.org>: User unknown\rb@example.org: 552 5.2.2 <b@example.org>: Mailbox full"
		msg := lf("From: MAILER-DAEMON@mx.example.net", "Subject: Delivery status notification: failed", "", text)
		r := parseOne(t, msg)
		wantRcpt(t, r, "a@example.org", "5.1.1", 550)
		b := wantRcpt(t, r, "b@example.org", "5.2.2", 552)
		if strings.Contains(b.Diagnostic, "User unknown") {
			t.Errorf("b's diagnostic took a's text: %q", b.Diagnostic)
		}
	})
	t.Run("truncated multipart: text part read", func(t *testing.T) {
		msg := report("<rcpt@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <rcpt@example.org>: Recipient address rejected: User unknown", "", "\n")
		msg = msg[:strings.Index(string(msg), "Content-Type: message/delivery-status")+10]
		wantRcpt(t, parseOne(t, msg), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("boundary folded without indentation", func(t *testing.T) {
		msg := []byte(strings.Replace(string(report("x", status, "\n")), `report-type=delivery-status; boundary="b1"`, "report-type=delivery-status;\nboundary=\"b1\"", 1))
		wantRcpt(t, parseOne(t, msg), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("status part without recipient group, text names it", func(t *testing.T) {
		msg := report("<rcpt@example.org>: host mx.example.org said: 550 5.1.1 User unknown", "Reporting-MTA: dns; mx.example.net\nArrival-Date: Thu, 29 Apr 2010 23:34:45 +0900", "\n")
		wantRcpt(t, parseOne(t, msg), "rcpt@example.org", "5.1.1", 550)
	})
	t.Run("groups without blank lines", func(t *testing.T) {
		st := "Reporting-MTA: dns; mx.example.net\nFinal-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.2.2\nDiagnostic-Code: smtp; 552 5.2.2 Mailbox Full\nFinal-Recipient: rfc822; b@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User Unknown"
		r := parseOne(t, report("x", st, "\n"))
		wantRcpt(t, r, "a@example.org", "5.2.2", 552)
		wantRcpt(t, r, "b@example.org", "5.1.1", 550)
		if r.Reporter != "mx.example.net" {
			t.Errorf("reporter %q", r.Reporter)
		}
	})
	t.Run("folded diagnostic unfolds to single spaces", func(t *testing.T) {
		st := "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <a@example.org>: Recipient address\n    rejected: User unknown"
		rs := wantRcpt(t, parseOne(t, report("x", st, "\n")), "a@example.org", "5.1.1", 550)
		if !strings.Contains(rs.Diagnostic, "Recipient address rejected: User unknown") {
			t.Errorf("diagnostic %q", rs.Diagnostic)
		}
	})
	t.Run("x.0.0 Status gives way to the diagnostic", func(t *testing.T) {
		st := "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 5.7.1 Fix reverse DNS for 192.0.2.2"
		wantRcpt(t, parseOne(t, report("x", st, "\n")), "a@example.org", "5.7.1", 550)
	})
	t.Run("greeting before the reply", func(t *testing.T) {
		st := "Final-Recipient: rfc822; a@example.org\nAction: delayed\nStatus: 4.0.0\nDiagnostic-Code: smtp; 220-mx.example.org ESMTP 421 4.2.1 Service refused, please try later"
		wantRcpt(t, parseOne(t, report("x", st, "\n")), "a@example.org", "4.2.1", 421)
	})
	t.Run("IPv6 fragment is no code", func(t *testing.T) {
		st := "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: X-Postfix; connect to mx.example.org 2001:db8::220 port 25: Connection refused"
		wantRcpt(t, parseOne(t, report("x", st, "\n")), "a@example.org", "5.0.0", 0)
	})
	t.Run("the permanent reply of a transcript, not the 503 after it", func(t *testing.T) {
		msg := lf("From: MAILER-DAEMON@mx.example.net", "Subject: Returned mail: see transcript for details", "",
			"<a@example.org>... 450 busy - please try later", "<<< 551 not our customer", ">>> DATA", "<<< 503 need RCPT command [data]")
		wantRcpt(t, parseOne(t, msg), "a@example.org", "5.0.0", 551)
	})
	t.Run("X-Failed-Recipients with the code below a codeless block", func(t *testing.T) {
		msg := lf("From: Mail Delivery System <MAILER-DAEMON@mx.example.net>", "Subject: Mail delivery failed", "X-Failed-Recipients: a@example.org", "",
			"A message that you sent could not be delivered to one or more of its", "recipients. The following address(es) failed:", "",
			"  a@example.org", "    SMTP error from remote mail server after RCPT TO:<a@example.org>:", "    host mx.example.org [192.0.2.1]: 553 5.1.1 <a@example.org>:", "    Recipient address rejected: User unknown")
		wantRcpt(t, parseOne(t, msg), "a@example.org", "5.1.1", 553)
	})
	t.Run("address mid-sentence, no code", func(t *testing.T) {
		msg := lf("From: MAILER-DAEMON <>", "To: sender@example.com", "Subject: Mail delivery failed", "",
			"This is the mail agent at mx.example.com.", "", "There was an error delivering your mail to <a@example.org>.", "",
			"Could not deliver for the last 432000 seconds. Giving up.")
		rs := wantRcpt(t, parseOne(t, msg), "a@example.org", "5.0.0", 0)
		if rs.DiagnosticText() == "" || !strings.Contains(rs.DiagnosticText(), "Giving up") {
			t.Errorf("diagnostic %q", rs.Diagnostic)
		}
	})
	t.Run("bounce from mailer-daemon without domain, auto-submitted", func(t *testing.T) {
		msg := lf("From: mailer-daemon", "Subject: There was an error sending your mail", "Auto-Submitted: auto-replied", "",
			"The following recipient(s) could not be reached:", "", "<a@example.org>: 550 5.1.1 User unknown")
		wantRcpt(t, parseOne(t, msg), "a@example.org", "5.1.1", 550)
	})
	t.Run("status fields inside the text", func(t *testing.T) {
		msg := lf("From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>", "Subject: Returned mail", "", "x",
			"Content-Type: message/delivery-status", "", "Reporting-MTA: dns; mx.example.net", "",
			"Final-Recipient: RFC822; a@example.org", "Action: failed", "Status: 4.4.7")
		wantRcpt(t, parseOne(t, msg), "a@example.org", "4.4.7", 0)
	})
	t.Run("bounce forwarded inline, quoted", func(t *testing.T) {
		msg := lf("From: Alice <alice@example.com>", "Subject: Fwd: returned mail", "", "Forward the message.", "",
			"> From: Mail Delivery Subsystem <MAILER-DAEMON>", "> Subject: Returned mail: see transcript for details", ">",
			">    ----- The following addresses had permanent fatal errors -----", "> <a@example.org>",
			">     (reason: 550 5.1.1 <a@example.org>... User unknown)", ">", "> Final-Recipient: RFC822; a@example.org",
			"> Action: failed", "> Status: 5.1.1", "> Diagnostic-Code: SMTP; 550 5.1.1 <a@example.org>... User unknown",
			"> X-Virus-Scanned: ClamAV")
		rs := wantRcpt(t, parseOne(t, msg), "a@example.org", "5.1.1", 550)
		if strings.Contains(rs.Diagnostic, "Virus") {
			t.Errorf("diagnostic runs into the returned headers: %q", rs.Diagnostic)
		}
	})
	t.Run("report forwarded as an attachment", func(t *testing.T) {
		inner := string(report("x", status, "\n"))
		msg := lf("From: helpdesk@example.net", "Subject: Fwd: failure", `Content-Type: multipart/mixed; boundary="o"`, "", "--o",
			"Content-Type: text/plain", "", "see below", "--o", "Content-Type: message/rfc822", "", inner, "--o--")
		wantRcpt(t, parseOne(t, msg), "rcpt@example.org", "5.1.1", 550)
	})
}

// A person forwarding a message as an attachment is no bounce, even though
// a returned copy makes a text a bounce candidate.
func TestParseForwardIsNoBounce(t *testing.T) {
	msg := lf("From: Alice <alice@example.com>", "Subject: Fwd: lunch", `Content-Type: multipart/mixed; boundary="o"`, "", "--o",
		"Content-Type: text/plain", "", "Bob <bob@example.org> wrote this, see attached. 550 people came.", "--o",
		"Content-Type: message/rfc822", "", "From: bob@example.org", "To: alice@example.com", "Subject: lunch", "", "noon?", "--o--")
	if r := parseOne(t, msg); r.Kind != KindUnknown || len(r.Recipients) != 0 {
		t.Fatalf("kind %v recipients %+v", r.Kind, r.Recipients)
	}
}

func TestParseARFWithoutOriginalRcptTo(t *testing.T) {
	msg := lf("From: fbl@isp.example", "Subject: complaint", `Content-Type: multipart/report; report-type=feedback-report; boundary="b"`, "",
		"--b", "Content-Type: text/plain", "", "A complaint", "--b", "Content-Type: message/feedback-report", "",
		"Feedback-Type: abuse", "User-Agent: x/1", "Version: 1", "--b", "Content-Type: message/rfc822", "",
		"From: news@shop.example", "To: Reader <reader@isp.example>", "Subject: offer", "", "body", "--b--")
	r := parseOne(t, msg)
	if r.Kind != KindARF || r.Feedback.OriginalRcptTo != "reader@isp.example" {
		t.Fatalf("kind %v feedback %+v", r.Kind, r.Feedback)
	}
	if got := r.FeedbackRecipients(); len(got) != 1 || got[0] != "reader@isp.example" {
		t.Errorf("FeedbackRecipients %v", got)
	}
}

func TestParseSESNotification(t *testing.T) {
	msg := lf("From: no-reply@sns.example", "Subject: AWS Notification Message", "Content-Type: text/plain", "",
		`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"a@example.org","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"reportingMTA":"dsn; a1.example.net"},"mail":{"source":"s@example.com","headers":[{"name":"From`,
		` ","value":"broken by a fold"}]}}`, "", "--", "unsubscribe footer")
	r := parseOne(t, msg)
	wantRcpt(t, r, "a@example.org", "5.1.1", 550)
	if r.Reporter != "a1.example.net" {
		t.Errorf("reporter %q", r.Reporter)
	}
}

func TestBestCode(t *testing.T) {
	tests := []struct {
		in   string
		code int
		enh  string
	}{
		{"550 5.1.1 user unknown", 550, "5.1.1"},
		{"550-5.1.1 The email account 550-5.1.1 does not exist", 550, "5.1.1"},
		{"host mx said: 554: delivery error: dd This user doesn't have an account", 554, ""},
		{"220-mx.example.org ESMTP 421 4.2.1 refused", 421, "4.2.1"},
		{"450 busy - please try later 551 not our user 503 need RCPT command", 551, ""},
		{"550 5.2.1 disabled 503 5.5.1 RCPT first 550 5.2.1 disabled", 550, "5.2.1"},
		{"connect to [2001:db8::250]:25: Connection refused", 0, ""},
		{"Sorry, I couldn't find a mail exchanger or IP address. (#5.4.4)", 0, "5.4.4"},
		{"RCPT TO:550 5.1.6 <a@example.org>: moved", 550, "5.1.6"},
		{"queued as 192.0.2.250 on port 25", 0, ""},
		{"250 2.1.5 Ok", 0, ""},
	}
	for _, tc := range tests {
		code, enh, _ := bestCode(tc.in)
		if code != tc.code || enh != tc.enh {
			t.Errorf("bestCode(%q) = %d %q, want %d %q", tc.in, code, enh, tc.code, tc.enh)
		}
	}
}
