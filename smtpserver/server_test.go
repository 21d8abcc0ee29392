package smtpserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestHappyPathPipelined(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{MaxMessageSize: 1 << 20}, acc)
	c := dial(t, addr)
	caps := c.ehlo()
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 1048576", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(caps, "\n"+want+"\n") && !strings.HasSuffix(caps, "\n"+want) {
			t.Errorf("EHLO lacks %s:\n%s", want, caps)
		}
	}
	if strings.Contains(caps, "AUTH") {
		t.Errorf("AUTH offered with no users configured:\n%s", caps)
	}

	// Two transactions in one connection; the second one's commands follow
	// the first one's body in the same write.
	c.send("MAIL FROM:<sender@Example.ORG> BODY=8BITMIME", "RCPT TO:<a@example.com>", "RCPT TO:<b@EXAMPLE.com>",
		"RCPT TO:<a@example.com>", "DATA")
	for range 4 {
		c.expect("250 2.0.0 ")
	}
	c.expect("354 ")
	c.send("Subject: one", "", "..leading dot\nbare LF\rbare CR", ".",
		"MAIL FROM:<>", "RCPT TO:<c@example.net>", "DATA")
	c.expect("250 2.0.0 OK queued as M1")
	c.expect("250 2.0.0 ")
	c.expect("250 2.0.0 ")
	c.expect("354 ")
	c.send("Subject: two", "", "body", ".", "QUIT")
	c.expect("250 2.0.0 OK queued as M2")
	c.expect("221 2.0.0 ")

	got := acc.messages()
	if len(got) != 2 {
		t.Fatalf("accepted %d messages, want 2", len(got))
	}
	m := got[0]
	if m.env.From != "sender@example.org" || strings.Join(m.env.To, ",") != "a@example.com,b@example.com" {
		t.Errorf("envelope %+v", m.env)
	}
	if m.env.Helo != "client.test" || !m.env.Remote.Addr().IsLoopback() || m.env.User != "" || !m.env.Body8Bit || m.env.SMTPUTF8 {
		t.Errorf("envelope %+v", m.env)
	}
	hdr, content, ok := strings.Cut(m.body, "\r\n\t")
	if !ok || !strings.HasPrefix(hdr, "Received: from client.test ([127.0.0.1])") {
		t.Errorf("no Received header first: %q", m.body)
	}
	if !strings.Contains(content, "by mx.penstock.test (Penstock) with ESMTP id ") || strings.Contains(content, "\tfor <") {
		t.Errorf("Received header %q", m.body)
	}
	if want := "Subject: one\r\n\r\n.leading dot\r\nbare LF\r\nbare CR\r\n"; !strings.HasSuffix(m.body, want) {
		t.Errorf("body %q, want it to end with %q", m.body, want)
	}
	if m2 := got[1]; m2.env.From != "" || !strings.Contains(m2.body, "\tfor <c@example.net>;") || m2.env.Body8Bit {
		t.Errorf("second message %+v %q", m2.env, m2.body)
	}
}

func TestAckOnlyAfterAccept(t *testing.T) {
	acc := newBlockingAcceptor()
	_, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.beginData("s@example.org", []string{"r@example.com"})
	c.send("Subject: wait", "", "hi", ".")
	waitChan(t, acc.entered, "Accept to be called")

	// Accept is blocked, so the server cannot have written anything; a
	// short read finds nothing.
	c.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if line, err := c.tp.ReadLine(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("got %q, %v before Accept returned; want nothing", line, err)
	}
	c.conn.SetReadDeadline(time.Now().Add(testDeadline))
	close(acc.release)
	c.expect("250 2.0.0 OK queued as M1")
}

func TestAcceptorErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("disk full"), "451 4.3.0 Temporary local problem, try again later"},
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"}, "554 5.7.1 content refused"},
		{&smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "pretend"}, "451 4.3.0 "},
	} {
		acc := &fakeAcceptor{err: tc.err}
		srv, addr, _ := startServer(t, Config{}, acc)
		c := dial(t, addr)
		c.ehlo()
		if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "x\r\n"); got != tc.want && !strings.HasPrefix(got, tc.want) {
			t.Errorf("Acceptor error %v: reply %q, want %q", tc.err, got, tc.want)
		}
		// The session goes on.
		c.send("NOOP")
		c.expect("250 ")
		if st := srv.Stats(); st.Accepted != 0 {
			t.Errorf("Accepted = %d after a failure", st.Accepted)
		}
	}
}

