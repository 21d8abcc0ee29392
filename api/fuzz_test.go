package api

import (
	"bytes"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// FuzzBuildMessage: what POST /messages accepts is built into a message
// that is CRLF lines only, parses as RFC 5322, and has exactly the header
// fields Penstock writes plus the ones asked for: no field of a request can
// inject another (a Bcc, a second From).
func FuzzBuildMessage(f *testing.F) {
	f.Add("Ann <ann@acme.example>", "bob@example.org", "Hello", "Hi\nthere", "<p>Hi</p>", "X-Campaign", "spring", "")
	f.Add("a@b.example", "c@d.example", "", "", "", "", "", "Subject: raw\r\n\r\nbody\r\n")
	f.Add("a@b.example\r\nBcc: x@y.example", "c@d.example", "s\r\nBcc: x", "t", "", "X-A", "v\r\nBcc: x", "")
	f.Add("\"a\r\n b\" <a@b.example>", "c@d.example", "s", "t", "", "X\x00A", "v", "")
	f.Add("a@b.example", "c@d.example", "", "", "", "", "", "Subject: x\rBcc: y\r\n\r\nbody")
	f.Fuzz(func(t *testing.T, from, to, subject, text, html, hname, hval, raw string) {
		req := MessageRequest{From: from, To: []string{to}, Subject: subject, Text: text, HTML: html, Raw: raw}
		if hname != "" {
			req.Headers = map[string]string{hname: hval}
		}
		if f, _ := req.validate(); f != "" {
			return
		}
		body, err := req.build(time.Unix(0, 0))
		if err != nil {
			return
		}
		for i, c := range body {
			if c == '\r' && (i+1 >= len(body) || body[i+1] != '\n') || c == '\n' && (i == 0 || body[i-1] != '\r') {
				t.Fatalf("bare CR or LF at %d in %q", i, body)
			}
		}
		if raw != "" {
			return // the client's own message, parsed by build
		}
		m, err := mail.ReadMessage(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("built message does not parse: %v\n%q", err, body)
		}
		want := map[string]bool{"From": true, "To": true, "Date": true, "Message-Id": true, "Mime-Version": true, "Content-Type": true,
			"Content-Transfer-Encoding": true, "Subject": subject != ""}
		if hname != "" {
			want[textproto.CanonicalMIMEHeaderKey(hname)] = true
		}
		for k, vs := range m.Header {
			if !want[k] || len(vs) != 1 {
				t.Fatalf("header %q (%d values) in %q", k, len(vs), body)
			}
		}
		if got := m.Header.Get("To"); got != to {
			t.Fatalf("To: %q, want %q", got, to)
		}
		if strings.Count(string(body), "\r\nBcc:") > 0 || strings.HasPrefix(string(body), "Bcc:") {
			t.Fatalf("a Bcc field in %q", body)
		}
	})
}

// A bare CR in a raw message is made a line end, as on the SMTP listener:
// passed on, "\r.\r" ends the data at a receiver that takes a bare CR as a
// line end (SMTP smuggling). Found by FuzzBuildMessage.
func TestRawBareCR(t *testing.T) {
	req := MessageRequest{From: "a@b.example", To: []string{"c@d.example"},
		Raw: "Subject: x\rBcc: y\r\n\r\nbody\r.\rMAIL FROM:<evil@example.org>\r\n"}
	body, err := req.build(time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\r\nBcc: y\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@example.org>\r\n"
	if string(body) != want {
		t.Fatalf("built %q, want %q", body, want)
	}
}
