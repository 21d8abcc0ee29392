package smtpserver

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// borrowingAcceptor is a fakeAcceptor that declares it keeps nothing of a
// body (it records a copy).
type borrowingAcceptor struct{ fakeAcceptor }

func (b *borrowingAcceptor) Accept(ctx context.Context, env *Envelope, body []byte) (string, error) {
	return b.fakeAcceptor.Accept(ctx, env, body)
}

func (*borrowingAcceptor) BorrowsBody() {}

// afterReceived is what follows the Received field (which differs by id
// and date from server to server).
func afterReceived(t *testing.T, body string) string {
	t.Helper()
	if !strings.HasPrefix(body, "Received: from ") {
		t.Fatalf("no Received field first: %.80q", body)
	}
	for i := 0; ; {
		j := strings.Index(body[i:], "\r\n")
		if j < 0 {
			t.Fatalf("Received field does not end: %.80q", body)
		}
		i += j + 2
		if i == len(body) || body[i] != '\t' {
			return body[i:]
		}
	}
}

// A BodyBorrower is given the DATA buffer itself, reused from message to
// message: each body must be the same as the copy a keeping Acceptor gets,
// whatever came before it in the buffer, on the fast path (CRLF lines) and
// the copying ones (bare line ends, a Received field longer than the room
// kept for it).
func TestBorrowedBodyMatchesCopy(t *testing.T) {
	big := strings.Repeat("a line of a large message, long enough to fill the buffer\r\n", 2000)
	bodies := []string{
		"Subject: first\r\n\r\nhello\r\n",
		"Subject: large\r\n\r\n" + big,
		"Subject: small after large\r\n\r\nx\r\n",
		"Subject: bare\n\nbare LF\rbare CR\r\n",
		"Subject: no end\r\n\r\n..stuffed\r\nlast line",
		"",
		"Subject: 8 bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n",
	}
	// A recipient address near its limit with a long HELO makes the
	// Received field longer than receivedRoom.
	longHelo := strings.Repeat("h", 250) + "." + strings.Repeat("e", 250) + "." + strings.Repeat("l", 250) + "." + strings.Repeat("o", 250) + ".test"
	run := func(acc Acceptor, get func() []accepted) []accepted {
		_, addr, _ := startServer(t, Config{MaxMessageSize: 1 << 20}, acc)
		for _, helo := range []string{"client.test", longHelo} {
			c := dial(t, addr)
			c.send("EHLO " + helo)
			c.expect("250 ")
			for _, b := range bodies {
				if got := c.sendMessage("s@example.org", []string{"r@example.com"}, dotStuff(b)); !strings.HasPrefix(got, "250 ") {
					t.Fatalf("HELO %.20s, body %.20q: %q", helo, b, got)
				}
			}
		}
		return get()
	}
	keep := &fakeAcceptor{}
	kept := run(keep, keep.messages)
	borrow := &borrowingAcceptor{}
	borrowed := run(borrow, borrow.messages)
	if len(kept) != 2*len(bodies) || len(borrowed) != len(kept) {
		t.Fatalf("accepted %d and %d messages, want %d", len(kept), len(borrowed), 2*len(bodies))
	}
	for i := range kept {
		k, b := kept[i], borrowed[i]
		if got, want := afterReceived(t, b.body), afterReceived(t, k.body); got != want {
			t.Errorf("message %d: borrowed body %.80q, copy %.80q", i, got, want)
		}
		if b.env.Body8Bit != k.env.Body8Bit {
			t.Errorf("message %d: Body8Bit %v, copy %v", i, b.env.Body8Bit, k.env.Body8Bit)
		}
		if i >= len(bodies) && !strings.HasPrefix(b.body, "Received: from "+strings.Repeat("h", 250)) {
			t.Errorf("message %d: Received field %.80q", i, b.body)
		}
	}
}

// dotStuff prepares a body for sendMessage: lines starting with "." get
// another, and the body ends with CRLF before the final dot (a bare line
// end there would not end DATA). Lines are what CRLF ends (RFC 5321
// §2.3.8): a dot after a bare CR or LF is not at the start of a line.
func dotStuff(b string) string {
	if b != "" && !strings.HasSuffix(b, "\r\n") {
		b += "\r\n"
	}
	lines := strings.SplitAfter(b, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, ".") {
			lines[i] = "." + l
		}
	}
	return strings.Join(lines, "")
}

// FuzzBorrowedBody sends any body to two servers, one with a keeping
// Acceptor and one with a BodyBorrower, on one connection each (so the
// borrower's buffer is reused from input to input): both must answer
// alike and store the same message after the Received field, and that is
// the body itself with its line ends made CRLF: DATA loses and invents no
// byte, bare CRs included.
func FuzzBorrowedBody(f *testing.F) {
	for _, s := range []string{"", "a", "Subject: x\r\n\r\nhi\r\n", "bare\nLF\rCR", ".\r\n..\r\n", "\xff\r\n",
		strings.Repeat("long line ", 90) + "\r\n", "a\r\r\n\n", "a\r\r\nb\r\n",
		"a\r", "a\r\r\n.b\r\n", ".\rx", "\r.\r\r\n"} {
		f.Add([]byte(s))
	}
	keep, borrow := &fakeAcceptor{}, &borrowingAcceptor{}
	var conns [2]*client
	for i, acc := range []Acceptor{keep, borrow} {
		_, addr, _ := startServer(f, Config{MaxMessageSize: 64 << 10}, acc)
		conns[i] = dial(f, addr)
		conns[i].ehlo()
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for l := range bytes.SplitSeq(body, []byte("\n")) {
			if len(l) > 900 {
				t.Skip("a line over the limit closes the session")
			}
		}
		data := dotStuff(string(body))
		var replies [2]string
		for i, c := range conns {
			c.t = t
			c.conn.SetDeadline(time.Now().Add(testDeadline))
			replies[i] = c.sendMessage("s@example.org", []string{"r@example.com"}, data)
		}
		if replies[0][:3] != replies[1][:3] {
			t.Fatalf("%q: replies %q and %q", body, replies[0], replies[1])
		}
		if !strings.HasPrefix(replies[0], "250 ") {
			return
		}
		k, b := keep.messages(), borrow.messages()
		kept := afterReceived(t, k[len(k)-1].body)
		if got := afterReceived(t, b[len(b)-1].body); got != kept {
			t.Fatalf("%q: borrowed body %q, copy %q", body, got, kept)
		}
		sent := string(body)
		if sent != "" && !strings.HasSuffix(sent, "\r\n") {
			sent += "\r\n" // as dotStuff does
		}
		// Compared whole: a body that starts with a tab would read as
		// more of the Received field.
		full, want := k[len(k)-1].body, string(crlfLines([]byte(sent)))
		if head, ok := strings.CutSuffix(full, want); !ok || afterReceived(t, head) != "" {
			t.Fatalf("%q: stored %q, want the Received field and %q", body, full, want)
		}
	})
}
