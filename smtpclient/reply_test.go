package smtpclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	good := func(in string, ext bool, code int, enh, text string) {
		t.Helper()
		var rr rawReply
		r := bufio.NewReaderSize(strings.NewReader(in), 64)
		if err := readReply(r, &rr, ext); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := rr.reply(); got != (Reply{code, enh, text}) {
			t.Fatalf("%q: got %+v, want %d %q %q", in, got, code, enh, text)
		}
	}
	bad := func(in string, want error) {
		t.Helper()
		var rr rawReply
		err := readReply(bufio.NewReaderSize(strings.NewReader(in), 64), &rr, true)
		if !errors.Is(err, want) {
			t.Fatalf("%q: got %v, want %v", in, err, want)
		}
	}
	good("250 ok\r\n", false, 250, "", "ok")
	good("250\r\n", false, 250, "", "")
	good("250 \r\n", false, 250, "", "")
	good("250 ok\n", false, 250, "", "ok") // bare LF tolerated
	good("250 2.1.5 ok\r\n", false, 250, "2.1.5", "ok")
	good("250 2.1.5\r\n", true, 250, "2.1.5", "")
	good("550 5.1.10 no\r\n", true, 550, "5.1.10", "no")
	good("451 4.7.999 x\r\n", false, 451, "4.7.999", "x")
	// A class unlike the code's is only an enhanced code if advertised.
	good("550 4.7.1 x\r\n", false, 550, "", "4.7.1 x")
	good("550 4.7.1 x\r\n", true, 550, "4.7.1", "x")
	// Not enhanced codes.
	good("250 2.3.4.5 ip\r\n", true, 250, "", "2.3.4.5 ip")
	good("250 1.2.3 x\r\n", true, 250, "", "1.2.3 x")
	good("250 2.1234.5 x\r\n", true, 250, "", "2.1234.5 x")
	good("250 2.1.5x\r\n", true, 250, "", "2.1.5x")
	good("250 2..5 x\r\n", true, 250, "", "2..5 x")
	good("250-mx hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n", false, 250, "", "mx hello\nPIPELINING\nSIZE 10")
	good("550-5.7.1 a\r\n550-5.7.1 b\r\n550 5.7.1 c\r\n", true, 550, "5.7.1", "a\nb\nc")
	good("550-5.7.1 a\r\n550-\r\n550 c\r\n", true, 550, "5.7.1", "a\n\nc")
	// Overlong line: cut at the buffer, not an error.
	long := strings.Repeat("x", 300)
	good("250 "+long+"\r\n", false, 250, "", long[:60])

	bad("", io.EOF)
	bad("250 ok", io.ErrUnexpectedEOF)
	bad("250-ok\r\n", io.EOF)
	bad("25\r\n", ErrProtocol)
	bad("abc ok\r\n", ErrProtocol)
	bad("150 ok\r\n", ErrProtocol)
	bad("650 ok\r\n", ErrProtocol)
	bad("250_ok\r\n", ErrProtocol)
	bad("250-a\r\n251 b\r\n", ErrProtocol)
	bad(strings.Repeat("250-x\r\n", maxReplyLines+1), ErrProtocol)
	bad("250 "+strings.Repeat("x", maxLineSkip+100)+"\r\n", ErrProtocol)
}

func TestReplyReuseNoAlloc(t *testing.T) {
	in := []byte("250 2.1.5 ok\r\n")
	var rr rawReply
	src := bytes.NewReader(in)
	r := bufio.NewReader(src)
	n := testing.AllocsPerRun(100, func() {
		src.Reset(in)
		r.Reset(src)
		if err := readReply(r, &rr, true); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("readReply allocates %v times", n)
	}
}

func TestReplyString(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want string
	}{
		{Reply{550, "5.1.1", "no such user"}, "550 5.1.1 no such user"},
		{Reply{250, "", "ok"}, "250 ok"},
		{Reply{250, "2.0.0", ""}, "250 2.0.0"},
		{Reply{221, "", ""}, "221"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

// writeBody buffers body as DATA content as Send does when it cannot copy
// it as is: CRLF lines, a leading "." doubled (RFC 5321 §4.5.2), then ".".
func writeBody(w *bufio.Writer, body []byte) {
	writeLines(w, body, true)
	w.WriteString(".\r\n")
}

func TestWriteBody(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\n", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{".\r\n", "..\r\n.\r\n"},
		{"a\n.\nb", "a\r\n..\r\nb\r\n.\r\n"},
		{"a\r\n..\r\n", "a\r\n...\r\n.\r\n"},
		{"x.y\n .z\n", "x.y\r\n .z\r\n.\r\n"},
		{"\n\n", "\r\n\r\n.\r\n"},
		{"a\rb\n", "a\rb\r\n.\r\n"}, // a bare CR is left alone
		{"a\r\r\n", "a\r\r\n.\r\n"},
	} {
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeBody(w, []byte(tc.in))
		w.Flush()
		if b.String() != tc.out {
			t.Errorf("%q: got %q, want %q", tc.in, b.String(), tc.out)
		}
		// SIZE is what was written, without stuffing dots and the final dot.
		s := scanBody([]byte(tc.in))
		if s.asIs() && tc.in+".\r\n" != tc.out {
			t.Errorf("%q: scanBody says it goes as is, but writeBody sends %q", tc.in, tc.out)
		}
		unstuffed := strings.ReplaceAll("\n"+strings.TrimSuffix(tc.out, ".\r\n"), "\n.", "\n")[1:]
		if s.size != int64(len(unstuffed)) {
			t.Errorf("%q: size %d, want %d", tc.in, s.size, len(unstuffed))
		}
	}
}

func TestScanBody8Bit(t *testing.T) {
	// Lengths around the 32-byte rounds, the 8-bit byte at every place.
	for _, n := range []int{20, 31, 32, 33, 64, 100} {
		for i := 0; i < n; i++ {
			b := bytes.Repeat([]byte("a"), n)
			if scanBody(b).eightBit {
				t.Fatalf("%d bytes of ascii seen as 8-bit", n)
			}
			b[i] = 0xc3
			if !scanBody(b).eightBit {
				t.Fatalf("8-bit byte at %d of %d missed", i, n)
			}
		}
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		a            string
		ok, nonASCII bool
	}{
		{"a@b.test", true, false},
		{"", true, false},
		{"jösé@b.test", true, true},
		{"a@b\r\nRSET", false, false},
		{"a@b\n", false, false},
		{"a\x00@b", false, false},
		{"a@b> NOTIFY=NEVER", false, false},
		{"<a@b>", false, false},
	} {
		ok, na := checkAddr(tc.a)
		if ok != tc.ok || na != tc.nonASCII {
			t.Errorf("%q: %v %v", tc.a, ok, na)
		}
	}
}

// A body in CRLF lines with no line starting with "." goes out in one copy;
// anything writeBody would change does not.
func TestScanBodyAsIs(t *testing.T) {
	for in, want := range map[string]bool{
		"": true, "a\r\n": true, "Subject: x\r\n\r\nbody\r\n": true, "a\r\r\n": true, "a\rb\r\n": true,
		"a": false, "a\n": false, ".\r\n": false, "a\r\n.b\r\n": false, "a\r\nb": false, "a\r\nb\n": false, "a\r": false,
	} {
		if asIs := scanBody([]byte(in)).asIs(); asIs != want {
			t.Errorf("%q: as is %v, want %v", in, asIs, want)
		}
	}
}