func TestRelayDenied(t *testing.T) {
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.send("MAIL FROM:<s@example.org>", "RCPT TO:<r@example.com>", "DATA")
	if got := c.reply(); got != "550 5.7.1 relaying denied" {
		t.Fatalf("MAIL: %q, want 550 5.7.1 relaying denied", got)
	}
	c.expect("502 5.5.1 ") // RCPT: no transaction
	c.expect("502 5.5.1 ") // DATA: no recipients
	c.send("MAIL FROM:<>")
	c.expect("550 5.7.1 relaying denied")
	if acc.callCount() != 0 {
		t.Error("Accept called for a denied relay")
	}
	if got := srv.Stats().Rejected[ReasonRelayDenied]; got != 2 {
		t.Errorf("relay_denied = %d, want 2", got)
	}
}

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestAuthAllowsRelay(t *testing.T) {
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Users:           map[string]string{"app": "s3cret"},
	}, acc)

	c := dial(t, addr)
	if caps := c.ehlo(); !strings.Contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("AUTH not offered to a loopback client:\n%s", caps)
	}
	c.send("AUTH PLAIN " + plainIR("app", "wrong"))
	c.expect("535 5.7.8 ")
	c.send("MAIL FROM:<s@example.org>")
	c.expect("550 5.7.1 relaying denied")
	c.send("AUTH PLAIN " + plainIR("app", "s3cret"))
	c.expect("235 2.0.0 ")
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "x\r\n"); got != "250 2.0.0 OK queued as M1" {
		t.Fatalf("DATA after AUTH: %q", got)
	}
	m := acc.messages()[0]
	if m.env.User != "app" || !strings.Contains(m.body, " with ESMTPA id ") {
		t.Errorf("envelope %+v, body %q", m.env, m.body)
	}

	// LOGIN, without an initial response.
	c = dial(t, addr)
	c.ehlo()
	c.send("AUTH LOGIN")
	c.expect("334 " + base64.StdEncoding.EncodeToString([]byte("Username:")))
	c.send(base64.StdEncoding.EncodeToString([]byte("app")))
	c.expect("334 " + base64.StdEncoding.EncodeToString([]byte("Password:")))
	c.send(base64.StdEncoding.EncodeToString([]byte("s3cret")))
	c.expect("235 2.0.0 ")
	c.send("MAIL FROM:<s@example.org>")
	c.expect("250 ")

	// Malformed PLAIN, then repeated failures end the connection.
	c = dial(t, addr)
	c.ehlo()
	c.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("no-nuls")))
	c.expect("501 5.5.2 ")
	for range maxAuthFailures {
		c.send("AUTH PLAIN " + plainIR("app", "guess"))
		c.expect("535 5.7.8 ")
	}
	c.send("AUTH PLAIN " + plainIR("app", "s3cret"))
	c.expect("421 4.7.0 ")
	c.expectEOF()
	if got := srv.Stats().Rejected[ReasonAuthFailed]; got != 1+maxAuthFailures {
		t.Errorf("auth_failed = %d, want %d", got, 1+maxAuthFailures)
	}
}

func TestAuthNotOfferedInClear(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		tls  bool
		want bool
	}{
		{"127.0.0.1", false, true},
		{"::1", false, true},
		{"192.0.2.1", false, false},
		{"192.0.2.1", true, true},
		{"2001:db8::1", false, false},
	} {
		if got := authOfferedTo(netip.MustParseAddr(tc.ip), tc.tls); got != tc.want {
			t.Errorf("authOfferedTo(%s, tls=%v) = %v", tc.ip, tc.tls, got)
		}
	}
}

