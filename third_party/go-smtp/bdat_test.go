package smtp_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// bdatDeadline bounds every wait of the BDAT tests.
const bdatDeadline = 10 * time.Second

// bdatBackend hands Data (and LMTPData, when lmtp is set) to the test's
// functions; the sessions keep nothing else.
type bdatBackend struct {
	data func(r io.Reader) error
	lmtp func(r io.Reader, rcpts []string, sc smtp.StatusCollector) error
}

func (be *bdatBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	s := &bdatSession{be: be}
	if be.lmtp != nil {
		return &bdatLMTPSession{s}, nil
	}
	return s, nil
}

type bdatSession struct {
	be    *bdatBackend
	rcpts []string
}

func (s *bdatSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *bdatSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *bdatSession) Data(r io.Reader) error { return s.be.data(r) }
func (s *bdatSession) Reset()                 { s.rcpts = nil }
func (s *bdatSession) Logout() error          { return nil }

type bdatLMTPSession struct{ *bdatSession }

func (s *bdatLMTPSession) LMTPData(r io.Reader, sc smtp.StatusCollector) error {
	return s.be.lmtp(r, s.rcpts, sc)
}

// syncBuffer is a log destination the test reads while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bdatClient is a raw client: it writes exactly what the test gives it.
type bdatClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// startBdat serves be on a loopback port and returns a client that has
// greeted it (EHLO, or LHLO for LMTP).
func startBdat(t testing.TB, be *bdatBackend, configure func(*smtp.Server)) (*smtp.Server, *bdatClient) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtp.NewServer(be)
	s.Domain = "localhost"
	s.ErrorLog = log.New(io.Discard, "", 0)
	if configure != nil {
		configure(s)
	}
	served := make(chan struct{})
	go func() {
		s.Serve(l)
		close(served)
	}()
	t.Cleanup(func() {
		s.Close()
		select {
		case <-served:
		case <-time.After(bdatDeadline):
			t.Error("Serve did not return")
		}
	})
	conn, err := net.DialTimeout("tcp", l.Addr().String(), bdatDeadline)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(bdatDeadline))
	t.Cleanup(func() { conn.Close() })
	c := &bdatClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect("220 ")
	if s.LMTP {
		c.write("LHLO localhost\r\n")
	} else {
		c.write("EHLO localhost\r\n")
	}
	c.expect("250-Hello localhost\n")
	return s, c
}

func (c *bdatClient) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply; the lines of a multi-line one are joined with "\n".
func (c *bdatClient) reply() string {
	c.t.Helper()
	var lines []string
	for len(lines) < 100 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (after %q)", err, lines)
		}
		line = strings.TrimSuffix(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	return strings.Join(lines, "\n")
}

func (c *bdatClient) expect(want string) {
	c.t.Helper()
	if got := c.reply(); !strings.HasPrefix(got, want) {
		c.t.Fatalf("reply %q, want %q", got, want)
	}
}

func (c *bdatClient) expectEOF() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("read %q, want the connection closed", line)
	}
}

func waitFor(t testing.TB, ch <-chan string, what string) string {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(bdatDeadline):
		t.Fatalf("timed out waiting for %s", what)
		return ""
	}
}

// readAllTo is a Data that sends what it read (or its error) on got.
func readAllTo(got chan<- string) func(io.Reader) error {
	return func(r io.Reader) error {
		b, err := io.ReadAll(r)
		if err != nil {
			got <- "error: " + err.Error()
			return err
		}
		got <- string(b)
		return nil
	}
}

// bdatTx is MAIL, RCPT and one BDAT LAST chunk with body, for one write.
func bdatTx(body string) string {
	return fmt.Sprintf("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT %d LAST\r\n%s", len(body), body)
}

// The body has DATA's end marker, dot-started lines and a bare CR and LF:
// BDAT takes them as they are. A second transaction, and a command, follow
// each chunk in the same write, so a Data reading past its chunk, or a
// chunk parsed as commands, shows.
func TestBdatSingleChunkPipelined(t *testing.T) {
	got := make(chan string, 4)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)}, nil)

	one := "Subject: one\r\n\r\n.\r\n..two dots\r\n.\r\nbare\rCR bare\nLF\r\n.\r\n"
	two := strings.Repeat("NOOP\r\n", 1000) // past the 4 KB read buffer
	c.write(bdatTx(one) + bdatTx(two) + "NOOP\r\n")
	for i := 0; i < 2; i++ {
		c.expect("250 ")
		c.expect("250 ")
		c.expect("250 2.0.0 OK: queued")
	}
	c.expect("250 2.0.0 I have successfully done nothing")
	if b := waitFor(t, got, "the first message"); b != one {
		t.Errorf("first message %q, want %q", b, one)
	}
	if b := waitFor(t, got, "the second message"); b != two {
		t.Errorf("second message is %d bytes, want %d", len(b), len(two))
	}
}

