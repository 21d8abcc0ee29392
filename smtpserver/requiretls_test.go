package smtpserver

import (
	"crypto/tls"
	"net/textproto"
	"strings"
	"testing"
)

// REQUIRETLS (RFC 8689 §4.1) is advertised and taken only over TLS, and the
// envelope carries it to the Acceptor.
func TestREQUIRETLSOnlyOverTLS(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{TLSConfig: serverTLS}, acc)
	c := dial(t, addr)
	if ehlo := c.ehlo(); strings.Contains(ehlo, "REQUIRETLS") {
		t.Fatalf("REQUIRETLS advertised in clear text: %q", ehlo)
	}
	c.send("MAIL FROM:<s@example.org> REQUIRETLS")
	c.expect("530 5.7.10 ")
	c.send("STARTTLS")
	c.expect("220 ")
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.penstock.test", RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, tp: textproto.NewConn(tc)}
	if ehlo := c.ehlo(); !strings.Contains(ehlo, "REQUIRETLS") {
		t.Fatalf("REQUIRETLS not advertised over TLS: %q", ehlo)
	}
	c.send("MAIL FROM:<s@example.org> REQUIRETLS")
	c.expect("250 ")
	c.send("RCPT TO:<r@example.com>")
	c.expect("250 ")
	c.send("DATA")
	c.expect("354 ")
	c.send("Subject: x\r\n\r\nhi\r\n.")
	c.expect("250 ")
	// The next transaction, without the parameter, does not require TLS.
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "Subject: y\r\n\r\nhi\r\n"); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("second message: %q", got)
	}
	msgs := acc.messages()
	if len(msgs) != 2 || !msgs[0].env.RequireTLS || msgs[1].env.RequireTLS {
		t.Fatalf("envelopes: %+v", msgs)
	}
}
