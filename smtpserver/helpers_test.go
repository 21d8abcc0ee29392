package smtpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// testDeadline bounds every network wait in the tests.
const testDeadline = 10 * time.Second

type accepted struct {
	env  Envelope
	body string
}

// fakeAcceptor records what it is given. With block set it announces each
// call on entered and waits for release (or its context); with err set it
// fails.
type fakeAcceptor struct {
	mu      sync.Mutex
	got     []accepted
	calls   int
	err     error
	block   bool
	entered chan struct{}
	release chan struct{}
}

func newBlockingAcceptor() *fakeAcceptor {
	return &fakeAcceptor{block: true, entered: make(chan struct{}, 16), release: make(chan struct{})}
}

func (f *fakeAcceptor) Accept(ctx context.Context, env *Envelope, body []byte) (string, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.block {
		f.entered <- struct{}{}
		select {
		case <-f.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.got = append(f.got, accepted{*env, string(body)})
	return fmt.Sprintf("M%d", len(f.got)), nil
}

func (f *fakeAcceptor) messages() []accepted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]accepted(nil), f.got...)
}

func (f *fakeAcceptor) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func testLogger() *slog.Logger {
	// Debug level so that every log call runs; discarded because go-smtp's
	// goroutines may log after a test has returned.
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer serves cfg on a fresh loopback port and shuts the server down
// when the test ends. By default 127.0.0.0/8 may relay.
// The returned function waits for Serve to return and gives its result.
func startServer(t testing.TB, cfg Config, acc Acceptor) (*Server, string, func() error) {
	t.Helper()
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.penstock.test"
	}
	if cfg.AllowedNetworks == nil {
		cfg.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	s, err := New(cfg, acc, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var serveErr error
	served := make(chan struct{})
	go func() {
		serveErr = s.Serve(l)
		close(served)
	}()
	wait := func() error {
		select {
		case <-served:
			return serveErr
		case <-time.After(testDeadline):
			return errors.New("Serve did not return")
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := wait(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, l.Addr().String(), wait
}

// client is a raw SMTP client: it writes exactly what a test says, so that
// pipelining and malformed input are under the test's control.
type client struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c := dialNoGreeting(t, addr)
	c.expect("220 mx.penstock.test ESMTP Service Ready")
	return c
}

func dialNoGreeting(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(testDeadline))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, tp: textproto.NewConn(conn)}
}

// send writes lines, each ended with CRLF, in one write.
func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply, multi-line ones joined with "\n", as "CODE text".
func (c *client) reply() string {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("read reply: %v", err)
	}
	return fmt.Sprintf("%d %s", code, msg)
}

// expect reads one reply and checks it starts with want.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("reply %q, want %q", got, want)
	}
	return got
}

// expectEOF checks that the server closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	if line, err := c.tp.ReadLine(); err == nil {
		c.t.Fatalf("read %q, want the connection closed", line)
	}
}

func (c *client) ehlo() string {
	c.t.Helper()
	c.send("EHLO client.test")
	return c.expect("250 Hello client.test")
}

// sendMessage runs one pipelined transaction (RFC 2920: MAIL, RCPTs and
// DATA in one write, the body after 354) and returns the DATA reply.
func (c *client) sendMessage(from string, to []string, body string) string {
	c.t.Helper()
	c.beginData(from, to)
	c.send(body + ".")
	return c.reply()
}

// beginData sends MAIL, RCPTs and DATA in one write and expects them
// accepted: the body goes next.
func (c *client) beginData(from string, to []string) {
	c.t.Helper()
	lines := []string{"MAIL FROM:<" + from + ">"}
	for _, r := range to {
		lines = append(lines, "RCPT TO:<"+r+">")
	}
	c.send(append(lines, "DATA")...)
	for range len(to) + 1 {
		c.expect("250 ")
	}
	c.expect("354 ")
}

func waitChan[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testDeadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
