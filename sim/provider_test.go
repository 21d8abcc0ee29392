package sim

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testDeadline bounds every client socket so a broken server fails, not hangs.
const testDeadline = 10 * time.Second

func newProvider(t testing.TB, b Behavior, addrs ...string) *Provider {
	t.Helper()
	if len(addrs) == 0 {
		addrs = []string{"127.0.0.1:0"}
	}
	p, err := NewProvider(b, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// client is a tiny SMTP client over a raw connection.
type client struct {
	t  testing.TB
	c  net.Conn
	tp *textproto.Reader
}

func dialFrom(t testing.TB, addr, local string) *client {
	t.Helper()
	d := net.Dialer{Timeout: testDeadline}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(testDeadline))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, tp: textproto.NewReader(bufio.NewReader(c))}
}

func dial(t testing.TB, addr string) *client { t.Helper(); return dialFrom(t, addr, "") }

// expect reads one reply and fails unless its code is code.
func (c *client) expect(code int) string {
	c.t.Helper()
	got, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("want %d, read error: %v", code, err)
	}
	if got != code {
		c.t.Fatalf("want %d, got %d %s", code, got, msg)
	}
	return msg
}

// send writes lines in one write, as a pipelining client does.
func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// write sends raw octets in one write (a BDAT command with its chunk).
func (c *client) write(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line string, code int) string {
	c.t.Helper()
	c.send(line)
	return c.expect(code)
}

// expectEOF fails unless the server closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	if line, err := c.tp.ReadLine(); err == nil {
		c.t.Fatalf("want connection closed, got %q", line)
	}
}

func (c *client) hello() {
	c.t.Helper()
	c.expect(220)
	c.cmd("EHLO client.test", 250)
}

// message sends one transaction without pipelining and returns the final reply.
func (c *client) message(from string, rcpts []string, body string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250)
	for _, r := range rcpts {
		c.cmd("RCPT TO:<"+r+">", 250)
	}
	c.cmd("DATA", 354)
	c.send(body + ".")
	c.expect(250)
}

func TestProviderAcceptAndCount(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	var froms []string
	p := newProvider(t, Behavior{Name: "mx.sim.test", BodyHook: func(from string, rcpts []string, body []byte) {
		mu.Lock()
		defer mu.Unlock()
		froms = append(froms, from+">"+strings.Join(rcpts, ","))
		bodies = append(bodies, string(body))
	}})
	c := dial(t, p.Addrs()[0])
	if g := c.expect(220); !strings.Contains(g, "mx.sim.test") {
		t.Errorf("greeting %q lacks the name", g)
	}
	ehlo := c.cmd("EHLO client.test", 250)
	for _, ext := range []string{"PIPELINING", "CHUNKING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 52428800"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO reply lacks %s:\n%s", ext, ehlo)
		}
	}
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered though not enabled")
	}
	for i := range 3 {
		c.message("bounce@sender.test", []string{"a@x.test", fmt.Sprintf("b%d@x.test", i)},
			"Subject: hi\r\n\r\n..dot line\r\nbody\r\n")
	}
	c.cmd("QUIT", 221)

	s := p.Stats()
	if s.Delivered != 3 || s.Recipients != 6 || s.Attempts != 3 || s.Connections != 1 {
		t.Errorf("delivered %d recipients %d attempts %d conns %d, want 3 6 3 1", s.Delivered, s.Recipients, s.Attempts, s.Connections)
	}
	if s.RcptSeen["a@x.test"] != 3 || s.RcptSeen["b1@x.test"] != 1 {
		t.Errorf("RcptSeen %v", s.RcptSeen)
	}
	if s.MaxMsgsPerConn != 3 || len(s.Arrivals) != 3 || len(s.AttemptTimes) != 3 {
		t.Errorf("MaxMsgsPerConn %d arrivals %d attempt times %d", s.MaxMsgsPerConn, len(s.Arrivals), len(s.AttemptTimes))
	}
	if p.Delivered() != 3 {
		t.Errorf("Delivered() = %d", p.Delivered())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 3 || bodies[0] != "Subject: hi\r\n\r\n.dot line\r\nbody\r\n" {
		t.Errorf("bodies (dot-unstuffed) %q", bodies)
	}
	if froms[2] != "bounce@sender.test>a@x.test,b2@x.test" {
		t.Errorf("hook envelope %q", froms[2])
	}
}