func TestSizeLimit(t *testing.T) {
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{MaxMessageSize: 1000}, acc)
	c := dial(t, addr)
	if caps := c.ehlo(); !strings.Contains(caps, "SIZE 1000") {
		t.Fatalf("EHLO lacks SIZE 1000:\n%s", caps)
	}
	c.send("MAIL FROM:<s@example.org> SIZE=5000")
	c.expect("552 5.3.4 ")

	big := strings.Repeat(strings.Repeat("x", 98)+"\r\n", 20) // 2000 octets
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, big); got != "552 5.3.4 Message size exceeds fixed maximum message size" {
		t.Fatalf("oversized DATA: %q", got)
	}
	// The rest of the oversized body was drained: the session is in step.
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "small\r\n"); got != "250 2.0.0 OK queued as M1" {
		t.Fatalf("next message: %q", got)
	}
	if got := srv.Stats().Rejected[ReasonTooLarge]; got != 1 {
		t.Errorf("message_too_large = %d", got)
	}
}

func TestLineTooLong(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	got := c.sendMessage("s@example.org", []string{"r@example.com"}, strings.Repeat("x", 5000)+"\r\n")
	if !strings.HasPrefix(got, "500 5.5.0 Message has a line longer than SMTP allows") {
		t.Fatalf("reply %q", got)
	}
	if acc.callCount() != 0 {
		t.Error("Accept called for a broken message")
	}
}

func TestTooManyRecipients(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{MaxRecipients: 2}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.send("MAIL FROM:<s@example.org>", "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>", "DATA")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 ")
	if got := c.reply(); got != "452 4.5.3 Too many recipients" {
		t.Fatalf("third RCPT: %q", got)
	}
	c.expect("354 ")
	c.send("x", ".")
	c.expect("250 2.0.0 OK queued as M1")
	if to := acc.messages()[0].env.To; len(to) != 2 {
		t.Errorf("To = %v", to)
	}
}

func TestMalformedCommands(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{}, acc)
	for _, tc := range []struct {
		name   string
		lines  []string
		expect []string // replies after EHLO; the last is checked
	}{
		{"unknown command", []string{"FROB"}, []string{"500 5.5.2 "}},
		{"MAIL without FROM:", []string{"MAIL <a@b.example>"}, []string{"501 5.5.2 "}},
		{"space in address", []string{"MAIL FROM:<a b@example.org>"}, []string{"501 5.5.2 "}},
		{"empty domain", []string{"MAIL FROM:<a@>"}, []string{"501 5.5.2 "}},
		{"bad sender domain", []string{"MAIL FROM:<a@-x.example>"}, []string{"501 5.1.7 Bad sender address syntax: domain label \"-x\" starts or ends with a hyphen"}},
		{"sender control char", []string{"MAIL FROM:<a\x01b@example.org>"}, []string{"501 5.1.7 "}},
		{"sender trailing dot", []string{"MAIL FROM:<a.@example.org>"}, []string{"501 5.1.7 Bad sender address syntax: local part starts or ends with a dot"}},
		{"bad recipient", []string{"MAIL FROM:<>", "RCPT TO:<r@exa_mple.com>"}, []string{"250 ", "501 5.1.3 Bad recipient address syntax: "}},
		{"null recipient", []string{"MAIL FROM:<>", "RCPT TO:<>"}, []string{"250 ", "501 5.5.2 "}},
		{"long local part", []string{"MAIL FROM:<>", "RCPT TO:<" + strings.Repeat("l", 65) + "@example.com>"}, []string{"250 ", "501 5.1.3 Bad recipient address syntax: local part is longer than 64 octets"}},
		{"long address", []string{"MAIL FROM:<>", "RCPT TO:<r@" + strings.Repeat("a123456789.", 24) + "example>"}, []string{"250 ", "501 5.1.3 Bad recipient address syntax: address is longer than 254 octets"}},
		{"non-ASCII without SMTPUTF8", []string{"MAIL FROM:<>", "RCPT TO:<δοκιμή@example.com>"}, []string{"250 ", "553 5.6.7 "}},
		{"RCPT before MAIL", []string{"RCPT TO:<r@example.com>"}, []string{"502 5.5.1 "}},
		{"nested MAIL", []string{"MAIL FROM:<>", "MAIL FROM:<>"}, []string{"250 ", "503 5.5.1 Nested MAIL command"}},
		{"DATA without RCPT", []string{"MAIL FROM:<>", "DATA"}, []string{"250 ", "502 5.5.1 "}},
		{"DATA with argument", []string{"DATA now"}, []string{"501 5.5.4 "}},
		{"unknown MAIL parameter", []string{"MAIL FROM:<> FROB=1"}, []string{"500 5.5.4 "}},
		{"bad SIZE", []string{"MAIL FROM:<> SIZE=big"}, []string{"501 5.5.4 "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			c.ehlo()
			c.send(tc.lines...)
			for _, want := range tc.expect {
				c.expect(want)
			}
			c.send("QUIT")
			c.expect("221 ")
		})
	}
	if acc.callCount() != 0 {
		t.Error("Accept called")
	}
}

