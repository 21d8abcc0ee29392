package smtpserver

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// garbageLine makes one hostile input line. It mixes real commands with
// random arguments, random bytes (bare LF and CR included), NULs and lines
// over the length limit, but never anything that could complete a
// transaction: no '.' before a CR (so no end-of-data marker can form) and no
// "LAST" (so BDAT never finishes).
func garbageLine(rng *rand.Rand) []byte {
	valid := []string{"MAIL FROM:<s@example.org>", "MAIL FROM:<>", "RCPT TO:<r@example.com>", "RCPT TO:<δ@example.com>",
		"DATA", "RSET", "NOOP", "EHLO client.test", "MAIL FROM:<s@example.org> SMTPUTF8 BODY=8BITMIME", "AUTH LOGIN",
		"AUTH PLAIN", "BDAT 10", "RCPT TO:<x@[IPv6:::1]>", "MAIL FROM:<> SIZE=99999"}
	cmds := []string{"MAIL FROM:", "RCPT TO:", "DATA", "EHLO ", "HELO", "AUTH PLAIN ", "BDAT ", "VRFY x", "STARTTLS",
		"QUIT", "mail from:<", "rcpt to:<", "MAIL FROM:<> SIZE=", "RCPT TO:<x@[", "AUTH CRAM-MD5"}
	var b []byte
	switch k := rng.IntN(20); {
	case k < 10: // a well-formed command, in an order that may make no sense
		b = []byte(valid[rng.IntN(len(valid))])
	case k < 15: // a command with random printable junk
		b = []byte(cmds[rng.IntN(len(cmds))])
		for range rng.IntN(80) {
			b = append(b, byte(0x20+rng.IntN(0x5f)))
		}
		if rng.IntN(3) == 0 {
			b = strconv.AppendInt(b, int64(rng.IntN(200)), 10)
		}
	case k < 18: // random octets of any value, bare CR and LF included
		for range rng.IntN(300) {
			b = append(b, byte(rng.IntN(256)))
		}
	default: // a run of one character, sometimes over the line limit
		n := rng.IntN(100)
		if rng.IntN(4) == 0 {
			n = 2500
		}
		b = bytes.Repeat([]byte{byte('!' + rng.IntN(90))}, n)
	}
	for i := range b {
		if b[i] == '\r' && (i == 0 || b[i-1] == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = append(b, 'x')
	}
	for i := 0; i+4 <= len(b); i++ {
		if bytes.EqualFold(b[i:i+4], []byte("LAST")) {
			b[i+2] = '_'
		}
	}
	return append(b, '\r', '\n')
}

func TestGarbageKeepsServing(t *testing.T) {
	acc := &fakeAcceptor{}
	_, addr, _ := startServer(t, Config{Users: map[string]string{"app": "s3cret"}, MaxMessageSize: 4096}, acc)

	const workers, connsPerWorker, linesPerConn = 4, 10, 60
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range connsPerWorker {
				garbageSession(t, addr, rng, linesPerConn)
			}
		})
	}
	wg.Wait()
	if n := acc.callCount(); n != 0 {
		t.Fatalf("Accept called %d times for incomplete transactions", n)
	}

	// Still serving, and a real transaction still works.
	c := dial(t, addr)
	c.ehlo()
	if got := c.sendMessage("s@example.org", []string{"r@example.com"}, "after the storm\r\n"); got != "250 2.0.0 OK queued as M1" {
		t.Fatalf("real message after garbage: %q", got)
	}
	if n := acc.callCount(); n != 1 {
		t.Fatalf("Accept called %d times, want 1", n)
	}
}

// garbageSession writes lines to one connection, then half-closes it and
// waits until the server has read everything and closed its side.
func garbageSession(t *testing.T, addr string, rng *rand.Rand, lines int) {
	conn, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testDeadline))
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, conn)
		drained <- err
	}()
	if _, err := io.WriteString(conn, "EHLO garbage.test\r\n"); err != nil {
		t.Error(err)
		return
	}
	for range lines {
		if _, err := conn.Write(garbageLine(rng)); err != nil {
			break // the server hung up: too many errors, a long line, QUIT
		}
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case <-drained:
	case <-time.After(testDeadline):
		t.Error("server did not close a garbage session")
	}
}