func TestProviderPipelining(t *testing.T) {
	p := newProvider(t, Behavior{})
	c := dial(t, p.Addrs()[0])
	c.hello()
	// RFC 2920: one group up to DATA, then body + dot + the next group.
	c.send("MAIL FROM:<s@x.test> BODY=8BITMIME SIZE=100", "RCPT TO:<a@y.test>", "RCPT TO:<b@y.test>", "DATA")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("Subject: one", "", "text", ".", "MAIL FROM:<> SMTPUTF8", "RCPT TO:<c@y.test>", "DATA")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("Subject: two", "", "text", ".", "RSET", "NOOP", "QUIT")
	c.expect(250)
	c.expect(250)
	c.expect(250)
	c.expect(221)
	c.expectEOF()
	if s := p.Stats(); s.Delivered != 2 || s.Recipients != 3 {
		t.Errorf("delivered %d recipients %d, want 2 3", s.Delivered, s.Recipients)
	}
}

func TestProviderNoPipelining(t *testing.T) {
	p := newProvider(t, Behavior{NoPipelining: true})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	if ehlo := c.cmd("EHLO client.test", 250); strings.Contains(ehlo, "PIPELINING") {
		t.Errorf("PIPELINING advertised: %s", ehlo)
	}
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n") // lock-step is fine
	c.send("MAIL FROM:<s@x.test>", "RCPT TO:<a@y.test>")
	c.expect(554)
	c.expectEOF()
	if s := p.Stats(); s.Delivered != 1 {
		t.Errorf("delivered %d, want 1", s.Delivered)
	}
}

func TestProviderRcptReply(t *testing.T) {
	p := newProvider(t, Behavior{RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "unknown") {
			return "550 5.1.1 <" + rcpt + ">: user unknown"
		}
		return ""
	}})
	c := dial(t, p.Addrs()[0])
	c.hello()
	c.send("MAIL FROM:<s@x.test>", "RCPT TO:<unknown@y.test>", "RCPT TO:<ok@y.test>", "DATA")
	c.expect(250)
	if msg := c.expect(550); !strings.HasPrefix(msg, "5.1.1 <unknown@y.test>") {
		t.Errorf("550 text %q", msg)
	}
	c.expect(250)
	c.expect(354)
	c.send("x", ".")
	c.expect(250)
	// Every recipient refused: DATA gets 554 (RFC 2920 §3.1).
	c.send("MAIL FROM:<s@x.test>", "RCPT TO:<unknown2@y.test>", "DATA", "RSET")
	c.expect(250)
	c.expect(550)
	c.expect(554)
	c.expect(250)
	s := p.Stats()
	if s.Delivered != 1 || s.Recipients != 1 || s.RcptRejected[550] != 2 || s.Attempts != 2 {
		t.Errorf("delivered %d recipients %d rejected %v attempts %d", s.Delivered, s.Recipients, s.RcptRejected, s.Attempts)
	}
}

func TestProviderDataReply(t *testing.T) {
	var seen []int64
	p := newProvider(t, Behavior{DataReply: func(n int64) string {
		seen = append(seen, n) // serialised by the provider
		if n >= 2 {
			return "451 4.3.0 Try again later"
		}
		return ""
	}})
	c := dial(t, p.Addrs()[0])
	c.hello()
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	c.send("MAIL FROM:<s@x.test>", "RCPT TO:<a@y.test>", "DATA")
	c.expect(250)
	c.expect(250)
	c.expect(354)
	c.send("x", ".")
	c.expect(451)
	s := p.Stats()
	if s.Delivered != 2 || s.DataRejected[451] != 1 || fmt.Sprint(seen) != "[0 1 2]" {
		t.Errorf("delivered %d data rejected %v DataReply saw %v", s.Delivered, s.DataRejected, seen)
	}
}

