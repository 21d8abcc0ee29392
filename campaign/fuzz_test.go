package campaign

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzCompile compiles arbitrary templates (text/template and html/template
// syntax, address fields, header names and values): nothing may panic, and
// a template that compiles renders a well-formed message and survives its
// storage round trip.
func FuzzCompile(f *testing.F) {
	f.Add("news@acme.example", "Hello {{.first_name}}", "Hi {{.first_name}}", "<p>{{.first_name}}</p>", "X-Campaign", "spring", "https://u.example/u?r={{.recipient}}", "{{.delivery_id}}:x")
	f.Add("{{.name}} <news@acme.example>", "S", "", `<a href="{{.url}}">x</a>`, "Reply-To", "{{.rt}}", "", "")
	f.Add("Acme News", "a\nb", "{{shout .x}}", `<a href="{{.x}}`, "X Bad", "1\r\nBcc: x@y", "http://u.example/", "{{if}}")
	f.Add("a@b.example", "{{.x", "{{index .x 3}}", "<script>{{.x}}</script>", "message-id", "<x@y>", "mailto:u@acme.example", "")
	f.Add(`"Q, Name" <q@acme.example>`, "=?utf-8?q?x?=", "{{range .x}}{{end}}", "<p title={{.a}}>", "Sender", "s@acme.example", "https://u.example/{{.r", "{{.b}}")
	f.Fuzz(func(t *testing.T, from, subject, text, html, hname, hval, unsub, feedback string) {
		tp := Template{From: from, Subject: subject, Text: text, HTML: html, ListUnsubscribe: unsub, FeedbackID: feedback}
		if hname != "" {
			tp.Headers = map[string]string{hname: hval}
		}
		c, err := Compile(tp)
		if err != nil {
			return
		}
		for _, vars := range []map[string]string{nil, {"first_name": "Ann", "name": "Q, \"R\"", "url": "javascript:x", "x": "\r\nBcc: y@z", "a": "é"}} {
			raw, err := c.AppendRender(nil, vars, testMeta(1))
			if err != nil {
				continue // a value that cannot go where it is used is refused, not sent
			}
			if bytes.Contains(raw, []byte("\nBcc:")) || bytes.Contains(raw, []byte("\nbcc:")) {
				t.Fatalf("a variable injected a header:\n%s", raw)
			}
			for i, c := range raw {
				if c == '\n' && (i == 0 || raw[i-1] != '\r') || c == '\r' && (i+1 >= len(raw) || raw[i+1] != '\n') {
					t.Fatalf("bare CR or LF at %d:\n%q", i, raw)
				}
			}
		}
		b, err := c.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Load(b)
		if err != nil {
			t.Fatalf("Load(Bytes()) of a compiled template: %v", err)
		}
		if !strings.EqualFold(back.Template().From, c.Template().From) {
			t.Fatalf("round trip changed From: %q -> %q", c.Template().From, back.Template().From)
		}
	})
}

// FuzzReadRecipients streams arbitrary CSV and NDJSON recipient lists:
// nothing may panic, and every recipient handed on has a valid address and
// valid variable names.
func FuzzReadRecipients(f *testing.F) {
	f.Add("\xef\xbb\xbfFirst_Name, EMAIL ,city\r\nAnn,ann@example.org,\"Paris, France\"\r\n\r\n\"Bob \"\"B\"\"\", bob+x@example.net ,\"two\nlines\"\r\n,carol@example.com,\n")
	f.Add("email\nx\n")
	f.Add("email,email\na@b.example,c@d.example\n")
	f.Add("address,recipient\na@b.example,x\n")
	f.Add("{\"address\":\"a@b.example\",\"vars\":{\"n\":\"v\"}}\n\n{\"address\":\" c@d.example \"}\n")
	f.Add("{\"address\":\"a@b.example\",\"vars\":{\"n\":1}}\n")
	f.Add("{\"address\":\"a@b.example\"} {}\n")
	f.Add("{\"address\":\"Name <a@b.example>\"}\n")
	f.Fuzz(func(t *testing.T, in string) {
		check := func(r Recipient) error {
			if err := CheckAddress(r.Address); err != nil {
				t.Fatalf("recipient with a bad address passed: %v", err)
			}
			for k, v := range r.Vars {
				if CheckVarName(k) != nil || v == "" {
					t.Fatalf("recipient with variable %q = %q passed", k, v)
				}
			}
			return nil
		}
		ReadCSV(strings.NewReader(in), check)
		ReadNDJSON(strings.NewReader(in), check)
	})
}

// FuzzCheckAddress: an address CheckAddress accepts fits in a path and can
// go between angle brackets in an SMTP command.
func FuzzCheckAddress(f *testing.F) {
	for _, s := range []string{"a@b.example", "Name <a@b.example>", "a@b", "\"quoted local\"@b.example", "a@[1.2.3.4]", "(c)a@b.example",
		"a\r\n@b.example", "δ@b.example", "a@b.example,", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 189) + ".c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if CheckAddress(addr) != nil {
			return
		}
		if len(addr) > 254 || strings.ContainsAny(addr, "<>\r\n\x00") {
			t.Fatalf("CheckAddress accepted %q", addr)
		}
	})
}
