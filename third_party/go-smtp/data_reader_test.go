package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
)

// byteDataReader is the byte-at-a-time dataReader.Read of go-smtp v0.25.1,
// kept as the reference the bulk reader must agree with, with v0.25.1's bare
// CR handling fixed the same way: a CR after a bare CR may start CRLF, and
// the CR of a line starting ".\r" is kept when no LF follows.
type byteDataReader struct {
	r     *bufio.Reader
	state int
}

func (r *byteDataReader) Read(b []byte) (n int, err error) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.r.UnreadByte()
			c = '\r'
			r.state = stateCR
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			if c != '\r' {
				r.state = stateData
			}
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	return
}

// readAllSmall reads r to the end in reads of random sizes (1 to 64 bytes).
func readAllSmall(r io.Reader, rng *rand.Rand) ([]byte, error) {
	var out []byte
	for k := 0; k < 1<<20; k++ {
		b := make([]byte, 1+rng.Intn(64))
		n, err := r.Read(b)
		out = append(out, b[:n]...)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
	}
	return out, errors.New("reader did not end")
}

// randomData builds DATA input from pieces that exercise every state:
// dot-stuffed lines, bare CR and LF, ".\r" not followed by LF, long lines,
// and sometimes the end marker followed by the next command.
func randomData(rng *rand.Rand) string {
	pieces := []string{"a", "hello world", "\r\n", "\r", "\n", ".", "..", ".\r", ".\rx", "\r\n.", "\r\n..x", strings.Repeat("z", 300)}
	var sb strings.Builder
	for k, m := 0, rng.Intn(200); k < m; k++ {
		sb.WriteString(pieces[rng.Intn(len(pieces))])
	}
	if rng.Intn(4) > 0 {
		sb.WriteString("\r\n.\r\nQUIT\r\n")
	}
	return sb.String()
}

func TestDataReaderMatchesByteReader(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 3000; i++ {
		in := randomData(rng)
		// A small bufio buffer and a one-byte underlying reader put buffer
		// boundaries everywhere, including between CR and LF.
		size := 16 + rng.Intn(64)
		var src func() io.Reader
		if i%2 == 0 {
			src = func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) }
		} else {
			src = func() io.Reader { return strings.NewReader(in) }
		}

		wantR := bufio.NewReaderSize(src(), size)
		want, wantErr := readAllSmall(&byteDataReader{r: wantR}, rand.New(rand.NewSource(int64(i))))
		gotR := bufio.NewReaderSize(src(), size)
		got, gotErr := readAllSmall(&dataReader{r: gotR}, rand.New(rand.NewSource(int64(i))))

		if !bytes.Equal(got, want) || !errors.Is(gotErr, wantErr) && gotErr != wantErr {
			t.Fatalf("input %q:\ngot  %q, %v\nwant %q, %v", in, got, gotErr, want, wantErr)
		}
		// What follows the end marker is left for the next command.
		restWant, _ := io.ReadAll(wantR)
		restGot, _ := io.ReadAll(gotR)
		if !bytes.Equal(restGot, restWant) {
			t.Fatalf("input %q: left %q, want %q", in, restGot, restWant)
		}
	}
}

func TestLineLimitReaderMatchesByteCount(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < 3000; i++ {
		limit := 1 + rng.Intn(40)
		var sb strings.Builder
		for k, m := 0, rng.Intn(50); k < m; k++ {
			sb.WriteString(strings.Repeat("x", rng.Intn(limit+2)))
			sb.WriteByte('\n')
		}
		in := sb.String()

		// The reference: the per-byte count. Before the error come the
		// lines before the one over the limit, whole, and of that line at
		// most what earlier reads gave: what is under the limit.
		wantErr := error(nil)
		lineStart, over := 0, len(in)
		cur := 0
		for i, c := range []byte(in) {
			if c == '\n' {
				cur, lineStart = 0, i+1
			}
			cur++
			if cur > limit {
				wantErr, over = ErrTooLongLine, i
				break
			}
		}
		if wantErr == nil {
			lineStart = len(in)
		}

		lr := &lineLimitReader{R: strings.NewReader(in), LineLimit: limit}
		got, gotErr := readAllSmall(lr, rng)
		if gotErr != wantErr || !strings.HasPrefix(in, string(got)) || len(got) < lineStart || len(got) > over {
			t.Fatalf("limit %d, input %q: got %q, %v, want %q and at most %q of the rest, %v",
				limit, in, got, gotErr, in[:lineStart], in[lineStart:over], wantErr)
		}
		// Read at once, the line over the limit is held back whole.
		if wantErr != nil {
			b := make([]byte, len(in))
			if n, err := (&lineLimitReader{R: strings.NewReader(in), LineLimit: limit}).Read(b); string(b[:n]) != in[:lineStart] ||
				(err != nil) != (lineStart == 0) {
				t.Fatalf("limit %d, input %q, one read: got %q, %v, want %q", limit, in, b[:n], err, in[:lineStart])
			}
		}
		// The error is sticky: the connection is broken.
		if wantErr != nil {
			if _, err := lr.Read(make([]byte, 8)); err != ErrTooLongLine {
				t.Fatalf("limit %d, input %q: read after the error: %v, want %v", limit, in, err, ErrTooLongLine)
			}
		}
	}
}