func TestProviderRateLimit(t *testing.T) {
	p := newProvider(t, Behavior{RateLimit: 3})
	c := dial(t, p.Addrs()[0])
	c.hello()
	for range 3 {
		c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	}
	if msg := c.cmd("MAIL FROM:<s@x.test>", 421); !strings.Contains(msg, "[TSS04] Messages from 127.0.0.1") {
		t.Errorf("throttle text %q", msg)
	}
	c.expectEOF()

	// A 4xx other than 421 keeps the connection; RCPT is throttled too.
	p.SetBehavior(Behavior{RateLimit: 3, ThrottleReply: "451 4.7.1 Slow down"})
	c = dial(t, p.Addrs()[0])
	c.hello()
	c.cmd("MAIL FROM:<s@x.test>", 451)
	c.cmd("NOOP", 250)
	p.SetBehavior(Behavior{RateLimit: 4, ThrottleReply: "451 4.7.1 Slow down"})
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("RCPT TO:<a@y.test>", 250)
	p.SetBehavior(Behavior{RateLimit: 3, ThrottleReply: "451 4.7.1 Slow down"})
	c.cmd("RCPT TO:<b@y.test>", 451)
	s := p.Stats()
	if s.Delivered != 3 || s.RcptRejected[421] != 1 || s.RcptRejected[451] != 2 || s.Attempts != 6 {
		t.Errorf("delivered %d rejected %v attempts %d", s.Delivered, s.RcptRejected, s.Attempts)
	}
	if n := MaxInWindow(s.Arrivals, time.Minute); n != 3 {
		t.Errorf("MaxInWindow(arrivals, 1m) = %d, want 3", n)
	}
}

func TestProviderMaxMsgsPerConn(t *testing.T) {
	p := newProvider(t, Behavior{MaxMsgsPerConn: 2})
	c := dial(t, p.Addrs()[0])
	c.hello()
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	if msg := c.cmd("MAIL FROM:<s@x.test>", 421); msg != "4.7.0 Too many messages on this connection" {
		t.Errorf("reply %q", msg)
	}
	c.expectEOF()
	c = dial(t, p.Addrs()[0])
	c.hello()
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	if s := p.Stats(); s.Delivered != 3 || s.MaxMsgsPerConn != 2 || s.RcptRejected[421] != 1 {
		t.Errorf("delivered %d max per conn %d rejected %v", s.Delivered, s.MaxMsgsPerConn, s.RcptRejected)
	}
}

func TestProviderMaxConnsPerIP(t *testing.T) {
	p := newProvider(t, Behavior{MaxConnsPerIP: 2})
	addr := p.Addrs()[0]
	a, b := dial(t, addr), dial(t, addr)
	a.expect(220)
	b.expect(220)
	c := dial(t, addr)
	if msg := c.expect(421); msg != "4.7.0 Too many connections" {
		t.Errorf("reply %q", msg)
	}
	c.expectEOF()
	// Another client IP has its own allowance.
	o := dialFrom(t, addr, "127.0.0.10")
	o.expect(220)
	// Once one closes (the server counts before closing, so EOF orders us), a new one is let in.
	a.cmd("QUIT", 221)
	a.expectEOF()
	d := dial(t, addr)
	d.expect(220)
	s := p.Stats()
	if s.RejectedConns != 1 || s.Connections != 5 || s.MaxOpenBySource["127.0.0.1"] != 3 || s.OpenNow != 3 {
		t.Errorf("rejected %d conns %d max by source %v open %d", s.RejectedConns, s.Connections, s.MaxOpenBySource, s.OpenNow)
	}
}

// MaxSessions: a connection beyond the limit is accepted and hears nothing
// until a session ends, then gets its greeting.
func TestProviderMaxSessions(t *testing.T) {
	p := newProvider(t, Behavior{MaxSessions: 1})
	addr := p.Addrs()[0]
	a := dial(t, addr)
	a.expect(220)
	b := dialFrom(t, addr, "127.0.0.10") // another client: the limit is the server's
	// The session slot is taken: b's connection is open and silent.
	b.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if line, err := b.tp.ReadLine(); err == nil {
		t.Fatalf("a connection beyond MaxSessions got %q", line)
	}
	b.c.SetReadDeadline(time.Now().Add(testDeadline))
	a.cmd("QUIT", 221)
	a.expectEOF()
	b.expect(220)
	if s := p.Stats(); s.Waited != 1 || s.Connections != 2 || s.MaxOpen != 1 {
		t.Errorf("waited %d conns %d max open %d; want 1, 2, 1", s.Waited, s.Connections, s.MaxOpen)
	}
}