func TestSMTPUTF8(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.send("MAIL FROM:<s@example.org> SMTPUTF8", "RCPT TO:<δοκιμή@Παράδειγμα.δοκιμή>", "DATA")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("354 ")
	c.send("Subject: Grüße", "", "ünïcödé", ".")
	c.expect("250 2.0.0 OK queued as M1")
	m := acc.messages()[0]
	if !m.env.SMTPUTF8 || !m.env.Body8Bit || m.env.To[0] != "δοκιμή@παράδειγμα.δοκιμή" {
		t.Errorf("envelope %+v", m.env)
	}
	if !strings.Contains(m.body, " with UTF8SMTP id ") {
		t.Errorf("Received: %q", m.body)
	}
}

func TestBDAT(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.send("MAIL FROM:<s@example.org>", "RCPT TO:<r@example.com>", "BDAT 6\r\nhello BDAT 7 LAST\r\nworld\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 Continue")
	c.expect("250 2.0.0 OK queued as M1")
	if body := acc.messages()[0].body; !strings.HasSuffix(body, "\r\nhello world\r\n") {
		t.Errorf("body %q", body)
	}
}

// A message in one chunk, BDAT LAST pipelined with MAIL and RCPT as most
// clients send it, arrives as sent (DATA's end marker and dot-started lines
// are data), for a keeping Acceptor and on a BodyBorrower's fast path; the
// second transaction and a DATA one follow on the same connection.
func TestBDATSingleChunk(t *testing.T) {
	one := "Subject: one\r\n\r\n.\r\n..two dots\r\n.leading dot\r\n.\r\nend\r\n"
	two := "Subject: two\r\n\r\n" + strings.Repeat("a line of a message larger than the read buffer\r\n", 1000)
	tx := func(body string) string {
		return fmt.Sprintf("MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.com>\r\nBDAT %d LAST\r\n%s", len(body), body)
	}
	for _, tc := range []struct {
		name string
		acc  interface {
			Acceptor
			messages() []accepted
		}
	}{
		{"keeps", &fakeAcceptor{}},
		{"borrows", &borrowingAcceptor{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, _ := startServer(t, Config{MaxMessageSize: 1 << 20}, tc.acc)
			c := dial(t, addr)
			c.ehlo()
			if _, err := io.WriteString(c.conn, tx(one)+tx(two)); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 2; i++ {
				c.expect("250 ")
				c.expect("250 ")
				c.expect(fmt.Sprintf("250 2.0.0 OK queued as M%d", i))
			}
			if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "Subject: three\r\n\r\nx\r\n"); got != "250 2.0.0 OK queued as M3" {
				t.Fatalf("DATA after BDAT: %q", got)
			}
			got := tc.acc.messages()
			if len(got) != 3 {
				t.Fatalf("accepted %d messages, want 3", len(got))
			}
			for i, want := range []string{one, two} {
				if body := afterReceived(t, got[i].body); body != want {
					t.Errorf("message %d is %.80q, want %.80q", i+1, body, want)
				}
			}
		})
	}
}