// Data for a message in one chunk runs on the connection's goroutine and
// reads the connection, not a pipe fed by it.
func TestBdatSingleChunkNoPipe(t *testing.T) {
	got := make(chan string, 2)
	_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
		_, isPipe := r.(*io.PipeReader)
		pcs := make([]uintptr, 64)
		frames := runtime.CallersFrames(pcs[:runtime.Callers(1, pcs)])
		onConn := false
		for {
			f, more := frames.Next()
			onConn = onConn || strings.HasSuffix(f.Function, "go-smtp.(*Server).handleConn")
			if !more {
				break
			}
		}
		io.Copy(io.Discard, r)
		got <- fmt.Sprintf("pipe %v, on the connection's goroutine %v", isPipe, onConn)
		return nil
	}}, nil)

	c.write(bdatTx("hello\r\n"))
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 OK: queued")
	if s, want := waitFor(t, got, "Data"), "pipe false, on the connection's goroutine true"; s != want {
		t.Errorf("Data: %s, want %s", s, want)
	}

	// Two chunks still go through the pipe.
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 3\r\nabcBDAT 3 LAST\r\ndef")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 Continue")
	c.expect("250 2.0.0 OK: queued")
	if s, want := waitFor(t, got, "Data"), "pipe true, on the connection's goroutine false"; s != want {
		t.Errorf("Data for two chunks: %s, want %s", s, want)
	}
}

// Multi-chunk messages, on either side of single-chunk ones on the same
// connection, arrive whole.
func TestBdatMultiChunk(t *testing.T) {
	got := make(chan string, 4)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)}, nil)

	c.write(bdatTx("single one\r\n"))
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 5\r\nfirstBDAT 0\r\nBDAT 7\r\n second" +
		"BDAT 2 LAST\r\n\r\n")
	c.write(bdatTx("single two\r\n"))
	for _, want := range []string{"250 ", "250 ", "250 2.0.0 OK: queued",
		"250 ", "250 ", "250 2.0.0 Continue", "250 2.0.0 Continue", "250 2.0.0 Continue", "250 2.0.0 OK: queued",
		"250 ", "250 ", "250 2.0.0 OK: queued"} {
		c.expect(want)
	}
	for _, want := range []string{"single one\r\n", "first second\r\n", "single two\r\n"} {
		if b := waitFor(t, got, "a message"); b != want {
			t.Errorf("message %q, want %q", b, want)
		}
	}
}

// A Data that fails part way through the chunk has its error for a reply;
// the rest of the chunk, here command text, is discarded, not run.
func TestBdatSingleChunkDataError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "refused"}, "554 5.6.0 refused"},
		{errors.New("disk on fire"), "554 5.0.0 Error: transaction failed: disk on fire"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			calls := make(chan string, 4)
			tcErr := tc.err
			_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
				var b [5]byte
				io.ReadFull(r, b[:])
				calls <- string(b[:])
				return tcErr
			}}, nil)

			chunk := strings.Repeat("NOOP\r\n", 2000)
			c.write(bdatTx(chunk) + "NOOP\r\n")
			c.expect("250 ")
			c.expect("250 ")
			c.expect(tc.want)
			c.expect("250 2.0.0 I have successfully done nothing")
			if s := waitFor(t, calls, "Data"); s != "NOOP\r" {
				t.Errorf("Data read %q", s)
			}

			// The transaction is over: RCPT needs a new MAIL.
			c.write("RCPT TO:<b@example.com>\r\n")
			c.expect("502 ")
			c.write(bdatTx("x") + "NOOP\r\n")
			c.expect("250 ")
			c.expect("250 ")
			c.expect(tc.want)
			c.expect("250 ")
		})
	}
}

// A Data that returns nil before the end of the chunk: the rest is
// discarded and the message accepted, as for DATA.
func TestBdatSingleChunkDataStopsEarly(t *testing.T) {
	_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
		var b [1]byte
		r.Read(b[:])
		return nil
	}}, nil)
	c.write(bdatTx(strings.Repeat("NOOP\r\n", 2000)) + "NOOP\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 OK: queued")
	c.expect("250 2.0.0 I have successfully done nothing")
}