func TestProviderGreeting421(t *testing.T) {
	p := newProvider(t, Behavior{Greeting: "421 4.7.0 Try later"})
	c := dial(t, p.Addrs()[0])
	if msg := c.expect(421); msg != "4.7.0 Try later" {
		t.Errorf("greeting %q", msg)
	}
	c.expectEOF()
	if s := p.Stats(); s.RejectedConns != 1 || s.Connections != 1 {
		t.Errorf("rejected %d conns %d", s.RejectedConns, s.Connections)
	}
}

func TestProviderRefuseToggle(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	p := newProvider(t, Behavior{}, addr)
	live := dial(t, addr)
	live.hello()

	p.SetBehavior(Behavior{Refuse: true})
	live.expectEOF() // an outage drops open connections too
	d := net.Dialer{Timeout: testDeadline}
	if c, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial during outage: %v, want connection refused", err)
	}

	p.SetBehavior(Behavior{})
	c := dial(t, addr)
	c.hello()
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	if got := p.Addrs(); len(got) != 1 || got[0] != addr {
		t.Errorf("Addrs %v, want [%s]", got, addr)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	// Refusing from the start, then opening.
	p2 := newProvider(t, Behavior{Refuse: true}, addr)
	if c, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial refusing provider: %v", err)
	}
	p2.SetBehavior(Behavior{})
	dial(t, addr).expect(220)
}

func TestProviderSTARTTLS(t *testing.T) {
	p := newProvider(t, Behavior{STARTTLS: true})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	if ehlo := c.cmd("EHLO client.test", 250); !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("STARTTLS not offered: %s", ehlo)
	}
	c.cmd("STARTTLS", 220)
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, ServerName: "sim"})
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, c: tc, tp: textproto.NewReader(bufio.NewReader(tc))}
	// RFC 3207 §4.2: EHLO again; STARTTLS is no longer offered.
	c.cmd("MAIL FROM:<s@x.test>", 503)
	if ehlo := c.cmd("EHLO client.test", 250); strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered inside TLS: %s", ehlo)
	}
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	c.cmd("STARTTLS", 503)
	if s := p.Stats(); s.TLSConns != 1 || s.Delivered != 1 {
		t.Errorf("TLS conns %d delivered %d", s.TLSConns, s.Delivered)
	}

	// Not offered: refused.
	p2 := newProvider(t, Behavior{})
	c2 := dial(t, p2.Addrs()[0])
	c2.hello()
	c2.cmd("STARTTLS", 502)
}

func TestProviderStall(t *testing.T) {
	const stall = 150 * time.Millisecond
	for _, at := range []string{AtGreeting, AtMail, AtRcpt, AtData, AtDot} {
		t.Run(at, func(t *testing.T) {
			p := newProvider(t, Behavior{StallAt: at, StallFor: stall})
			// From before the dial: a greeting stall starts when the
			// provider accepts, which can be before the dial returns.
			start := time.Now()
			c := dial(t, p.Addrs()[0])
			c.hello()
			c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
			if d := time.Since(start); d < stall {
				t.Errorf("transaction took %v, want a stall of at least %v", d, stall)
			}
			if s := p.Stats(); s.Delivered != 1 {
				t.Errorf("delivered %d", s.Delivered)
			}
		})
	}
}

