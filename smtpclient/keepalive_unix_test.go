//go:build unix

package smtpclient

import (
	"net"
	"syscall"
	"testing"
)

// The default dialer leaves TCP keepalive off: deadlines bound every wait,
// and the setsockopt calls would be paid on every connection.
func TestDialNoKeepalive(t *testing.T) {
	_, addr := newGoSMTP(t, nil)
	cl := dialT(t, addr, testOpts())
	defer cl.Close()
	sc, err := cl.netConn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var serr error
	if err := sc.Control(func(fd uintptr) { on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if on != 0 {
		t.Fatalf("SO_KEEPALIVE is %d on a delivery connection", on)
	}
}
