package sim

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// bodies collects what BodyHook is given.
type bodies struct {
	mu  sync.Mutex
	got []string
}

func (b *bodies) hook(from string, rcpts []string, body []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, from+">"+strings.Join(rcpts, ",")+"|"+string(body))
}

func (b *bodies) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// bdat is a BDAT command with its chunk.
func bdat(chunk string, last bool) string {
	if last {
		return fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk)
	}
	return fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk)
}

func TestProviderBDAT(t *testing.T) {
	var bs bodies
	p := newProvider(t, Behavior{BodyHook: bs.hook})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	if ehlo := c.cmd("EHLO client.test", 250); !strings.Contains(ehlo, "\nCHUNKING") {
		t.Fatalf("CHUNKING not advertised:\n%s", ehlo)
	}

	// One write, as a pipelining client sends it: MAIL, RCPTs, BDAT LAST and
	// the chunk, whose CRLF.CRLF and leading dots are data, not an end.
	one := "Subject: one\r\n\r\n.\r\n..two dots\r\n.one dot\r\n.\r\n"
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nRCPT TO:<b@y.test>\r\n" + bdat(one, true))
	c.expect(250)
	c.expect(250)
	c.expect(250)
	if msg := c.expect(250); !strings.HasPrefix(msg, "2.0.0 OK queued as ") {
		t.Errorf("LAST chunk reply %q", msg)
	}
	c.cmd("NOOP", 250) // in step: nothing of the chunk was taken for a command

	// Several chunks, pipelined, then one more in lock-step and an empty LAST;
	// a chunk may end anywhere, even inside a line.
	c.write("MAIL FROM:<>\r\nRCPT TO:<c@y.test>\r\n" + bdat("Subject: two\r\n\r\nhal", false) + bdat("f a line\r\nQUIT\r\n", false))
	c.expect(250)
	c.expect(250)
	if msg := c.expect(250); msg != "2.0.0 19 octets received" {
		t.Errorf("first chunk reply %q", msg)
	}
	c.expect(250)
	c.write(bdat("no CRLF at the end", false))
	c.expect(250)
	c.write(bdat("", true))
	c.expect(250)

	// DATA still works, and counts as a message but not a chunked one.
	c.message("s@x.test", []string{"d@y.test"}, "Subject: three\r\n\r\n..x\r\n")
	c.cmd("QUIT", 221)
	c.expectEOF()

	want := []string{
		"s@x.test>a@y.test,b@y.test|" + one,
		">c@y.test|Subject: two\r\n\r\nhalf a line\r\nQUIT\r\nno CRLF at the end",
		"s@x.test>d@y.test|Subject: three\r\n\r\n.x\r\n",
	}
	if got := bs.list(); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("bodies\n got %q\nwant %q", got, want)
	}
	if s := p.Stats(); s.Delivered != 3 || s.Chunked != 2 || s.Recipients != 4 || s.Attempts != 3 {
		t.Errorf("delivered %d chunked %d recipients %d attempts %d, want 3 2 4 3", s.Delivered, s.Chunked, s.Recipients, s.Attempts)
	}
}

// A chunk that is not all there yet: the replies queued before it go out
// while we wait for the rest, so a client that waits for them is not stuck.
func TestProviderBDATSplitChunk(t *testing.T) {
	p := newProvider(t, Behavior{})
	c := dial(t, p.Addrs()[0])
	c.hello()
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nBDAT 10 LAST\r\nhello")
	c.expect(250)
	c.expect(250)
	c.write("world")
	c.expect(250)
	if s := p.Stats(); s.Delivered != 1 || s.Chunked != 1 {
		t.Errorf("delivered %d chunked %d, want 1 1", s.Delivered, s.Chunked)
	}
}