func TestProviderDrop(t *testing.T) {
	// Each case runs the dialogue up to the drop point, then expects EOF.
	steps := []struct {
		at   string
		upTo func(c *client)
	}{
		{AtGreeting, func(c *client) {}},
		{AtMail, func(c *client) { c.hello(); c.send("MAIL FROM:<s@x.test>") }},
		{AtRcpt, func(c *client) {
			c.hello()
			c.send("MAIL FROM:<s@x.test>", "RCPT TO:<a@y.test>")
			c.expect(250) // MAIL's reply still comes
		}},
		{AtData, func(c *client) {
			c.hello()
			c.cmd("MAIL FROM:<s@x.test>", 250)
			c.cmd("RCPT TO:<a@y.test>", 250)
			c.send("DATA")
		}},
		{AtDot, func(c *client) {
			c.hello()
			c.cmd("MAIL FROM:<s@x.test>", 250)
			c.cmd("RCPT TO:<a@y.test>", 250)
			c.cmd("DATA", 354)
			c.send("x", ".")
		}},
	}
	for _, st := range steps {
		t.Run(st.at, func(t *testing.T) {
			p := newProvider(t, Behavior{DropAt: st.at})
			c := dial(t, p.Addrs()[0])
			st.upTo(c)
			c.expectEOF()
			if s := p.Stats(); s.Delivered != 0 {
				t.Errorf("delivered %d, want 0", s.Delivered)
			}
		})
	}
}

func TestProviderMaxOpenByPath(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	mx1 := net.JoinHostPort("127.0.0.2", strconv.Itoa(port))
	mx2 := net.JoinHostPort("127.0.0.3", strconv.Itoa(port))
	p := newProvider(t, Behavior{}, mx1, mx2)
	type conn struct{ src, dst string }
	plan := []conn{
		{"127.0.0.10", mx1}, {"127.0.0.10", mx1}, {"127.0.0.10", mx1},
		{"127.0.0.11", mx2}, {"127.0.0.11", mx2}, {"127.0.0.11", mx1},
	}
	// Dial concurrently; each goroutine holds its connection open after the
	// greeting, which the server sends only after counting the connection.
	type result struct {
		c   net.Conn
		r   *bufio.Reader
		err error
	}
	results := make(chan result, len(plan))
	for _, pc := range plan {
		go func() {
			d := net.Dialer{Timeout: testDeadline, LocalAddr: &net.TCPAddr{IP: net.ParseIP(pc.src)}}
			c, err := d.DialContext(context.Background(), "tcp", pc.dst)
			if err != nil {
				results <- result{err: err}
				return
			}
			c.SetDeadline(time.Now().Add(testDeadline))
			r := bufio.NewReader(c)
			if _, err := r.ReadString('\n'); err != nil {
				c.Close()
				results <- result{err: err}
				return
			}
			results <- result{c: c, r: r}
		}()
	}
	var clients []*client
	for range plan {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		t.Cleanup(func() { res.c.Close() })
		clients = append(clients, &client{t: t, c: res.c, tp: textproto.NewReader(res.r)})
	}
	s := p.Stats()
	if s.OpenNow != 6 || s.MaxOpen != 6 || s.Connections != 6 {
		t.Errorf("open %d max %d conns %d, want 6 6 6", s.OpenNow, s.MaxOpen, s.Connections)
	}
	wantSrc := map[string]int{"127.0.0.10": 3, "127.0.0.11": 3}
	wantPath := map[string]int{"127.0.0.10>127.0.0.2": 3, "127.0.0.11>127.0.0.3": 2, "127.0.0.11>127.0.0.2": 1}
	if fmt.Sprint(s.MaxOpenBySource) != fmt.Sprint(wantSrc) || fmt.Sprint(s.MaxOpenByPath) != fmt.Sprint(wantPath) {
		t.Errorf("by source %v by path %v", s.MaxOpenBySource, s.MaxOpenByPath)
	}
	for _, c := range clients {
		c.cmd("QUIT", 221)
		c.expectEOF()
	}
	if s := p.Stats(); s.OpenNow != 0 || s.MaxOpen != 6 {
		t.Errorf("after quit: open %d max %d", s.OpenNow, s.MaxOpen)
	}
}