// A client that goes away inside the chunk has not sent a message: Data
// sees an error, as for DATA, not the end of a shorter message.
func TestBdatSingleChunkCut(t *testing.T) {
	got := make(chan string, 1)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)}, nil)
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 100 LAST\r\nonly ten.\n")
	c.conn.(*net.TCPConn).CloseWrite()
	if s := waitFor(t, got, "Data"); s != "error: "+io.ErrUnexpectedEOF.Error() {
		t.Errorf("Data got %q, want %v", s, io.ErrUnexpectedEOF)
	}
}

// A panic in Data gets the same reply as a panic anywhere else, is logged,
// and ends the connection.
func TestBdatSingleChunkPanic(t *testing.T) {
	var logged syncBuffer
	_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
		var b [3]byte
		io.ReadFull(r, b[:])
		panic("Data is on fire")
	}}, func(s *smtp.Server) { s.ErrorLog = log.New(&logged, "", 0) })

	c.write(bdatTx(strings.Repeat("xxxxxxxx\r\n", 1000)))
	c.expect("250 ")
	c.expect("250 ")
	c.expect("421 4.0.0 Internal server error")
	c.expectEOF()
	if l := logged.String(); !strings.Contains(l, "panic serving") || !strings.Contains(l, "Data is on fire") {
		t.Errorf("log %q, want the panic", l)
	}
}

// SIZE is checked against the chunk before Data sees any of it; a chunk of
// exactly the limit is allowed.
func TestBdatSingleChunkTooLarge(t *testing.T) {
	got := make(chan string, 2)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)},
		func(s *smtp.Server) { s.MaxMessageBytes = 60 })

	c.write(bdatTx(strings.Repeat("NOOP\r\n", 11)) + "NOOP\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("552 5.3.4 Max message size exceeded")
	c.expect("250 2.0.0 I have successfully done nothing")
	c.write("RCPT TO:<b@example.com>\r\n")
	c.expect("502 ")

	c.write(bdatTx(strings.Repeat("NOOP\r\n", 10)))
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 OK: queued")
	if b := waitFor(t, got, "Data"); b != strings.Repeat("NOOP\r\n", 10) {
		t.Errorf("message %q", b)
	}
	select {
	case b := <-got:
		t.Errorf("Data got the oversized chunk too: %q", b)
	default:
	}
}

// The chunk's lines may be longer than MaxLineLength; the limit is back for
// the commands after it.
func TestBdatSingleChunkLineLimit(t *testing.T) {
	entered := make(chan string, 1)
	got := make(chan string, 1)
	_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
		entered <- ""
		return readAllTo(got)(r)
	}}, func(s *smtp.Server) { s.MaxLineLength = 100 })

	// The long line is sent once Data runs: sent with the command, it
	// could be read with the command, under the line limit.
	long := strings.Repeat("y", 500) + "\r\n"
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n" +
		fmt.Sprintf("BDAT %d LAST\r\n", len(long)))
	c.expect("250 ")
	c.expect("250 ")
	waitFor(t, entered, "Data")
	c.write(long + "NOOP\r\n")
	c.expect("250 2.0.0 OK: queued")
	c.expect("250 2.0.0 I have successfully done nothing")
	if b := waitFor(t, got, "the message"); b != long {
		t.Errorf("message is %d bytes, want %d", len(b), len(long))
	}
	c.write("NOOP " + strings.Repeat("z", 200) + "\r\n")
	c.expect("500 5.4.0 Too long line")
}

