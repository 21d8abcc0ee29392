package smtpserver

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests replay attacks on the listener. Linux routes all of
// 127.0.0.0/8 to loopback, so 127.0.0.2 and 127.0.0.3 play outside clients
// while only 127.0.0.1 is in AllowedNetworks.

var onlyLocalhost = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// dialFrom connects from the loopback address local and returns the
// client without reading the greeting.
func dialFrom(t testing.TB, addr, local string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: testDeadline}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(testDeadline))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, tp: textproto.NewConn(conn)}
}

// waitFor polls cond until it holds or testDeadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The attack: idle connections from a network that may not relay take every
// slot, and the application the server is for gets "421 Too many
// connections". Now the last slots are reserved for allowed clients, the
// flood puts the server under stress, and the idle sessions are closed
// within the stress timeout rather than the 5-minute command timeout.
func TestIdleFloodLeavesRoomForAllowedClients(t *testing.T) {
	const maxConns, reserved = 10, 2
	const stressIdle = 2 * time.Second
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{
		AllowedNetworks:     onlyLocalhost,
		MaxConnections:      maxConns,
		ReservedConnections: reserved,
		ReadTimeout:         5 * time.Minute,
		StressIdleTimeout:   stressIdle,
	}, acc)

	// The flood: connect from 127.0.0.2 until refused, and stay idle.
	var idle []*client
	var refusal string
	for range maxConns + 1 {
		c := dialFrom(t, addr, "127.0.0.2")
		if got := c.reply(); !strings.HasPrefix(got, "220 ") {
			refusal = got
			c.expectEOF()
			break
		}
		idle = append(idle, c)
	}
	floodStart := time.Now()
	if len(idle) != maxConns-reserved || refusal != "421 4.7.0 Too many connections" {
		t.Fatalf("outside client got %d sessions, then %q; want %d, then 421 4.7.0", len(idle), refusal, maxConns-reserved)
	}
	if st := srv.Stats(); !st.Stressed || st.StressEntered != 1 {
		t.Fatalf("not under stress with %d of %d slots taken: %+v", len(idle), maxConns, st)
	}

	// The allowed client still gets in and can send.
	c := dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	c.ehlo()
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "during the flood\r\n"); got != "250 2.0.0 OK queued as M1" {
		t.Fatalf("allowed client during the flood: %q", got)
	}
	c.send("QUIT")
	c.expect("221 ")

	// Idle sessions are closed after the stress timeout, not the 5-minute
	// one, until the load has fallen to 60% and stress mode ends (the rest
	// then keep their full timeout: they no longer crowd anyone out).
	closed := make(chan string, len(idle))
	for _, ic := range idle {
		go func() {
			ic.conn.SetReadDeadline(time.Now().Add(testDeadline))
			code, msg, err := ic.tp.ReadResponse(0)
			if err == nil || code != 0 {
				closed <- fmt.Sprintf("%d %s", code, msg)
			}
		}()
	}
	wantClosed := len(idle) - maxConns*3/5
	for range wantClosed {
		if got := waitChan(t, closed, "an idle session to be closed"); !strings.HasPrefix(got, "421 4.4.2 ") {
			t.Fatalf("idle session: %q, want 421 4.4.2 idle timeout", got)
		}
	}
	if waited := time.Since(floodStart); waited > stressIdle+testDeadline/2 {
		t.Errorf("idle sessions closed after %v, stress timeout %v", waited, stressIdle)
	}
	waitFor(t, "stress mode to end", func() bool { return !srv.Stats().Stressed })
	if st := srv.Stats(); st.StressEntered != 1 || st.SessionsOpen > maxConns*3/5 || st.Rejected[ReasonTooManyConnections] != 1 {
		t.Errorf("stats after the flood: %+v", st)
	}
	for _, ic := range idle {
		ic.conn.Close()
	}
}

// Without stress, an idle session keeps its full command timeout.
func TestNoStressKeepsTimeout(t *testing.T) {
	srv, addr, _ := startServer(t, Config{MaxConnections: 10, StressIdleTimeout: 50 * time.Millisecond}, &fakeAcceptor{})
	c := dial(t, addr)
	c.ehlo()
	// Long enough for a stress deadline to have fired many times over.
	c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.tp.ReadLine(); err == nil {
		t.Fatal("server wrote to an idle session that is not under stress")
	}
	c.conn.SetDeadline(time.Now().Add(testDeadline))
	c.send("NOOP")
	c.expect("250 ")
	if st := srv.Stats(); st.Stressed || st.StressEntered != 0 {
		t.Errorf("stress with 1 of 10 slots: %+v", st)
	}
}