func TestProviderBadInput(t *testing.T) {
	p := newProvider(t, Behavior{})
	c := dial(t, p.Addrs()[0])
	c.expect(220)
	c.cmd("MAIL FROM:<s@x.test>", 503)
	c.cmd("EHLO", 501)
	c.cmd("FOO bar", 500)
	c.cmd("EHLO client.test", 250)
	c.cmd("RCPT TO:<a@y.test>", 503)
	c.cmd("DATA", 503)
	c.cmd("MAIL FROM:s@x.test", 501)
	c.cmd("MAIL FROM:<s@x.test> RET=HDRS", 555)
	c.cmd("MAIL FROM:<s@x.test> SIZE=99999999999", 552)
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("MAIL FROM:<s@x.test>", 503)
	c.cmd("RCPT TO:<>", 501)
	c.cmd("DATA", 503)
	c.cmd(strings.Repeat("N", 5000), 500)
	c.cmd(strings.Repeat("N", 40000), 500) // longer than the read buffer
	c.cmd("RCPT TO:<a@y.test>", 250)
	c.cmd("DATA", 354)
	c.send("ok line", "bare LF\nnext", ".")
	c.expect(554)
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("RCPT TO:<a@y.test>", 250)
	c.cmd("DATA", 354)
	c.send(strings.Repeat("L", 5000), ".")
	c.expect(554)
	s := p.Stats()
	if s.Delivered != 0 || s.DataRejected[554] != 2 || s.RcptRejected[552] != 1 {
		t.Errorf("delivered %d data rejected %v rcpt rejected %v", s.Delivered, s.DataRejected, s.RcptRejected)
	}
	// Too many errors: the server hangs up. 12 errors above already.
	for range maxErrors - 12 {
		c.send("FOO")
	}
	for range maxErrors - 12 {
		c.expect(500)
	}
	c.expect(421)
	c.expectEOF()
}

func TestProviderTooBig(t *testing.T) {
	p := newProvider(t, Behavior{})
	c := dial(t, p.Addrs()[0])
	c.hello()
	c.cmd("MAIL FROM:<s@x.test>", 250)
	c.cmd("RCPT TO:<a@y.test>", 250)
	c.cmd("DATA", 354)
	line := strings.Repeat("x", 998) + "\r\n"
	w := bufio.NewWriterSize(c.c, 64<<10)
	for range maxMessageSize/len(line) + 2 {
		w.WriteString(line)
	}
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	c.expect(552)
	c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	if s := p.Stats(); s.Delivered != 1 || s.DataRejected[552] != 1 {
		t.Errorf("delivered %d data rejected %v", s.Delivered, s.DataRejected)
	}
}

func TestNewProviderChecks(t *testing.T) {
	for _, addrs := range [][]string{
		{"192.0.2.1:25"},
		{"localhost:25"},
		{"127.0.0.2:0", "127.0.0.3:0"},
		{},
	} {
		if p, err := NewProvider(Behavior{}, addrs...); err == nil {
			p.Close()
			t.Errorf("NewProvider(%v) accepted", addrs)
		}
	}
	if _, err := NewProvider(Behavior{StallAt: "HELO"}, "127.0.0.1:0"); err == nil {
		t.Errorf("bad StallAt accepted")
	}
}

func TestProviderWaitMessages(t *testing.T) {
	p := newProvider(t, Behavior{})
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	woken := make(chan error, 1)
	go func() { woken <- p.WaitMessages(ctx, 5) }()
	c := dial(t, p.Addrs()[0])
	c.hello()
	for range 5 {
		c.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	}
	if err := <-woken; err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := p.WaitMessages(short, 6); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitMessages beyond count: %v", err)
	}
	go p.Close()
	if err := p.WaitMessages(context.Background(), 100); err == nil {
		t.Errorf("WaitMessages on a closed provider returned nil")
	}
}

func TestProviderCloseEndsStalls(t *testing.T) {
	p, err := NewProvider(Behavior{StallAt: AtGreeting, StallFor: time.Hour}, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addrs()[0])
	closed := make(chan error)
	go func() { closed <- p.Close() }()
	c.expectEOF()
	select {
	case err := <-closed:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(testDeadline):
		t.Fatal("Close did not end a stalled connection")
	}
}