// A refused BDAT still has its chunk read (RFC 3030 §2): each chunk below
// is "QUIT\r\n", which would end the session were it read as a command.
func TestProviderBDATRefused(t *testing.T) {
	p := newProvider(t, Behavior{RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "bad") {
			return "550 5.1.1 user unknown"
		}
		return ""
	}})
	c := dial(t, p.Addrs()[0])
	c.hello()
	quit := "QUIT\r\n"

	c.write(bdat(quit, true))
	if msg := c.expect(503); msg != "5.5.1 Need MAIL before BDAT" {
		t.Errorf("BDAT before MAIL: %q", msg)
	}
	c.write("MAIL FROM:<s@x.test>\r\n" + bdat(quit, true))
	c.expect(250)
	c.expect(503) // no RCPT yet
	// The refusal ended the transaction: a new MAIL is no nested one.
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<bad@y.test>\r\n" + bdat(quit, false) + bdat(quit, true) + "NOOP\r\n")
	c.expect(250)
	c.expect(550)
	if msg := c.expect(554); msg != "5.5.1 No valid recipients" {
		t.Errorf("BDAT with no recipient: %q", msg)
	}
	c.expect(503) // the transaction is over: the next chunk has no MAIL
	c.expect(250)

	// DATA does not mix with BDAT in a transaction.
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + bdat(quit, false) + "DATA\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(503)
	c.cmd("RCPT TO:<a@y.test>", 503) // over as well

	// And the session still delivers.
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + bdat(quit, true))
	c.expect(250)
	c.expect(250)
	c.expect(250)
	s := p.Stats()
	if s.Delivered != 1 || s.Chunked != 1 || s.Recipients != 1 || len(s.DataRejected) != 0 {
		t.Errorf("delivered %d chunked %d recipients %d data rejected %v", s.Delivered, s.Chunked, s.Recipients, s.DataRejected)
	}
}

func TestProviderBDATTooBig(t *testing.T) {
	p := newProvider(t, Behavior{})
	c := dial(t, p.Addrs()[0])
	c.hello()
	// Two chunks over the SIZE limit together: the second is refused, read
	// to the end, and the session goes on.
	half := maxMessageSize/2 + 1
	w := bufio.NewWriterSize(c.c, 64<<10)
	fill := strings.Repeat("x", 998) + "\r\n"
	chunk := func(last bool) {
		if last {
			fmt.Fprintf(w, "BDAT %d LAST\r\n", half)
		} else {
			fmt.Fprintf(w, "BDAT %d\r\n", half)
		}
		for n := half; n > 0; n -= len(fill) {
			w.WriteString(fill[:min(n, len(fill))])
		}
	}
	w.WriteString("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n")
	chunk(false)
	chunk(true)
	w.WriteString("NOOP\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.expect(250)
	c.expect(250)
	c.expect(250)
	if msg := c.expect(552); !strings.HasPrefix(msg, "5.3.4 ") {
		t.Errorf("over SIZE: %q", msg)
	}
	c.expect(250)
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + bdat("ok\r\n", true))
	c.expect(250)
	c.expect(250)
	c.expect(250)
	// A chunk too big to read only to stay in step: refused and closed.
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + fmt.Sprintf("BDAT %d LAST\r\n", maxChunkDiscard+1))
	c.expect(250)
	c.expect(250)
	c.expect(552)
	c.expectEOF()
	if s := p.Stats(); s.Delivered != 1 || s.DataRejected[552] != 2 {
		t.Errorf("delivered %d data rejected %v, want 1 and 552:2", s.Delivered, s.DataRejected)
	}
}

// A BDAT whose size cannot be read leaves no way to find the next command.
func TestProviderBDATMalformed(t *testing.T) {
	p := newProvider(t, Behavior{})
	for _, arg := range []string{"", " ", "x", "-1", "+5", "1.5", "0x10", "5 LAST more", "5 FIRST", "5LAST",
		"99999999999999999999"} {
		t.Run(arg, func(t *testing.T) {
			c := dial(t, p.Addrs()[0])
			c.hello()
			c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\nBDAT " + arg + "\r\nNOOP\r\n")
			c.expect(250)
			c.expect(250)
			c.expect(501)
			c.expectEOF()
		})
	}
	if s := p.Stats(); s.Delivered != 0 {
		t.Errorf("delivered %d", s.Delivered)
	}
}

func TestProviderNoChunking(t *testing.T) {
	p := newProvider(t, Behavior{NoChunking: true})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	if ehlo := c.cmd("EHLO client.test", 250); strings.Contains(ehlo, "CHUNKING") {
		t.Errorf("CHUNKING advertised:\n%s", ehlo)
	}
	// BDAT is unknown; what follows it is read as commands.
	c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + bdat("NOOP\r\n", true))
	c.expect(250)
	c.expect(250)
	c.expect(500)
	c.expect(250)
	if s := p.Stats(); s.Delivered != 0 {
		t.Errorf("delivered %d", s.Delivered)
	}
}

