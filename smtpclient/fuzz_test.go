package smtpclient

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
)

// FuzzReadReply reads replies as a hostile or broken remote MX could send
// them: nothing may panic, and every reply read must be well formed.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n", "250\r\n", "250 ok\n", "250 2.1.5 ok\r\n", "550 5.1.10 no\r\n", "550 4.7.1 x\r\n",
		"250-mx hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n", "550-5.7.1 a\r\n550-\r\n550 c\r\n",
		"250 2..5 x\r\n", "250-a\r\n251 b\r\n", "250_ok\r\n", "250 " + strings.Repeat("x", 300) + "\r\n",
		"421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred\r\n250 ok\r\n", "250 ok\r\x00\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, ext bool) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 64)
		var rr rawReply
		for range 100 {
			if err := readReply(r, &rr, ext); err != nil {
				return
			}
			rep := rr.reply()
			if rep.Code < 200 || rep.Code > 599 {
				t.Fatalf("reply code %d", rep.Code)
			}
			if rep.Enhanced != "" && enhancedLen([]byte(rep.Enhanced)) != len(rep.Enhanced) {
				t.Fatalf("enhanced code %q", rep.Enhanced)
			}
			if strings.Count(rep.Text, "\n") >= maxReplyLines {
				t.Fatalf("%d lines kept", strings.Count(rep.Text, "\n")+1)
			}
			if len(rep.Text) > maxReplyLines*65 {
				t.Fatalf("%d bytes of text kept from lines cut at the 64-byte buffer", len(rep.Text))
			}
		}
	})
}

// FuzzWriteBody checks dot-stuffing (RFC 5321 §4.5.2) on any body: the
// only end-of-data marker is the last line, unstuffing gives the body back
// with CRLF line ends, and the SIZE announced is that length.
func FuzzWriteBody(f *testing.F) {
	for _, s := range []string{"", "a", "a\n", ".", ".\r\n", "a\n.\nb", "a\r\n..\r\n", "x.y\n .z\n", "\n\n", "a\rb\n", "a\r\r\n",
		"Subject: x\r\n\r\n.\r\n.\r\nQUIT\r\n", "\r\n.\r\n", "a\n\r\n.\n",
		strings.Repeat("0123456789abcdef", 2) + "\r\n.\xc3\xa9\r\n", strings.Repeat("x", 63) + "\xff\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if e := scanBody(body).eightBit; e != slices.ContainsFunc(body, func(c byte) bool { return c >= 0x80 }) {
			t.Fatalf("%q: scanBody says 8-bit %v", body, e)
		}
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		writeBody(w, body)
		w.Flush()
		out := b.Bytes()
		// Send's one-copy path must send the very same bytes.
		if scanBody(body).asIs() && !bytes.Equal(append(bytes.Clone(body), ".\r\n"...), out) {
			t.Fatalf("%q: sent as is, but writeBody sends %q", body, out)
		}
		if !bytes.HasSuffix(out, []byte(".\r\n")) || (len(out) > 3 && !bytes.HasSuffix(out, []byte("\r\n.\r\n"))) {
			t.Fatalf("%q: output %q does not end with the end-of-data marker", body, out)
		}
		if i := bytes.Index(out, []byte("\r\n.\r\n")); i >= 0 && i != len(out)-5 {
			t.Fatalf("%q: an end-of-data marker at %d of %q", body, i, out)
		}
		if bytes.HasPrefix(out, []byte(".\r\n")) && len(out) > 3 {
			t.Fatalf("%q: output starts with an end-of-data marker: %q", body, out)
		}
		// Unstuff and compare with the body, line ends made CRLF.
		var want []byte
		for len(body) > 0 {
			line := body
			if i := bytes.IndexByte(body, '\n'); i >= 0 {
				line, body = body[:i], body[i+1:]
			} else {
				body = nil
			}
			want = append(want, bytes.TrimSuffix(line, []byte("\r"))...)
			want = append(want, "\r\n"...)
		}
		content := out[:len(out)-3]
		var got []byte
		for len(content) > 0 {
			i := bytes.Index(content, []byte("\r\n"))
			line := content[:i+2]
			content = content[i+2:]
			got = append(got, bytes.TrimPrefix(line, []byte("."))...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("unstuffed %q, want %q", got, want)
		}
	})
}

// FuzzParseExtensions reads an EHLO reply text as a remote server could
// send it.
func FuzzParseExtensions(f *testing.F) {
	for _, s := range []string{"mx hello\nPIPELINING\nSIZE 10\n8BITMIME", "mx\nSIZE", "mx\nSIZE 0", "mx\nSIZE -5",
		"mx\nsize 99999999999999999999", "mx\n  \nENHANCEDSTATUSCODES\nSMTPUTF8\nAUTH PLAIN LOGIN", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var c Client
		c.parseExtensions(text)
		if c.maxSize < 0 {
			t.Fatalf("max size %d", c.maxSize)
		}
		for k := range c.ext {
			if k == "" || k != strings.ToUpper(k) {
				t.Fatalf("extension keyword %q", k)
			}
		}
	})
}