func TestConnectionsPerClient(t *testing.T) {
	const perClient = 3
	srv, addr, _ := startServer(t, Config{AllowedNetworks: onlyLocalhost, MaxConnectionsPerClient: perClient}, &fakeAcceptor{})
	var mine []*client
	for range perClient {
		c := dialFrom(t, addr, "127.0.0.2")
		c.expect("220 ")
		mine = append(mine, c)
	}
	c := dialFrom(t, addr, "127.0.0.2")
	if got := c.reply(); got != fmt.Sprintf("421 4.7.0 Too many connections from your address (limit %d per client), try again later", perClient) {
		t.Fatalf("connection %d from one client: %q", perClient+1, got)
	}
	c.expectEOF()

	// Another client is not affected, nor is an allowed network.
	dialFrom(t, addr, "127.0.0.3").expect("220 ")
	for range perClient + 2 {
		dialFrom(t, addr, "127.0.0.1").expect("220 ")
	}
	// A slot of the client's own is free again once a session ends.
	mine[0].send("QUIT")
	mine[0].expect("221 ")
	mine[0].expectEOF()
	dialFrom(t, addr, "127.0.0.2").expect("220 ")
	if got := srv.Stats().Rejected[ReasonTooManyFromClient]; got != 1 {
		t.Errorf("%s = %d, want 1", ReasonTooManyFromClient, got)
	}
}

// fakeClock is a Clock whose time moves only when told to, or by the
// delays asked of After, which fire at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	delays []time.Duration
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	f.delays = append(f.delays, d)
	ch := make(chan time.Time, 1)
	ch <- f.now
	return ch
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fakeClock) asked() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.delays...)
}

// The attack: thousands of wrong passwords over many sessions from one
// address. Now failures past the first few are answered late, then the
// address is refused AUTH for a cool-down; after it the right password works.
func TestAuthStormThrottled(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{
		AllowedNetworks: onlyLocalhost,
		Users:           map[string]string{"app": "s3cret"},
		Clock:           clock,
	}, acc)

	const sessions = 40
	var failed, refused int
	for range sessions {
		c := dialFrom(t, addr, "127.0.0.1")
		c.expect("220 ")
		c.ehlo()
		for range maxAuthFailures {
			c.send("AUTH PLAIN " + plainIR("app", "guess"))
			switch got := c.reply(); {
			case strings.HasPrefix(got, "535 5.7.8 "):
				failed++
			case strings.HasPrefix(got, "454 4.7.0 Too many failed authentication attempts from your address"):
				refused++
			default:
				t.Fatalf("AUTH with a wrong password: %q", got)
			}
		}
		c.send("QUIT")
		c.expect("221 ")
	}
	if failed != authLockFailures || refused != sessions*maxAuthFailures-authLockFailures {
		t.Fatalf("%d passwords tried and %d refused, want %d tried", failed, refused, authLockFailures)
	}
	// Failures past the free ones were held back, longer each time.
	delays := clock.asked()
	if len(delays) != authLockFailures-authFreeFailures {
		t.Fatalf("delays %v", delays)
	}
	for i := 1; i < len(delays); i++ {
		if delays[i] < delays[i-1] || delays[0] <= 0 {
			t.Fatalf("delays do not grow: %v", delays)
		}
	}
	st := srv.Stats()
	if st.AuthThrottled != 1 || st.AuthDelayed != uint64(len(delays)) || st.Rejected[ReasonAuthThrottled] != uint64(refused) {
		t.Errorf("stats %+v", st)
	}

	// During the cool-down even the right password is refused: it is not
	// checked, so guessing learns nothing.
	c := dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	c.ehlo()
	c.send("AUTH PLAIN " + plainIR("app", "s3cret"))
	c.expect("454 4.7.0 ")
	// Another address is not affected.
	o := dialFrom(t, addr, "127.0.0.2")
	o.expect("220 ")
	o.ehlo()
	o.send("AUTH PLAIN " + plainIR("app", "s3cret"))
	o.expect("235 ")

	// After the cool-down the client that stopped guessing gets in.
	clock.advance(authLockout)
	c.send("AUTH PLAIN " + plainIR("app", "s3cret"))
	c.expect("235 ")
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "after the storm\r\n"); got != "250 2.0.0 OK queued as M1" {
		t.Fatalf("after the cool-down: %q", got)
	}
	if got := srv.Stats().AuthThrottled; got != 0 {
		t.Errorf("%d addresses still throttled", got)
	}
	// But a guesser gets one try per cool-down.
	c = dialFrom(t, addr, "127.0.0.1")
	c.expect("220 ")
	c.ehlo()
	c.send("AUTH PLAIN " + plainIR("app", "guess"))
	c.expect("535 ")
	c.send("AUTH PLAIN " + plainIR("app", "guess"))
	c.expect("454 4.7.0 ")
}