// LMTP: one reply per recipient, from LMTPData's statuses, or from Data's
// error when the session has no LMTPData.
func TestBdatSingleChunkLMTP(t *testing.T) {
	lmtpTx := func(body string) string {
		return fmt.Sprintf("MAIL FROM:<a@example.org>\r\nRCPT TO:<one@example.com>\r\nRCPT TO:<two@example.com>\r\n"+
			"RCPT TO:<one@example.com>\r\nBDAT %d LAST\r\n%s", len(body), body)
	}
	refused := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}

	t.Run("LMTPData", func(t *testing.T) {
		got := make(chan string, 1)
		_, c := startBdat(t, &bdatBackend{lmtp: func(r io.Reader, rcpts []string, sc smtp.StatusCollector) error {
			b, err := io.ReadAll(r)
			got <- string(b)
			if err != nil {
				return err
			}
			sc.SetStatus("two@example.com", refused)
			sc.SetStatus("one@example.com", nil)
			return nil // the second one@ gets this
		}}, func(s *smtp.Server) { s.LMTP = true })

		c.write(lmtpTx("hello\r\n.\r\n") + "NOOP\r\n")
		for i := 0; i < 4; i++ {
			c.expect("250 ")
		}
		c.expect("250 2.0.0 <one@example.com> OK: queued")
		c.expect("550 5.1.1 <two@example.com> no such user")
		c.expect("250 2.0.0 <one@example.com> OK: queued")
		c.expect("250 2.0.0 I have successfully done nothing")
		if b := waitFor(t, got, "LMTPData"); b != "hello\r\n.\r\n" {
			t.Errorf("message %q", b)
		}
	})

	t.Run("LMTPData fails early", func(t *testing.T) {
		_, c := startBdat(t, &bdatBackend{lmtp: func(r io.Reader, rcpts []string, sc smtp.StatusCollector) error {
			sc.SetStatus("two@example.com", nil)
			return refused
		}}, func(s *smtp.Server) { s.LMTP = true })

		c.write(lmtpTx(strings.Repeat("NOOP\r\n", 2000)) + "NOOP\r\n")
		for i := 0; i < 4; i++ {
			c.expect("250 ")
		}
		c.expect("550 5.1.1 <one@example.com> no such user")
		c.expect("250 2.0.0 <two@example.com> OK: queued")
		c.expect("550 5.1.1 <one@example.com> no such user")
		c.expect("250 2.0.0 I have successfully done nothing")
	})

	t.Run("Data only", func(t *testing.T) {
		_, c := startBdat(t, &bdatBackend{data: func(r io.Reader) error {
			io.Copy(io.Discard, r)
			return refused
		}}, func(s *smtp.Server) { s.LMTP = true })

		c.write(lmtpTx("hello\r\n") + "NOOP\r\n")
		for i := 0; i < 4; i++ {
			c.expect("250 ")
		}
		c.expect("550 5.1.1 <one@example.com> no such user")
		c.expect("550 5.1.1 <two@example.com> no such user")
		c.expect("550 5.1.1 <one@example.com> no such user")
		c.expect("250 2.0.0 I have successfully done nothing")
	})

	t.Run("panic", func(t *testing.T) {
		_, c := startBdat(t, &bdatBackend{lmtp: func(r io.Reader, rcpts []string, sc smtp.StatusCollector) error {
			io.Copy(io.Discard, r)
			sc.SetStatus("two@example.com", nil)
			panic("LMTPData is on fire")
		}}, func(s *smtp.Server) { s.LMTP = true })

		c.write(lmtpTx("hello\r\n"))
		for i := 0; i < 4; i++ {
			c.expect("250 ")
		}
		c.expect("421 4.0.0 <one@example.com> Internal server error")
		c.expect("250 2.0.0 <two@example.com> OK: queued")
		c.expect("421 4.0.0 <one@example.com> Internal server error")
		c.expectEOF()
	})
}

