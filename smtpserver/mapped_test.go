package smtpserver

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// mappedListener shows each client as a dual-stack socket does: an IPv4
// client at 127.0.0.1 appears as ::ffff:127.0.0.1.
type mappedListener struct{ net.Listener }

func (l mappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	a := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	return mappedConn{c, net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port()))}, nil
}

type mappedConn struct {
	net.Conn
	remote net.Addr
}

func (c mappedConn) RemoteAddr() net.Addr { return c.remote }

// TestRelayMatchesMappedClients: allowed networks in either spelling match a
// client in either spelling, and a network that leaves the client out still
// denies it.
func TestRelayMatchesMappedClients(t *testing.T) {
	for _, tc := range []struct {
		network string
		mapped  bool // the client shows as ::ffff:127.0.0.1
		allowed bool
	}{
		{"127.0.0.0/8", true, true},
		{"::ffff:127.0.0.0/104", false, true},
		{"::ffff:127.0.0.0/104", true, true},
		{"::ffff:127.0.0.2/128", true, false},
		{"127.0.0.2/32", true, false},
	} {
		p, err := config.ParsePrefix(tc.network)
		if err != nil {
			t.Fatal(err)
		}
		acc := &fakeAcceptor{}
		s, err := New(Config{Hostname: "mx.penstock.test", AllowedNetworks: []netip.Prefix{p}}, acc, testLogger())
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var ll net.Listener = l
		if tc.mapped {
			ll = mappedListener{l}
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(ll) }()

		c := dial(t, l.Addr().String())
		c.ehlo()
		c.send("MAIL FROM:<s@example.org>")
		want := "250 2.0.0 "
		if !tc.allowed {
			want = "550 5.7.1 relaying denied"
		}
		if got := c.reply(); !strings.HasPrefix(got, want) {
			t.Errorf("allowed_networks %s, client mapped=%v: MAIL got %q, want %q", tc.network, tc.mapped, got, want)
		}
		c.conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		select {
		case <-served:
		case <-time.After(testDeadline):
			t.Fatal("Serve did not return")
		}
	}
}