func TestAuthThrottleBounded(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	th := newAuthThrottle(clock)
	for i := range authMaxClients + 500 {
		th.failed(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	if n := len(th.m); n > authMaxClients {
		t.Fatalf("%d addresses kept, limit %d", n, authMaxClients)
	}
	// Addresses are forgotten after authForget without failures.
	clock.advance(authForget)
	key := netip.MustParseAddr("10.0.0.1")
	for range authLockFailures - 1 {
		th.failed(key)
	}
	if _, ok := th.check(key); !ok {
		t.Fatal("locked out before the limit")
	}
	th.failed(key)
	if _, ok := th.check(key); ok {
		t.Fatal("not locked out at the limit")
	}
}

// The attack: 20,000 bad RCPT commands in one session, every one answered.
// Now the session is closed at MaxErrors.
func TestErrorStormClosed(t *testing.T) {
	acc := &fakeAcceptor{}
	srv, addr, _ := startServer(t, Config{}, acc)
	c := dial(t, addr)
	c.ehlo()
	c.send("MAIL FROM:<s@example.org>")
	c.expect("250 ")
	bad := make([]string, 100)
	for i := range bad {
		bad[i] = "RCPT TO:<bad@exa_mple.com>"
	}
	c.send(bad...)
	for i := range DefaultMaxErrors {
		if got := c.reply(); !strings.HasPrefix(got, "501 5.1.3 ") {
			t.Fatalf("reply %d: %q", i+1, got)
		}
	}
	c.expect("421 4.7.0 Too many errors")
	c.expectEOF()
	if got := srv.Stats().Rejected[ReasonTooManyErrors]; got != 1 {
		t.Errorf("%s = %d", ReasonTooManyErrors, got)
	}
	if n := acc.callCount(); n != 0 {
		t.Errorf("Accept called %d times", n)
	}
}

// Relay refusals and go-smtp's own replies (RCPT without MAIL) count too,
// with a configured limit.
func TestErrorLimitCountsEveryError(t *testing.T) {
	const limit = 5
	_, addr, _ := startServer(t, Config{AllowedNetworks: onlyLocalhost, MaxErrors: limit}, &fakeAcceptor{})
	c := dialFrom(t, addr, "127.0.0.2")
	c.expect("220 ")
	c.ehlo()
	var lines []string
	for range 20 {
		lines = append(lines, "MAIL FROM:<s@example.org>", "RCPT TO:<r@example.com>", "NOOP")
	}
	c.send(lines...)
	errs := 0
	for errs < limit {
		switch got := c.reply(); {
		case strings.HasPrefix(got, "550 5.7.1 relaying denied"), strings.HasPrefix(got, "502 5.5.1 "):
			errs++
		case strings.HasPrefix(got, "250 "):
		default:
			t.Fatalf("after %d errors: %q", errs, got)
		}
	}
	c.expect("421 4.7.0 Too many errors")
	c.expectEOF()
}

// A correct client that goes over MaxRecipients gets many 452s
// (RFC 5321 §4.5.3.1.10), which do not count as errors.
func TestTooManyRecipientsNotErrors(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{MaxRecipients: 2, MaxErrors: 3}, acc)
	c := dial(t, addr)
	c.ehlo()
	lines := []string{"MAIL FROM:<s@example.org>"}
	for i := range 10 {
		lines = append(lines, fmt.Sprintf("RCPT TO:<r%d@example.com>", i))
	}
	c.send(append(lines, "DATA")...)
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 ")
	for range 8 {
		c.expect("452 4.5.3 ")
	}
	c.expect("354 ")
	c.send("x\r\n.")
	c.expect("250 ")
}

// In a TLS session the connection sees only ciphertext; the session counts.
func TestErrorStormClosedOverTLS(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	_, addr, _ := startServer(t, Config{TLSConfig: serverTLS}, &fakeAcceptor{})
	c := dial(t, addr)
	c.ehlo()
	c.send("STARTTLS")
	c.expect("220 ")
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.penstock.test", RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, tp: textproto.NewConn(tc)}
	c.ehlo()
	c.send("MAIL FROM:<s@example.org>")
	c.expect("250 ")
	for i := range DefaultMaxErrors {
		c.send("RCPT TO:<bad@exa_mple.com>")
		if got := c.reply(); !strings.HasPrefix(got, "501 5.1.3 ") {
			t.Fatalf("reply %d: %q", i+1, got)
		}
	}
	c.expect("421 4.7.0 Too many errors")
	c.expectEOF()
}