// BenchmarkBDATSingleChunk is one client sending 2 KB messages, each as
// MAIL, RCPT and BDAT LAST with the body in one write, over loopback TCP.
func BenchmarkBDATSingleChunk(b *testing.B) {
	var body strings.Builder
	body.WriteString("From: bench@example.org\r\nTo: r@example.com\r\nSubject: bench\r\n\r\n")
	for body.Len() < 2048-80 {
		body.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	tx := []byte(bdatTx(body.String()))

	var buf bytes.Buffer // read as Penstock's smtpserver does
	_, c := startBdat(b, &bdatBackend{data: func(r io.Reader) error {
		buf.Reset()
		_, err := buf.ReadFrom(r)
		return err
	}}, nil)
	c.conn.SetDeadline(time.Now().Add(time.Minute))
	b.SetBytes(int64(body.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.conn.Write(tx); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 3; j++ {
			line, err := c.r.ReadSlice('\n')
			if err != nil || line[0] != '2' {
				b.Fatalf("reply %q, %v", line, err)
			}
		}
	}
}

// A chunk is octets, not lines (RFC 3030): a chunk written with its command,
// as pipelining clients write it, is not held to MaxLineLength, though the
// server reads it from the socket with the commands, under the limit. The
// command lines around it still are.
func TestBdatPipelinedLongLines(t *testing.T) {
	got := make(chan string, 8)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)}, nil) // MaxLineLength 2000

	for _, body := range []string{
		"Subject: long\r\n\r\n" + strings.Repeat("x", 3000) + "\r\nend\r\n",
		strings.Repeat("y", 70000), // no LF at all, past the read buffer
	} {
		// A command follows the chunk in the same write.
		c.write(bdatTx(body) + "NOOP\r\n")
		c.expect("250 ")
		c.expect("250 ")
		c.expect("250 2.0.0 OK: queued")
		c.expect("250 2.0.0 I have successfully done nothing")
		if b := waitFor(t, got, "the message"); b != body {
			t.Errorf("message is %d bytes, %.40q..., want %d", len(b), b, len(body))
		}
	}

	// Chunks wholly read with the commands, their lines and the command
	// after them together over the limit: the count starts again after a
	// chunk, at the command.
	two := "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 1990\r\n" + strings.Repeat("z", 1990) +
		"BDAT 10 LAST\r\n" + strings.Repeat("z", 10)
	c.write(two + bdatTx(strings.Repeat("w", 1995)) + "NOOP\r\n")
	for _, want := range []string{"250 ", "250 ", "250 2.0.0 Continue", "250 2.0.0 OK: queued",
		"250 ", "250 ", "250 2.0.0 OK: queued", "250 2.0.0 I have successfully done nothing"} {
		c.expect(want)
	}
	if b := waitFor(t, got, "the message"); b != strings.Repeat("z", 2000) {
		t.Errorf("two chunks: message %.40q... (%d bytes)", b, len(b))
	}
	if b := waitFor(t, got, "the message"); b != strings.Repeat("w", 1995) {
		t.Errorf("message %.40q... (%d bytes)", b, len(b))
	}

	// The next transaction, in its own write, works; the chunk's last
	// line, without a line break, does not count against the command line
	// after it.
	c.write(bdatTx(strings.Repeat("v", 1990)))
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 OK: queued")
	if b := waitFor(t, got, "the message"); b != strings.Repeat("v", 1990) {
		t.Errorf("message %.40q... (%d bytes)", b, len(b))
	}
	c.write("NOOP " + strings.Repeat("n", 1900) + "\r\n")
	c.expect("250 2.0.0 I have successfully done nothing")

	// A command line over the limit is refused as before.
	c.write("NOOP " + strings.Repeat("n", 3000) + "\r\n")
	c.expect("500 5.4.0 Too long line, closing connection")
	c.expectEOF()
}

// A chunk refused with its command (no transaction, over SIZE) is
// discarded as octets too: its lines do not count against the limit.
func TestBdatRefusedChunkLongLine(t *testing.T) {
	_, c := startBdat(t, &bdatBackend{data: readAllTo(make(chan string, 1))},
		func(s *smtp.Server) { s.MaxMessageBytes = 100 })
	chunk := strings.Repeat("x", 3000) + "\r\n"
	c.write(fmt.Sprintf("BDAT %d LAST\r\n%sNOOP\r\n", len(chunk), chunk))
	c.expect("502 5.5.1 Missing RCPT TO command.")
	c.expect("250 2.0.0 I have successfully done nothing")
	c.write(bdatTx(chunk) + "NOOP\r\n")
	c.expect("250 ")
	c.expect("250 ")
	c.expect("552 5.3.4 Max message size exceeded")
	c.expect("250 2.0.0 I have successfully done nothing")
}

// Commands read in the same read as a command line over the limit are
// answered before the connection is refused for it.
func TestBdatGoodCommandsBeforeTooLongLine(t *testing.T) {
	_, c := startBdat(t, &bdatBackend{data: readAllTo(make(chan string, 1))}, nil)
	c.write("NOOP\r\nMAIL FROM:<a@example.org>\r\nNOOP " + strings.Repeat("n", 3000) + "\r\nNOOP\r\n")
	c.expect("250 2.0.0 I have successfully done nothing")
	c.expect("250 2.0.0 Roger, accepting mail from <a@example.org>")
	c.expect("500 5.4.0 Too long line, closing connection")
	c.expectEOF()
}

// A client that goes away inside the last of several chunks has not sent
// a message: Data gets ErrDataReset, as when the connection ends between
// chunks, and the client no 250.
func TestBdatMultiChunkCut(t *testing.T) {
	got := make(chan string, 1)
	_, c := startBdat(t, &bdatBackend{data: readAllTo(got)}, nil)
	c.write("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nBDAT 3\r\nabcBDAT 100 LAST\r\nonly ten.\n")
	c.conn.(*net.TCPConn).CloseWrite()
	c.expect("250 ")
	c.expect("250 ")
	c.expect("250 2.0.0 Continue")
	if s := waitFor(t, got, "Data"); s != "error: "+smtp.ErrDataReset.Error() {
		t.Errorf("Data got %q, want %v", s, smtp.ErrDataReset)
	}
	for i := 0; i < 10; i++ {
		line, err := c.r.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "250") {
			t.Fatalf("reply %q to a cut message", line)
		}
	}
}