// Penstock's client writes MAIL, RCPT, BDAT LAST and the body at once. A
// body line longer than DATA allows (3000 and 70,000 octets) is chunk data
// to go-smtp, not a command line: the session stays in step (the NOOP
// written after it is answered), and the message gets the refusal DATA
// gives it. A line at the limit (the CRLF counted, as for DATA) is taken
// and stored as sent.
func TestBDATPipelinedLongLine(t *testing.T) {
	edge := "Subject: edge\r\n\r\n" + strings.Repeat("z", 1998) + "\r\nend\r\n"
	bodies := []string{
		"Subject: long\r\n\r\n" + strings.Repeat("x", 3000) + "\r\nend\r\n",
		"Subject: longer\r\n\r\n" + strings.Repeat("y", 70000) + "\r\n",
		edge,
	}
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	for i, body := range bodies {
		tx := fmt.Sprintf("MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.com>\r\nBDAT %d LAST\r\n%sNOOP\r\n", len(body), body)
		if _, err := io.WriteString(c.conn, tx); err != nil {
			t.Fatal(err)
		}
		c.expect("250 ")
		c.expect("250 ")
		if body == edge {
			c.expect("250 2.0.0 OK queued as M1")
		} else if got := c.reply(); !strings.HasPrefix(got, "500 5.5.0 Message has a line longer than SMTP allows") {
			t.Fatalf("message %d: %q, want DATA's refusal of a long line", i+1, got)
		}
		c.expect("250 ")
	}
	got := acc.messages()
	if len(got) != 1 {
		t.Fatalf("accepted %d messages, want 1", len(got))
	}
	if body := afterReceived(t, got[0].body); body != edge {
		t.Errorf("stored %d octets, %.60q, want %d", len(body), body, len(edge))
	}
	if n := srv.Stats().Rejected[ReasonLineTooLong]; n != 2 {
		t.Errorf("line_too_long = %d, want 2", n)
	}
}