func TestMaxInWindow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(secs ...float64) []time.Time {
		var ts []time.Time
		for _, s := range secs {
			ts = append(ts, t0.Add(time.Duration(s*float64(time.Second))))
		}
		return ts
	}
	for _, tc := range []struct {
		name  string
		times []time.Time
		w     time.Duration
		want  int
	}{
		{"empty", nil, time.Second, 0},
		{"one", at(5), time.Second, 1},
		{"zero window", at(1, 2), 0, 0},
		{"spread", at(0, 1, 2, 3), time.Second, 1},
		{"half-open edge", at(0, 1, 2, 3), 1001 * time.Millisecond, 2},
		{"burst in middle", at(0, 10, 10.1, 10.2, 10.9, 20), time.Second, 4},
		{"same instant", at(3, 3, 3), time.Nanosecond, 3},
		{"unsorted", at(10.2, 0, 10.9, 10, 20, 10.1), time.Second, 4},
		{"whole", at(0, 30, 59.9), time.Minute, 3},
	} {
		if got := MaxInWindow(tc.times, tc.w); got != tc.want {
			t.Errorf("%s: MaxInWindow = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// BenchmarkProviderThroughput blasts 2 KB messages over 20 reused connections,
// each pipelining body + dot with the next MAIL/RCPT/DATA (one round trip per
// message).
func BenchmarkProviderThroughput(b *testing.B) {
	body := benchMessage + ".\r\n"
	next := "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n"
	benchConns(b, len(body), func(addr string, n int) error { return blast(addr, n, next, body) })
}

// benchMessage is the 2 KB message of the throughput benchmarks.
var benchMessage = "From: a@x.test\r\nTo: b@y.test\r\nSubject: bench\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 76)+"\r\n", 2048/78)

// benchConns runs blast over 20 connections, b.N messages in all.
func benchConns(b *testing.B, msgSize int, blast func(addr string, n int) error) {
	const conns = 20
	p := newProvider(b, Behavior{})
	addr := p.Addrs()[0]
	b.SetBytes(int64(msgSize))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		if n == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := blast(addr, n); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if got := p.Stats().Delivered; got != int64(b.N) {
		b.Fatalf("delivered %d, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// benchDial connects a benchmark's client to addr and reads the greeting.
func benchDial(addr string) (net.Conn, *textproto.Reader, error) {
	d := net.Dialer{Timeout: testDeadline}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	r := textproto.NewReader(bufio.NewReader(c))
	if _, _, err := r.ReadResponse(220); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, r, nil
}

// blast sends n messages on one connection, one write and one read per message.
func blast(addr string, n int, next, body string) error {
	c, r, err := benchDial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriterSize(c, 8<<10)
	expect := func(code int) error {
		if _, _, err := r.ReadResponse(code); err != nil {
			return err
		}
		return nil
	}
	w.WriteString("EHLO bench.test\r\n" + next)
	if err := w.Flush(); err != nil {
		return err
	}
	for _, code := range []int{250, 250, 250, 354} {
		if err := expect(code); err != nil {
			return err
		}
	}
	for i := range n {
		w.WriteString(body)
		if i < n-1 {
			w.WriteString(next)
		} else {
			w.WriteString("QUIT\r\n")
		}
		if err := w.Flush(); err != nil {
			return err
		}
		codes := []int{250, 250, 250, 354}
		if i == n-1 {
			codes = []int{250, 221}
		}
		for _, code := range codes {
			if err := expect(code); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestProviderMailReplyPerClientIP: MailReply throttles one client IP
// while another delivers, and arrivals are counted per client IP.
func TestProviderMailReplyPerClientIP(t *testing.T) {
	p := newProvider(t, Behavior{MailReply: func(ip string) string {
		if ip == "127.0.0.2" {
			return "421 4.7.0 [TSS04] Messages from " + ip + " temporarily deferred"
		}
		return ""
	}})
	addr := p.Addrs()[0]
	bad := dialFrom(t, addr, "127.0.0.2")
	bad.hello()
	if msg := bad.cmd("MAIL FROM:<s@x.test>", 421); !strings.Contains(msg, "[TSS04] Messages from 127.0.0.2") {
		t.Errorf("reply %q", msg)
	}
	bad.expectEOF()
	good := dialFrom(t, addr, "127.0.0.3")
	good.hello()
	good.message("s@x.test", []string{"a@y.test"}, "x\r\n")
	good.message("s@x.test", []string{"b@y.test"}, "x\r\n")
	s := p.Stats()
	if len(s.ArrivalsBySource["127.0.0.3"]) != 2 || len(s.ArrivalsBySource["127.0.0.2"]) != 0 || s.RcptRejected[421] != 1 {
		t.Errorf("arrivals by source %v rejected %v", s.ArrivalsBySource, s.RcptRejected)
	}
}
