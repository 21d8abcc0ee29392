package smtpserver

import (
	"strings"
	"testing"
)

// TestDataBareCR replays, through a session, bodies with a bare CR (a CR
// not followed by LF, RFC 5321 §2.3.8) where it meets the end of a line or
// a dot-stuffed line. The DATA reader keeps a bare CR as data, so it can
// neither hide the CRLF.CRLF that ends DATA (§4.1.1.4) nor the dot-stuffing
// of the next line (§4.5.2); the session then makes it a line break, as it
// does every bare CR. A NOOP sent in the same write as the body shows the
// session is still in step with the client.
func TestDataBareCR(t *testing.T) {
	for _, tc := range []struct{ name, data, stored string }{
		{"CR before the last CRLF", "a\r\r\n", "a\r\n\r\n"},
		{"CR before CRLF then a stuffed line", "a\r\r\n..b\r\n", "a\r\n\r\n.b\r\n"},
		{"stuffed line starting with a CR", ".\rx\r\n", "\r\nx\r\n"},
		{"stuffed line of a CR alone", ".\r\r\n", "\r\n\r\n"},
		{"CR inside a line", "a\rb\r\n", "a\r\nb\r\n"},
		{"dot after a CR", "a\r.\r\n", "a\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := &fakeAcceptor{}
			_, addr, _ := startServer(t, Config{}, acc)
			c := dial(t, addr)
			c.ehlo()
			c.beginData("s@example.org", []string{"r@example.com"})
			c.send(tc.data+".", "NOOP")
			c.expect("250 2.0.0 OK queued as ")
			c.expect("250 ")
			got := acc.messages()
			if len(got) != 1 {
				t.Fatalf("accepted %d messages, want 1", len(got))
			}
			if body := afterReceived(t, got[0].body); body != tc.stored {
				t.Errorf("data %q stored as %q, want %q", tc.data, body, tc.stored)
			}
			if strings.Count(got[0].body, "\r") != strings.Count(got[0].body, "\n") {
				t.Errorf("stored body has a bare CR or LF: %q", got[0].body)
			}
		})
	}
}
