package smtpserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

type nullAcceptor struct{}

func (nullAcceptor) Accept(context.Context, *Envelope, []byte) (string, error) { return "x", nil }

// message2K is a 2 KB message of 78-octet lines.
func message2K() string {
	var b strings.Builder
	b.WriteString("From: bench@example.org\r\nTo: r@example.com\r\nSubject: bench\r\n\r\n")
	for b.Len() < 2048-80 {
		b.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	return b.String()
}

// benchInject runs b.N messages through 20 concurrent clients. Each client
// pipelines per RFC 2920: MAIL, RCPT and DATA in one write, the body after
// 354 (useBDAT: MAIL, RCPT and BDAT LAST with the body, all in one write).
func benchInject(b *testing.B, useBDAT bool) {
	const clients = 20
	_, addr, _ := startServer(b, Config{MaxConnections: 2 * clients}, nullAcceptor{})
	body := message2K()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range clients {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		wg.Go(func() {
			if err := benchClient(addr, n, body, useBDAT); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchClient(addr string, n int, body string, useBDAT bool) error {
	conn, err := net.DialTimeout("tcp", addr, testDeadline)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Minute))
	w := bufio.NewWriter(conn)
	r := textproto.NewReader(bufio.NewReader(conn))
	expect := func(code int) error {
		if c, msg, err := r.ReadResponse(0); err != nil || c != code {
			return fmt.Errorf("reply %d %s (%v), want %d", c, msg, err, code)
		}
		return nil
	}
	if err := expect(220); err != nil {
		return err
	}
	io.WriteString(w, "EHLO bench.test\r\n")
	w.Flush()
	if err := expect(250); err != nil {
		return err
	}
	for range n {
		io.WriteString(w, "MAIL FROM:<bench@example.org>\r\nRCPT TO:<r@example.com>\r\n")
		if useBDAT {
			fmt.Fprintf(w, "BDAT %d LAST\r\n%s", len(body), body)
			w.Flush()
			for _, code := range []int{250, 250, 250} {
				if err := expect(code); err != nil {
					return err
				}
			}
			continue
		}
		io.WriteString(w, "DATA\r\n")
		w.Flush()
		for _, code := range []int{250, 250, 354} {
			if err := expect(code); err != nil {
				return err
			}
		}
		io.WriteString(w, body)
		io.WriteString(w, ".\r\n")
		w.Flush()
		if err := expect(250); err != nil {
			return err
		}
	}
	io.WriteString(w, "QUIT\r\n")
	w.Flush()
	return expect(221)
}

func BenchmarkInjectPipelined(b *testing.B) { benchInject(b, false) }
func BenchmarkInjectBDAT(b *testing.B)      { benchInject(b, true) }
