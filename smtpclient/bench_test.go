package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
)

// fastSink is the cheapest server that still speaks SMTP: it accepts
// everything, reads the data, and flushes its replies only when it has read
// all the client sent (so a pipelined group gets its replies in one write).
// With chunking it offers CHUNKING and takes BDAT.
func fastSink(tb testing.TB, chunking bool) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				sinkConn(conn, chunking)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func sinkConn(conn net.Conn, chunking bool) {
	r := bufio.NewReaderSize(conn, 64<<10)
	w := bufio.NewWriterSize(conn, 4<<10)
	w.WriteString("220 sink ESMTP\r\n")
	for {
		if r.Buffered() == 0 && w.Flush() != nil {
			return
		}
		line, err := r.ReadSlice('\n')
		if err != nil || len(line) < 4 {
			return
		}
		switch string(bytes.ToUpper(line[:4])) {
		case "EHLO":
			w.WriteString("250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n")
			if chunking {
				w.WriteString("250-CHUNKING\r\n")
			}
			w.WriteString("250 ENHANCEDSTATUSCODES\r\n")
		case "BDAT":
			// The size, read in place: the sink's own allocations would
			// count in the client's benchmark.
			n := 0
			for _, d := range bytes.TrimSpace(line[4:]) {
				if d < '0' || d > '9' {
					break
				}
				n = n*10 + int(d-'0')
			}
			if _, err := r.Discard(n); err != nil {
				return
			}
			w.WriteString("250 2.0.0 Ok: queued\r\n")
		case "MAIL":
			w.WriteString("250 2.1.0 Ok\r\n")
		case "RCPT":
			w.WriteString("250 2.1.5 Ok\r\n")
		case "RSET":
			w.WriteString("250 2.0.0 Ok\r\n")
		case "DATA":
			w.WriteString("354 End data with <CR><LF>.<CR><LF>\r\n")
			if w.Flush() != nil {
				return
			}
			for {
				l, err := r.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(l) == 3 && l[0] == '.' {
					break
				}
			}
			w.WriteString("250 2.0.0 Ok: queued\r\n")
		case "QUIT":
			w.WriteString("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("502 5.5.2 unknown\r\n")
		}
	}
}

// body2K is a 2 KB message with realistic line lengths.
func body2K() []byte {
	var b strings.Builder
	b.WriteString("From: sender@example.org\r\nTo: rcpt@example.com\r\nSubject: benchmark\r\nMessage-ID: <1@example.org>\r\n\r\n")
	for b.Len() < 2048 {
		b.WriteString(strings.Repeat("lorem ipsum ", 6) + "dolor sit\r\n")
	}
	return []byte(b.String()[:2046] + "\r\n")
}

func BenchmarkSend(b *testing.B) { benchSend(b, false) }

// BenchmarkSendChunked is BenchmarkSend to a server with CHUNKING: the
// message goes as one BDAT chunk.
func BenchmarkSendChunked(b *testing.B) { benchSend(b, true) }

func benchSend(b *testing.B, chunking bool) {
	addr := fastSink(b, chunking)
	c, err := Dial(context.Background(), addr, testOpts())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := body2K()
	rcpts := []string{"rcpt@example.com"}
	ctx, cancel := context.WithCancel(context.Background()) // as a session would: a cancellable context
	defer cancel()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Send(ctx, "sender@example.org", rcpts, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSendParallel runs one connection per goroutine, as the queue's
// sessions do.
func BenchmarkSendParallel(b *testing.B) {
	addr := fastSink(b, false)
	body := body2K()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		c, err := Dial(context.Background(), addr, testOpts())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rcpts := []string{"rcpt@example.com"}
		for pb.Next() {
			if _, err := c.Send(context.Background(), "sender@example.org", rcpts, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkScanBody: the pass Send makes over every body before MAIL (SIZE,
// 8BITMIME, and whether it can go out in one copy), on a 100 KB ASCII
// message of 78-byte lines.
func BenchmarkScanBody(b *testing.B) {
	line := []byte(strings.Repeat("x", 76) + "\r\n")
	body := bytes.Repeat(line, 100<<10/len(line))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if s := scanBody(body); s.eightBit || !s.asIs() {
			b.Fatal("scanBody: wrong answer")
		}
	}
}

// BenchmarkDialSendQuit is a connection that carries one message, as most
// do in a campaign to many domains. The sink's own buffers (68 KB a
// connection) count in B/op too.
func BenchmarkDialSendQuit(b *testing.B) {
	addr := fastSink(b, true)
	body := []byte(strings.Repeat("x", 2000) + "\r\n")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, err := Dial(ctx, addr, Options{EHLO: "bench.test"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Send(ctx, "f@x.test", []string{"a@y.test"}, body); err != nil {
			b.Fatal(err)
		}
		c.Quit(ctx)
	}
}
