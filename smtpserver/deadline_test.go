package smtpserver

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/internal/testconn"
)

// recordingListener hands out connections that record the read deadlines
// set on the socket.
type recordingListener struct {
	net.Listener
	conns chan *testconn.Deadlines
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &testconn.Deadlines{Conn: c}
	l.conns <- rc
	return rc, nil
}

// go-smtp asks for a read deadline before every command and a write
// deadline before every reply; the socket's are set far less often, and
// never sooner than ReadTimeout or WriteTimeout from when they were set (at
// most 1/64 of it later).
func TestDeadlinesSetOncePerBurst(t *testing.T) {
	const timeout, wtimeout = 5 * time.Minute, time.Minute
	s, err := New(Config{Hostname: "mx.penstock.test", ReadTimeout: timeout, WriteTimeout: wtimeout,
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, &fakeAcceptor{}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: l, conns: make(chan *testconn.Deadlines, 1)}
	served := make(chan error, 1)
	go func() { served <- s.Serve(rl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		waitChan(t, served, "Serve to return")
	})

	c := dial(t, l.Addr().String())
	rc := waitChan(t, rl.conns, "the server to accept")
	c.ehlo()
	const messages = 5
	for range messages {
		if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "hello\r\n"); got[:4] != "250 " {
			t.Fatalf("DATA reply %q", got)
		}
	}
	c.send("QUIT")
	c.expect("221 ")

	sets := rc.Sets(testconn.Read)
	// go-smtp asks before each command: 18 times here.
	if len(sets) == 0 || len(sets) > 4 {
		t.Errorf("socket read deadline set %d times for %d messages, want 1 to 4", len(sets), messages)
	}
	for _, d := range sets {
		if left := d.Deadline.Sub(d.At); left < timeout-time.Second || left > timeout+timeout/64 {
			t.Errorf("read deadline %v ahead when set, want [%v, %v]", left, timeout, timeout+timeout/64)
		}
	}
	// go-smtp asks before each reply: 23 times here. The last one set is
	// the second's bound on writing the 221 when the connection closes.
	var replies int
	for _, d := range rc.Sets(testconn.Write) {
		if left := d.Deadline.Sub(d.At); left > 2*time.Second {
			replies++
			if left < wtimeout-time.Second || left > wtimeout+wtimeout/64 {
				t.Errorf("write deadline %v ahead when set, want [%v, %v]", left, wtimeout, wtimeout+wtimeout/64)
			}
		}
	}
	if replies == 0 || replies > 4 {
		t.Errorf("socket write deadline set %d times for %d messages, want 1 to 4", replies, messages)
	}
}