// A client that goes away inside its one chunk has sent no message: none
// is accepted.
func TestBDATSingleChunkCut(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	if _, err := io.WriteString(c.conn, "MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.com>\r\nBDAT 100 LAST\r\nSubject: cut\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.conn.(*net.TCPConn).CloseWrite()
	c.expect("250 ")
	c.expect("250 ")
	c.expect("554 ")
	c.expectEOF()
	if n := acc.callCount(); n != 0 {
		t.Errorf("Accept called %d times for a cut message", n)
	}
}

func TestMaxConnections(t *testing.T) {
	srv, addr, _ := startServer(t, Config{MaxConnections: 2}, &fakeAcceptor{})
	c1 := dial(t, addr)
	dial(t, addr)
	c3 := dialNoGreeting(t, addr)
	if got := c3.reply(); got != "421 4.7.0 Too many connections" {
		t.Fatalf("third connection: %q", got)
	}
	c3.expectEOF()
	if st := srv.Stats(); st.SessionsOpen != 2 || st.Rejected[ReasonTooManyConnections] != 1 {
		t.Errorf("stats %+v", st)
	}
	// A slot is free again as soon as a session has ended.
	c1.send("QUIT")
	c1.expect("221 ")
	c1.expectEOF()
	dial(t, addr).ehlo()
}

func TestShutdownDrains(t *testing.T) {
	acc := newBlockingAcceptor()
	srv, addr, served := startServer(t, Config{}, acc)
	busy := dial(t, addr)
	busy.ehlo()
	idle := dial(t, addr)
	idle.ehlo()
	busy.send("MAIL FROM:<s@example.org>", "RCPT TO:<r@example.com>", "DATA")
	busy.expect("250 ")
	busy.expect("250 ")
	busy.expect("354 ")
	busy.send("x", ".")
	waitChan(t, acc.entered, "Accept to be called")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	// The idle session is closed with 421 at once.
	idle.expect("421 4.3.2 Service shutting down")
	idle.expectEOF()
	if err := served(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a message was being accepted", err)
	default:
	}
	if conn, err := net.DialTimeout("tcp", addr, testDeadline); err == nil {
		// Listener closed: the dial is refused, or closed without a greeting.
		conn.SetDeadline(time.Now().Add(testDeadline))
		if n, _ := conn.Read(make([]byte, 1)); n != 0 {
			t.Error("new connection served during shutdown")
		}
		conn.Close()
	}

	close(acc.release)
	busy.expect("250 2.0.0 OK queued as M1")
	busy.expect("421 4.3.2 ")
	busy.expectEOF()
	if err := waitChan(t, shut, "Shutdown to return"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if st := srv.Stats(); st.SessionsOpen != 0 || st.Accepted != 1 {
		t.Errorf("stats after shutdown %+v", st)
	}
	if err := srv.Serve(mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	acc := newBlockingAcceptor()
	srv, addr, _ := startServer(t, Config{}, acc)
	inData := dial(t, addr)
	inData.ehlo()
	stalled := dial(t, addr)
	stalled.ehlo()
	stalled.send("MAIL FROM:<s@example.org>")
	stalled.expect("250 ")
	inData.send("MAIL FROM:<s@example.org>", "RCPT TO:<r@example.com>", "DATA")
	inData.expect("250 ")
	inData.expect("250 ")
	inData.expect("354 ")
	inData.send("x", ".")
	waitChan(t, acc.entered, "Accept to be called")

	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	cancel()
	if err := waitChan(t, shut, "Shutdown to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	// Both sessions were cut; neither got a 250.
	for _, c := range []*client{inData, stalled} {
		for {
			line, err := c.tp.ReadLine()
			if err != nil {
				break
			}
			if strings.HasPrefix(line, "250") {
				t.Errorf("got %q after a forced shutdown", line)
			}
		}
	}
	if n := len(acc.messages()); n != 0 {
		t.Errorf("%d messages stored after the Acceptor's context was cancelled", n)
	}
	if st := srv.Stats(); st.SessionsOpen != 0 {
		t.Errorf("SessionsOpen = %d after Shutdown", st.SessionsOpen)
	}
}

func mustListen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// selfSigned makes a certificate for mx.penstock.test.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		DNSNames:              []string{"mx.penstock.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

func TestSTARTTLSAndAuth(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Users:           map[string]string{"app": "s3cret"},
		TLSConfig:       serverTLS,
	}, acc)
	conn, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(testDeadline))
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: "mx.penstock.test", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "app", "s3cret")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("s@example.org", []string{"r@example.com"}, strings.NewReader("Subject: tls\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	m := acc.messages()[0]
	if m.env.User != "app" || !strings.Contains(m.body, " with ESMTPSA id ") {
		t.Errorf("envelope %+v body %q", m.env, m.body)
	}
}

func TestListenAndServeError(t *testing.T) {
	busy := mustListen(t)
	defer busy.Close()
	s, err := New(Config{Hostname: "h", Listen: busy.Addr().String()}, &fakeAcceptor{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ListenAndServe(); err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("ListenAndServe on a busy port: %v", err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr = %v before listening", s.Addr())
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Hostname: "bad host"},
		{Hostname: "h", MaxRecipients: -1},
		{Hostname: "h", MaxMessageSize: 1 << 33},
		{Hostname: "h", Users: map[string]string{"u": ""}},
		{Hostname: "h", AllowedNetworks: []netip.Prefix{{}}},
		{Hostname: "h", MaxConnections: 10, ReservedConnections: 10},
		{Hostname: "h", MaxConnectionsPerClient: -1},
		{Hostname: "h", StressIdleTimeout: -time.Second},
		{Hostname: "h", MaxErrors: -1},
	} {
		if _, err := New(cfg, &fakeAcceptor{}, nil); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{Hostname: "h"}, nil, nil); err == nil {
		t.Error("New without an Acceptor succeeded")
	}
	s, err := New(Config{Hostname: "h", AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, &fakeAcceptor{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !s.relayAllowed(netip.MustParseAddr("10.1.2.3")) || s.relayAllowed(netip.MustParseAddr("11.0.0.1")) {
		t.Error("IPv4-mapped allowed network not applied to IPv4 clients")
	}
}

type panicAcceptor struct{}

func (panicAcceptor) Accept(context.Context, *Envelope, []byte) (string, error) { panic("spool bug") }

func TestAcceptorPanic(t *testing.T) {
	srv, addr, _ := startServer(t, Config{}, panicAcceptor{})
	c := dial(t, addr)
	c.ehlo()
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "x\r\n"); !strings.HasPrefix(got, "421 ") {
		t.Fatalf("reply %q, want 421", got)
	}
	c.expectEOF()
	// The panicked call must not leave Shutdown waiting for it.
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after a panic: %v", err)
	}
}