// A line over the limit is held back with what follows it, for a caller
// that lifts the limit (a BDAT chunk) before it reads them; restored, the
// limit counts from the first byte after the chunk.
func TestLineLimitReaderHoldsBack(t *testing.T) {
	read := func(lr *lineLimitReader, size int) string {
		t.Helper()
		b := make([]byte, size)
		n, err := lr.Read(b)
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b[:n])
	}
	tooLong := "error: " + ErrTooLongLine.Error()
	const in = "ab\n0123456789\nxy\n"
	for _, tc := range []struct {
		name  string
		steps func(lr *lineLimitReader) []string
		want  []string
	}{
		{"limit on", func(lr *lineLimitReader) []string {
			return []string{read(lr, 64), read(lr, 64), read(lr, 64)}
		}, []string{"ab\n", tooLong, tooLong}},
		{"lifted", func(lr *lineLimitReader) []string {
			s := []string{read(lr, 64)}
			lr.lift()
			return append(s, read(lr, 64), read(lr, 64))
		}, []string{"ab\n", "0123456789\nxy\n", "error: EOF"}},
		{"restored after a short chunk", func(lr *lineLimitReader) []string {
			s := []string{read(lr, 64)}
			lr.lift()
			s = append(s, read(lr, 4))
			lr.restore(5)
			return append(s, read(lr, 64), read(lr, 64))
		}, []string{"ab\n", "0123", tooLong, tooLong}},
		{"restored after a long chunk", func(lr *lineLimitReader) []string {
			s := []string{read(lr, 64)}
			lr.lift()
			s = append(s, read(lr, 8))
			lr.restore(5)
			return append(s, read(lr, 4), read(lr, 64), read(lr, 64))
		}, []string{"ab\n", "01234567", "89\nx", "y\n", "error: EOF"}},
		{"errors while held, then lifted", func(lr *lineLimitReader) []string {
			s := []string{read(lr, 64), read(lr, 64)}
			lr.lift()
			return append(s, read(lr, 3), read(lr, 64))
		}, []string{"ab\n", tooLong, "012", "3456789\nxy\n"}},
	} {
		lr := &lineLimitReader{R: strings.NewReader(in), LineLimit: 5}
		if got := tc.steps(lr); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func BenchmarkDataReader(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 2048 {
		sb.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n")
	}
	sb.WriteString(".\r\n")
	msg := sb.String()
	b.SetBytes(int64(len(msg)))
	br := bufio.NewReader(nil)
	sr := strings.NewReader(msg)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sr.Reset(msg)
		br.Reset(sr)
		if _, err := io.Copy(io.Discard, &dataReader{r: br}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDataReaderBareCR checks what a bare CR (RFC 5321 §2.3.8) becomes: data
// kept as it came, which never hides the CRLF.CRLF that ends DATA
// (§4.1.1.4) nor the dot-stuffing of the line after it (§4.5.2).
func TestDataReaderBareCR(t *testing.T) {
	for _, tc := range []struct{ in, want, rest string }{
		{"a\r\r\n.\r\nQUIT\r\n", "a\r\r\n", "QUIT\r\n"},
		{"a\r\r\n..b\r\n.\r\n", "a\r\r\n.b\r\n", ""},
		{"a\r\r\r\n.\r\n", "a\r\r\r\n", ""},
		{"\r\r\n.\r\n", "\r\r\n", ""},
		{".\rx\r\n.\r\n", "\rx\r\n", ""},
		{".\r\r\n.\r\n", "\r\r\n", ""},
		{".\r.\r\n.\r\n", "\r.\r\n", ""},
		{"a\rb\r\n.\r\n", "a\rb\r\n", ""},
		{"a\r.\r\n.\r\n", "a\r.\r\n", ""},
	} {
		for _, size := range []int{16, 4096} {
			for _, one := range []bool{false, true} {
				var src io.Reader = strings.NewReader(tc.in)
				if one {
					src = iotest.OneByteReader(src)
				}
				br := bufio.NewReaderSize(src, size)
				got, err := readAllSmall(&dataReader{r: br}, rand.New(rand.NewSource(1)))
				if err != nil || string(got) != tc.want {
					t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
				}
				if rest, _ := io.ReadAll(br); string(rest) != tc.rest {
					t.Errorf("%q: left %q, want %q", tc.in, rest, tc.rest)
				}
				// The reference reader agrees.
				br = bufio.NewReaderSize(strings.NewReader(tc.in), size)
				if got, err := io.ReadAll(&byteDataReader{r: br}); err != nil || string(got) != tc.want {
					t.Errorf("reference %q: got %q, %v; want %q", tc.in, got, err, tc.want)
				}
			}
		}
	}
}

// FuzzDataReader checks the reader two ways: on any input it agrees with the
// byte-at-a-time reference, buffer boundaries anywhere; and any body, its
// lines (what CRLF ends) dot-stuffed and the end marker and a command
// after it, reads back as the body itself, the command left unread.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{"", "a\r\n", ".\r\n", "..\r\n", "a\r\r\n", "a\r\r\n..b\r\n", ".\rx\r\n", "\r.\r\r\n", "a\n.\r\n", "a\rb"} {
		f.Add([]byte(s), uint8(16))
	}
	f.Fuzz(func(t *testing.T, body []byte, size uint8) {
		bufSize := 16 + int(size)
		in := string(body) + "\r\n.\r\nQUIT\r\n"
		rng := rand.New(rand.NewSource(int64(size)))
		wantR := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), bufSize)
		want, wantErr := readAllSmall(&byteDataReader{r: wantR}, rng)
		gotR := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), bufSize)
		got, gotErr := readAllSmall(&dataReader{r: gotR}, rng)
		restWant, _ := io.ReadAll(wantR)
		restGot, _ := io.ReadAll(gotR)
		if !bytes.Equal(got, want) || gotErr != wantErr || !bytes.Equal(restGot, restWant) {
			t.Fatalf("input %q:\ngot  %q, %v, left %q\nwant %q, %v, left %q", in, got, gotErr, restGot, want, wantErr, restWant)
		}

		text := string(body)
		if text != "" && !strings.HasSuffix(text, "\r\n") {
			text += "\r\n"
		}
		lines := strings.SplitAfter(text, "\r\n")
		for i, l := range lines {
			if strings.HasPrefix(l, ".") {
				lines[i] = "." + l
			}
		}
		in = strings.Join(lines, "") + ".\r\nQUIT\r\n"
		r := bufio.NewReaderSize(strings.NewReader(in), bufSize)
		got, err := readAllSmall(&dataReader{r: r}, rng)
		rest, _ := io.ReadAll(r)
		if string(got) != text || err != nil || string(rest) != "QUIT\r\n" {
			t.Fatalf("body %q sent as %q: read %q, %v, left %q", body, in, got, err, rest)
		}
	})
}

// BenchmarkLineLimitReader counts the lines of a 2 KB message (76-octet
// lines) read in one 4 KB read, as a connection's bufio.Reader reads it.
func BenchmarkLineLimitReader(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 2048 {
		sb.WriteString(strings.Repeat("x", 74) + "\r\n")
	}
	msg := sb.String()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	sr := strings.NewReader(msg)
	lr := &lineLimitReader{R: sr, LineLimit: 2000}
	buf := make([]byte, 4096)
	for b.Loop() {
		sr.Reset(msg)
		if n, err := lr.Read(buf); n != len(msg) || err != nil {
			b.Fatalf("read %d, %v", n, err)
		}
	}
}