func TestProviderBDATDataReply(t *testing.T) {
	var bs bodies
	calls := 0 // DataReply's calls are serialised by the provider
	p := newProvider(t, Behavior{BodyHook: bs.hook, DataReply: func(n int64) string {
		calls++
		switch calls {
		case 1:
			return ""
		case 2:
			return "451 4.3.0 Try again later"
		}
		return "421 4.3.2 Going down"
	}})
	c := dial(t, p.Addrs()[0])
	c.hello()
	env := "MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n"
	c.write(env + bdat("one", true))
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.write(env + bdat("tw", false) + bdat("o", true) + "NOOP\r\n")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(451)
	c.expect(250)
	c.write(env + bdat("three", true))
	c.expect(250)
	c.expect(250)
	c.expect(421)
	c.expectEOF()
	s := p.Stats()
	if s.Delivered != 1 || s.Chunked != 1 || s.DataRejected[451] != 1 || s.DataRejected[421] != 1 {
		t.Errorf("delivered %d chunked %d data rejected %v", s.Delivered, s.Chunked, s.DataRejected)
	}
	if got := bs.list(); len(got) != 1 || got[0] != "s@x.test>a@y.test|one" {
		t.Errorf("bodies %q", got)
	}
}

// Without PIPELINING, a BDAT with its chunk in one write is lock-step, not
// an early command; anything after the chunk is.
func TestProviderBDATNoPipelining(t *testing.T) {
	var bs bodies
	p := newProvider(t, Behavior{NoPipelining: true, BodyHook: bs.hook})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	if ehlo := c.cmd("EHLO client.test", 250); strings.Contains(ehlo, "PIPELINING") || !strings.Contains(ehlo, "CHUNKING") {
		t.Errorf("EHLO reply:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("RCPT TO:<a@y.test>", 250)
	c.write(bdat("line one\r\nNOOP\r\n", false))
	c.expect(250)
	c.write(bdat(".\r\n", true))
	c.expect(250)
	c.write(bdat("refused, no MAIL\r\n", true))
	c.expect(503)
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("RCPT TO:<a@y.test>", 250)
	c.write(bdat("x", true) + "NOOP\r\n")
	c.expect(554)
	c.expectEOF()
	s := p.Stats()
	if s.Delivered != 1 || s.Chunked != 1 {
		t.Errorf("delivered %d chunked %d, want 1 1", s.Delivered, s.Chunked)
	}
	if got := bs.list(); len(got) != 1 || got[0] != "s@x.test>a@y.test|line one\r\nNOOP\r\n.\r\n" {
		t.Errorf("bodies %q", got)
	}
}

// DropAt and StallAt's DATA and DOT points apply to BDAT: the first chunk
// of a message and the end of its LAST chunk.
func TestProviderBDATDrop(t *testing.T) {
	for _, at := range []string{AtData, AtDot} {
		t.Run(at, func(t *testing.T) {
			p := newProvider(t, Behavior{DropAt: at})
			c := dial(t, p.Addrs()[0])
			c.hello()
			c.write("MAIL FROM:<s@x.test>\r\nRCPT TO:<a@y.test>\r\n" + bdat("x", false) + bdat("y", true))
			c.expect(250)
			c.expect(250)
			if at == AtDot {
				c.expect(250) // the first chunk
			}
			c.expectEOF()
			if s := p.Stats(); s.Delivered != 0 {
				t.Errorf("delivered %d", s.Delivered)
			}
		})
	}
}

// BenchmarkProviderThroughputBDAT is BenchmarkProviderThroughput's load sent
// as a client using CHUNKING sends it: MAIL, RCPT and BDAT LAST with the
// message in one write, three replies read back.
func BenchmarkProviderThroughputBDAT(b *testing.B) {
	tx := []byte("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\n" + bdat(benchMessage, true))
	benchConns(b, len(benchMessage), func(addr string, n int) error { return blastBDAT(addr, n, tx) })
}

// blastBDAT sends n transactions tx on one connection, one write and one
// read of three replies each.
func blastBDAT(addr string, n int, tx []byte) error {
	c, r, err := benchDial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "EHLO bench.test\r\n"); err != nil {
		return err
	}
	if _, _, err := r.ReadResponse(250); err != nil {
		return err
	}
	for range n {
		if _, err := c.Write(tx); err != nil {
			return err
		}
		for range 3 {
			if _, _, err := r.ReadResponse(250); err != nil {
				return err
			}
		}
	}
	return nil
}
