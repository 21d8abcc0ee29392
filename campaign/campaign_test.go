package campaign

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// testTemplate is a realistic campaign: about 2 KB of text and HTML bodies
// together, five recipient variables, every campaign header.
func testTemplate() Template {
	para := "We have picked this month's best offers for you, with free delivery on every order over fifty francs and returns within thirty days. "
	text := "Hello {{.first_name}} {{.last_name}},\n\n" + strings.Repeat(para, 3) + "\n\nYour store in {{.city}} opens at 9:00.\n" +
		"Your code: {{.code}} (valid until {{.until}})\n\nUnsubscribe: https://u.example/u?r={{.recipient}}\n"
	html := `<!DOCTYPE html><html><head><title>Offers for {{.first_name}}</title></head><body>` +
		`<p class="greeting">Hello {{.first_name}} {{.last_name}},</p><p>` + strings.Repeat(para, 3) + `</p>` +
		`<p>Your store in <b>{{.city}}</b> opens at 9:00.</p><p><a href="https://shop.example/c?code={{.code}}&amp;d={{.delivery_id}}">Use code {{.code}}</a> until {{.until}}.</p>` +
		`<p><a href="https://u.example/u?r={{.recipient}}">Unsubscribe</a></p></body></html>`
	return Template{
		From:            "Acme Shop <news@acme.example>",
		Subject:         "{{.first_name}}, this month's offers in {{.city}}",
		Text:            text,
		HTML:            html,
		Headers:         map[string]string{"X-Campaign": "{{.delivery_id}}", "Reply-To": "Acme Support <help@acme.example>"},
		ListUnsubscribe: "https://u.example/u?r={{.recipient}}&d={{.delivery_id}}",
		FeedbackID:      "{{.delivery_id}}:newsletter:acme",
	}
}

func testVars() map[string]string {
	return map[string]string{"first_name": "Ann", "last_name": "Smith", "city": "Zürich", "code": "SPRING-24", "until": "31 May"}
}

func testMeta(i int) Meta {
	return Meta{
		DeliveryID: "d42",
		Recipient:  fmt.Sprintf("user%d+news@example.org", i),
		MessageID:  MessageID("d42", uint64(i), "mta.acme.example"),
		Date:       time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

func mustCompile(t testing.TB, tp Template) *Compiled {
	t.Helper()
	c, err := Compile(tp)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func render(t testing.TB, c *Compiled, vars map[string]string, m Meta) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.Render(&b, vars, m); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return b.Bytes()
}

func TestCompileErrors(t *testing.T) {
	base := func(f func(*Template)) Template {
		tp := Template{From: "news@acme.example", Subject: "s", Text: "t"}
		f(&tp)
		return tp
	}
	cases := []struct {
		name string
		t    Template
		want string // substring of the error
	}{
		{"no from", base(func(t *Template) { t.From = " " }), "from: missing"},
		{"no subject", base(func(t *Template) { t.Subject = "" }), "subject: missing"},
		{"no body", base(func(t *Template) { t.Text = "" }), "text, html: at least one body"},
		{"from not an address", base(func(t *Template) { t.From = "Acme News" }), "from: \"Acme News\": mail:"},
		{"from renders empty", base(func(t *Template) { t.From = "{{.sender}}" }), "from: \"\": mail:"},
		{"from line break", base(func(t *Template) { t.From = "a@b.example\r\nBcc: x@y" }), "from: contains a line break"},
		{"subject line break", base(func(t *Template) { t.Subject = "a\nb" }), "subject: contains a line break"},
		{"subject syntax", base(func(t *Template) { t.Subject = "{{.x" }), "subject: template: subject:1:"},
		{"text unknown function", base(func(t *Template) { t.Text = "{{shout .x}}" }), `text: template: text:1: function "shout" not defined`},
		{"html unknown function", base(func(t *Template) { t.HTML = "<p>{{shout .x}}</p>" }), `html: template: html:1: function "shout" not defined`},
		{"html unterminated attribute", base(func(t *Template) { t.HTML = `<a href="{{.x}}` }), "html: html/template:html:"},
		{"text exec error", base(func(t *Template) { t.Text = `{{index .x 3}}` }), "text: template: text:1:"},
		{"header name space", base(func(t *Template) { t.Headers = map[string]string{"X Bad": "v"} }), "headers: header name \"X Bad\""},
		{"header name colon", base(func(t *Template) { t.Headers = map[string]string{"X-Bad:": "v"} }), "headers: header name \"X-Bad:\""},
		{"header name empty", base(func(t *Template) { t.Headers = map[string]string{"": "v"} }), "headers: empty header name"},
		{"header reserved", base(func(t *Template) { t.Headers = map[string]string{"message-id": "<x@y>"} }), "headers: \"message-id\" is set by Penstock"},
		{"header bcc", base(func(t *Template) { t.Headers = map[string]string{"Bcc": "boss@acme.example"} }), "headers: \"Bcc\" is set by Penstock"},
		{"header duplicate", base(func(t *Template) { t.Headers = map[string]string{"X-A": "1", "x-a": "2"} }), "name the same field"},
		{"header value CRLF", base(func(t *Template) { t.Headers = map[string]string{"X-A": "1\r\nBcc: x@y"} }), "headers.X-A: contains a line break"},
		{"header value template", base(func(t *Template) { t.Headers = map[string]string{"X-A": "{{end}}"} }), "headers.X-A: template:"},
		{"reply-to invalid", base(func(t *Template) { t.Headers = map[string]string{"Reply-To": "nobody"} }), "headers.Reply-To: \"nobody\": mail:"},
		{"unsubscribe http", base(func(t *Template) { t.ListUnsubscribe = "http://u.example/u?r={{.recipient}}" }), "list_unsubscribe: \"http://u.example/u?r={{.recipient}}\" is not an https URL"},
		{"unsubscribe mailto", base(func(t *Template) { t.ListUnsubscribe = "mailto:u@acme.example" }), "not an https URL"},
		{"unsubscribe from a variable", base(func(t *Template) { t.ListUnsubscribe = "{{.url}}" }), "not an https URL"},
		{"unsubscribe syntax", base(func(t *Template) { t.ListUnsubscribe = "https://u.example/{{.r" }), "list_unsubscribe: template:"},
		{"feedback syntax", base(func(t *Template) { t.FeedbackID = "{{if}}" }), "feedback_id: template:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.t)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// parsed is a rendered message taken apart with the standard library.
type parsed struct {
	msg   *mail.Message
	parts map[string]string // content type -> decoded body
}

func parseMsg(t *testing.T, raw []byte) parsed { return parseMsgMax(t, raw, 78) }

func parseMsgMax(t *testing.T, raw []byte, headerMax int) parsed {
	t.Helper()
	checkLinesMax(t, raw, headerMax)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail cannot read the message: %v\n%s", err, raw)
	}
	p := parsed{msg: msg, parts: map[string]string{}}
	if msg.Header.Get("MIME-Version") != "1.0" {
		t.Errorf("MIME-Version = %q", msg.Header.Get("MIME-Version"))
	}
	ct, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	body, _ := io.ReadAll(msg.Body)
	if ct != "multipart/alternative" {
		p.parts[ct] = decodeQP(t, msg.Header.Get("Content-Transfer-Encoding"), params, body)
		return p
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		pct, pparams, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type: %v", err)
		}
		pb, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		p.parts[pct] = decodeQP(t, part.Header.Get("Content-Transfer-Encoding"), pparams, pb)
	}
	return p
}

func decodeQP(t *testing.T, cte string, params map[string]string, b []byte) string {
	t.Helper()
	if cte != "quoted-printable" || params["charset"] != "utf-8" {
		t.Errorf("part: Content-Transfer-Encoding %q, charset %q", cte, params["charset"])
	}
	d, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("quoted-printable: %v", err)
	}
	return string(d)
}

// checkLines holds a message to RFC 5322 §2.1 and §2.1.1: CRLF only, no bare
// CR or LF, lines of at most 998 octets; header lines of at most 78 where a
// fold point allowed it (all in these tests) and QP body lines of at most 76.
func checkLines(t *testing.T, raw []byte) { checkLinesMax(t, raw, 78) }

func checkLinesMax(t *testing.T, raw []byte, headerMax int) {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Errorf("message does not end with CRLF")
	}
	inHeader := true
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d: %d octets", i+1, len(line))
		}
		if inHeader && len(line) == 0 {
			inHeader = false
			continue
		}
		if inHeader && len(line) > headerMax {
			t.Errorf("header line %d: %d octets: %q", i+1, len(line), line)
		}
		if !inHeader && len(line) > 76 && !bytes.HasPrefix(line, []byte("Content-")) {
			t.Errorf("body line %d: %d octets", i+1, len(line))
		}
	}
	if bytes.Contains(raw, []byte("<no value>")) {
		t.Errorf("message contains <no value>")
	}
}

func decodeHeader(t *testing.T, s string) string {
	t.Helper()
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
	return d
}

func TestRender(t *testing.T) {
	c := mustCompile(t, testTemplate())
	for _, f := range []*field{c.subject, c.text, c.html, c.unsub, c.feedback} {
		if !f.fast {
			t.Errorf("%s: expected the fast path", f.name)
		}
	}
	vars := testVars()
	vars["first_name"] = `Ann <b>&"'+`
	p := parseMsg(t, render(t, c, vars, testMeta(7)))
	h := p.msg.Header
	want := map[string]string{
		"From":                  `"Acme Shop" <news@acme.example>`,
		"To":                    "user7+news@example.org",
		"Message-Id":            "<d42.7@mta.acme.example>",
		"List-Unsubscribe":      "<https://u.example/u?r=user7%2Bnews%40example.org&d=d42>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"Feedback-Id":           "d42:newsletter:acme",
		"X-Campaign":            "d42",
		"Reply-To":              `"Acme Support" <help@acme.example>`,
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if got := decodeHeader(t, h.Get("Subject")); got != `Ann <b>&"'+, this month's offers in Zürich` {
		t.Errorf("Subject decodes to %q", got)
	}
	if !strings.HasPrefix(h.Get("Subject"), "=?utf-8?") {
		t.Errorf("non-ASCII Subject not RFC 2047-encoded: %q", h.Get("Subject"))
	}
	if d, err := h.Date(); err != nil || !d.Equal(testMeta(7).Date) {
		t.Errorf("Date = %v, %v", d, err)
	}
	text, html := p.parts["text/plain"], p.parts["text/html"]
	if len(p.parts) != 2 || text == "" || html == "" {
		t.Fatalf("parts: %v", p.parts)
	}
	if !strings.HasPrefix(text, "Hello Ann <b>&\"'+ Smith,\r\n\r\n") || !strings.Contains(text, "store in Zürich opens") {
		t.Errorf("text part: %q", text[:80])
	}
	for _, s := range []string{
		`<title>Offers for Ann &lt;b&gt;&amp;&#34;&#39;&#43;</title>`,
		`Hello Ann &lt;b&gt;&amp;&#34;&#39;&#43; Smith`,
		`href="https://shop.example/c?code=SPRING-24&amp;d=d42"`,
		`href="https://u.example/u?r=user7%2bnews%40example.org"`,
	} {
		if !strings.Contains(html, s) {
			t.Errorf("html part lacks %q", s)
		}
	}
}

func TestRenderMessageIDPerRecipient(t *testing.T) {
	c := mustCompile(t, testTemplate())
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		p := parseMsg(t, render(t, c, testVars(), testMeta(i)))
		id := p.msg.Header.Get("Message-ID")
		if seen[id] {
			t.Errorf("Message-ID %s repeated", id)
		}
		seen[id] = true
		if p.msg.Header.Get("To") != testMeta(i).Recipient {
			t.Errorf("To = %q", p.msg.Header.Get("To"))
		}
	}
	if got := MessageID("camp 1/é", 12, "h.example"); got != "<camp_1/__.12@h.example>" {
		t.Errorf("MessageID = %q", got)
	}
	// A retry renders the same Message-ID.
	if MessageID("d", 3, "h") != MessageID("d", 3, "h") {
		t.Error("MessageID is not stable")
	}
}

func TestRenderMissingVarsAndBuiltins(t *testing.T) {
	c := mustCompile(t, Template{
		From:    "news@acme.example",
		Subject: "Hi {{.nope}}!",
		Text:    "a[{{.nope}}] b[{{print .nope}}] c[{{if .nope}}x{{end}}] r[{{.recipient}}] m[{{.message_id}}] d[{{.delivery_id}}]\n",
		HTML:    "<p>{{.nope}}|{{print .nope}}|{{.recipient}}</p>",
	})
	if c.text.fast || c.html.fast {
		t.Fatal("fields with print/if should take the template path")
	}
	vars := map[string]string{"recipient": "spoof@evil.example", "message_id": "x"}
	p := parseMsg(t, render(t, c, vars, testMeta(1)))
	if got := p.msg.Header.Get("Subject"); got != "Hi !" {
		t.Errorf("Subject = %q", got)
	}
	if want := "a[] b[] c[] r[user1+news@example.org] m[d42.1@mta.acme.example] d[d42]\r\n"; p.parts["text/plain"] != want {
		t.Errorf("text = %q, want %q", p.parts["text/plain"], want)
	}
	if want := "<p>||user1&#43;news@example.org</p>"; p.parts["text/html"] != want {
		t.Errorf("html = %q, want %q", p.parts["text/html"], want)
	}
}

func TestRenderHeaderInjection(t *testing.T) {
	c := mustCompile(t, Template{
		From: "{{.name}} <news@acme.example>", Subject: "Hi {{.x}}", Text: "t",
		Headers:    map[string]string{"X-Tag": "{{.x}}", "X-Empty": "{{.nope}}"},
		FeedbackID: "{{.x}}",
	})
	vars := map[string]string{"x": "a\r\nBcc: victim@example.org\r\n\r\nbody", "name": "Eve\r\nBcc: v@example.org"}
	raw := render(t, c, vars, testMeta(1))
	p := parseMsg(t, raw)
	if p.msg.Header.Get("Bcc") != "" || bytes.Contains(raw, []byte("\r\nBcc:")) {
		t.Fatalf("a variable added a header:\n%s", raw)
	}
	if got := p.msg.Header.Get("Subject"); got != "Hi a  Bcc: victim@example.org    body" {
		t.Errorf("Subject = %q", got)
	}
	if _, ok := p.msg.Header["X-Empty"]; ok {
		t.Error("a custom header that renders empty should be left out")
	}
	if got := p.msg.Header.Get("From"); got != `"Eve  Bcc: v@example.org" <news@acme.example>` {
		t.Errorf("From = %q", got)
	}
	// A display name from a variable is quoted or encoded, whatever it holds.
	for name, want := range map[string]string{
		"Smith, John": `"Smith, John" <news@acme.example>`,
		`"Quoted"`:    `"Quoted" <news@acme.example>`,
		`a "b" <c>`:   `"a \"b\" <c>" <news@acme.example>`,
		"Zoë":         `=?utf-8?q?Zo=C3=AB?= <news@acme.example>`,
		"":            `news@acme.example`,
	} {
		p := parseMsg(t, render(t, c, map[string]string{"name": name}, testMeta(1)))
		if got := p.msg.Header.Get("From"); got != want {
			t.Errorf("From with name %q = %q, want %q", name, got, want)
		}
		if a, err := p.msg.Header.AddressList("From"); err != nil || a[0].Name != strings.Trim(name, `"`) {
			t.Errorf("From with name %q parses to %v, %v", name, a, err)
		}
	}
	// Where the address itself comes from a variable, it must parse.
	c2 := mustCompile(t, Template{From: "news{{.tag}}@acme.example", Subject: "s", Text: "t"})
	if _, err := c2.AppendRender(nil, map[string]string{"tag": "a b"}, testMeta(1)); err == nil || !strings.HasPrefix(err.Error(), "from: ") {
		t.Errorf("From rendering to a bad address: err = %v", err)
	}
}

func TestRenderFolding(t *testing.T) {
	long := strings.Repeat("word ", 60) + "end"
	c := mustCompile(t, Template{From: "news@acme.example", Subject: "{{.s}}", Text: "t", Headers: map[string]string{"X-Long": "{{.s}}"}})
	for _, s := range []string{long, strings.Repeat("Grüße aus Zürich ", 20), strings.Repeat("x", 150) + " y"} {
		raw := render(t, c, map[string]string{"s": s}, testMeta(1))
		if s[0] == 'x' { // one 150-octet word: longer than 78, allowed up to 998
			if !bytes.Contains(raw, []byte("\r\nSubject: "+strings.Repeat("x", 150)+"\r\n y\r\n")) {
				t.Errorf("long word subject:\n%s", raw)
			}
			continue
		}
		p := parseMsg(t, raw)
		if got := decodeHeader(t, p.msg.Header.Get("Subject")); got != strings.TrimSpace(s) {
			t.Errorf("Subject unfolds to %q, want %q", got, s)
		}
		if got := decodeHeader(t, p.msg.Header.Get("X-Long")); got != strings.TrimSpace(s) {
			t.Errorf("X-Long unfolds to %q", got)
		}
	}
	_, err := c.AppendRender(nil, map[string]string{"s": strings.Repeat("x", 1000)}, testMeta(1))
	if err == nil || !strings.Contains(err.Error(), "Subject: a word of") {
		t.Errorf("1000-octet word: err = %v", err)
	}
}

func TestRenderSinglePart(t *testing.T) {
	long := strings.Repeat("0123456789", 120) // one 1200-octet line: QP must break it
	for _, tc := range []struct {
		tp   Template
		ct   string
		want string
	}{
		{Template{From: "a@acme.example", Subject: "s", Text: long + "\n{{.v}} = x \t\n"}, "text/plain", long + "\r\nä = x \t\r\n"},
		{Template{From: "a@acme.example", Subject: "s", HTML: "<p>{{.v}}</p>"}, "text/html", "<p>ä</p>\r\n"},
	} {
		p := parseMsg(t, render(t, mustCompile(t, tc.tp), map[string]string{"v": "ä"}, testMeta(1)))
		if got := p.parts[tc.ct]; got != tc.want || len(p.parts) != 1 {
			t.Errorf("%s: parts %q, want %q", tc.ct, p.parts, tc.want)
		}
	}
}

func TestRenderErrorsLeaveBufferAlone(t *testing.T) {
	c := mustCompile(t, testTemplate())
	for _, m := range []Meta{
		{Recipient: "a@b.example", MessageID: ""},
		{Recipient: "a@b.example", MessageID: "no-brackets@x"},
		{Recipient: "a@b.example", MessageID: "<a b@x>"},
		{Recipient: "", MessageID: "<a@x>"},
		{Recipient: "a@b.example\r\nBcc: x@y", MessageID: "<a@x>"},
	} {
		b := bytes.NewBufferString("prefix")
		if err := c.Render(b, nil, m); err == nil {
			t.Errorf("%+v: no error", m)
		}
		if b.String() != "prefix" {
			t.Errorf("%+v: buffer changed to %q", m, b.String())
		}
	}
	// A render error in the middle (a 1000-octet word) also leaves dst as it was.
	c2 := mustCompile(t, Template{From: "a@acme.example", Subject: "s", Text: "t", Headers: map[string]string{"X-A": "{{.w}}"}})
	dst, err := c2.AppendRender([]byte("keep"), map[string]string{"w": strings.Repeat("w", 1000)}, testMeta(1))
	if err == nil || string(dst) != "keep" {
		t.Errorf("dst = %q, err = %v", dst, err)
	}
}

// The fast path must produce exactly what html/template and text/template
// would: same escaping, same missing-variable behaviour.
func TestHTMLFastPathMatchesTemplate(t *testing.T) {
	values := []string{"", "plain", `<script>alert("x")</script>`, "a&b'c+d", "\x00nul", "javascript:alert(1)", "JavaScript:x",
		"https://x.example/a b?q=1&r=é#frag", "mailto:a@b", "/rel/path?x=%zz%41", "data:text/html,x", "ü€\xff\xfe", "100%", "a/b:c"}
	htmls := []string{
		`<p>{{.v}}</p>`,
		`<p title="{{.v}}" class='{{.v}}'>x</p>`,
		`<a href="{{.v}}">x</a>`,
		`<a href='https://x.example/p/{{.v}}/q?a={{.v}}&amp;b={{.v}}#{{.v}}'>x</a>`,
		`<img src="{{.v}}"><title>{{.v}}</title><textarea>{{.v}}</textarea>`,
		`<!-- comment {{.v}} --><p>{{.v}}</p>`,
	}
	for _, src := range htmls {
		f, err := compileField("html", src, kindHTML)
		if err != nil {
			t.Fatal(err)
		}
		if !f.fast {
			t.Errorf("%s: no fast path", src)
			continue
		}
		for _, v := range values {
			st := &renderState{vars: map[string]string{"v": v}}
			got, _ := f.render(nil, st)
			var want bytes.Buffer
			if err := f.ht.Execute(&want, map[string]string{"v": v}); err != nil {
				t.Fatal(err)
			}
			if string(got) != want.String() {
				t.Errorf("%s with %q:\nfast     %q\ntemplate %q", src, v, got, want.String())
			}
		}
	}
	// Contexts we do not reimplement fall back.
	for _, src := range []string{`<script>var x = "{{.v}}"</script>`, `<a href={{.v}}>x</a>`, `<p style="color: {{.v}}">x</p>`} {
		f, err := compileField("html", src, kindHTML)
		if err != nil {
			t.Fatal(err)
		}
		if f.fast {
			t.Errorf("%s: fast path for a context it does not implement", src)
		}
	}
}

func FuzzHTMLFastPath(f *testing.F) {
	for _, s := range []string{"", "<a>", "javascript:x", "%41%zz", "é\x00"} {
		f.Add(s)
	}
	src := `<p title="{{.v}}">{{.v}}</p><a href="{{.v}}">x</a><a href="https://x/?q={{.v}}">y</a><a href="/p/{{.v}}">z</a>`
	fld, err := compileField("html", src, kindHTML)
	if err != nil || !fld.fast {
		f.Fatalf("compile: %v, fast %v", err, fld.fast)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, _ := fld.render(nil, &renderState{vars: map[string]string{"v": v}})
		var want bytes.Buffer
		if err := fld.ht.Execute(&want, map[string]string{"v": v}); err != nil {
			t.Fatal(err)
		}
		if string(got) != want.String() {
			t.Fatalf("%q:\nfast     %q\ntemplate %q", v, got, want.String())
		}
	})
}

// A message rendered through the template packages equals the fast one.
func TestFallbackMatchesFastPath(t *testing.T) {
	fast := testTemplate()
	slow := fast
	slow.Headers = map[string]string{}
	for k, v := range fast.Headers {
		slow.Headers[k] = strings.ReplaceAll(v, "{{.", "{{print .")
	}
	for _, p := range []*string{&slow.Subject, &slow.Text, &slow.HTML, &slow.ListUnsubscribe, &slow.FeedbackID} {
		*p = strings.ReplaceAll(*p, "{{.", "{{print .")
	}
	cf, cs := mustCompile(t, fast), mustCompile(t, slow)
	if cs.text.fast || cs.html.fast || cs.unsub.fast {
		t.Fatal("expected the template path")
	}
	vars := testVars()
	vars["first_name"] = "A&B <c> + d/é?x=y"
	a, b := render(t, cf, vars, testMeta(3)), render(t, cs, vars, testMeta(3))
	if !bytes.Equal(a, b) {
		t.Errorf("fast and template paths differ:\n%s\n----\n%s", a, b)
	}
}

func TestRenderConcurrent(t *testing.T) {
	c := mustCompile(t, testTemplate())
	want := make([][]byte, 8)
	for i := range want {
		want[i] = render(t, c, testVars(), testMeta(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	for i := range want {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				got, err := c.AppendRender(nil, testVars(), testMeta(i))
				if err != nil || !bytes.Equal(got, want[i]) {
					errs <- fmt.Errorf("goroutine %d render %d differs (err %v)", i, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBytesLoad(t *testing.T) {
	tp := testTemplate()
	c := mustCompile(t, tp)
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c2.Template(), tp) {
		t.Errorf("template after Load: %+v", c2.Template())
	}
	if !bytes.Equal(render(t, c, testVars(), testMeta(1)), render(t, c2, testVars(), testMeta(1))) {
		t.Error("loaded template renders differently")
	}
	tp.Headers["X-Campaign"] = "changed"
	if c.Template().Headers["X-Campaign"] == "changed" {
		t.Error("Compiled shares the caller's Headers map")
	}
	for _, bad := range []string{
		``, `{`, `{"version":2,"template":{}}`, `{"version":1,"template":{"from":"a@b.example"}}`,
		`{"version":1,"template":{"from":"a@b.example","subject":"s","text":"t","bogus":1}}`,
	} {
		if _, err := Load([]byte(bad)); err == nil || !strings.HasPrefix(err.Error(), "campaign: stored template: ") {
			t.Errorf("Load(%q) = %v", bad, err)
		}
	}
}

func TestQuotedPrintable(t *testing.T) {
	for _, s := range []string{
		"", "a", "=", "a \n", "a\t\r\n", " ", "\r", "\r\r\n", "x\n\n", strings.Repeat("é", 100),
		strings.Repeat("a", 75) + "=" + strings.Repeat(" ", 80) + "b", strings.Repeat("ab ", 40) + "\n",
	} {
		checkQP(t, []byte(s))
	}
}

func checkQP(t *testing.T, src []byte) {
	t.Helper()
	enc := appendQP(nil, src)
	for _, line := range bytes.Split(enc, []byte("\r\n")) {
		if len(line) > 76 || bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("%q: encoded line %q", src, line)
		}
		if l := len(line); l > 0 && (line[l-1] == ' ' || line[l-1] == '\t') {
			t.Fatalf("%q: trailing white space in %q", src, line)
		}
		for _, c := range line {
			if c > 126 || c < 32 && c != '\t' {
				t.Fatalf("%q: 8-bit or control octet in %q", src, line)
			}
		}
	}
	if bytes.Contains(enc, []byte("=_")) {
		t.Fatalf("%q: output contains =_ (would collide with the boundary)", src)
	}
	dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
	if err != nil {
		t.Fatalf("%q: decode: %v", src, err)
	}
	// Line breaks come back as CRLF; a lone CR comes back as itself.
	var want []byte
	for i, c := range src {
		if c == '\n' && (i == 0 || src[i-1] != '\r') {
			want = append(want, '\r')
		}
		want = append(want, c)
	}
	if !bytes.Equal(dec, want) {
		t.Fatalf("%q: round trip gave %q via %q", src, dec, enc)
	}
}

func FuzzQuotedPrintable(f *testing.F) {
	f.Add([]byte("a \nb=c\r\n\xff"))
	f.Fuzz(func(t *testing.T, b []byte) { checkQP(t, b) })
}

func TestEncodedWords(t *testing.T) {
	for _, s := range []string{"Zürich", "日本語のメールの件名はとても長くなることがありますので分割が必要です", "🎉 Sale! 50% off — ünïcödé?=_", strings.Repeat("é", 40)} {
		enc := string(appendEncodedWords(nil, []byte(s)))
		for _, w := range strings.Split(enc, " ") {
			if len(w) > 75 {
				t.Errorf("%q: word of %d characters: %s", s, len(w), w)
			}
			d, err := new(mime.WordDecoder).Decode(w)
			if err != nil || !utf8.ValidString(d) {
				t.Errorf("%q: word %s decodes to %q, %v", s, w, d, err)
			}
		}
		if got := decodeHeader(t, enc); got != s {
			t.Errorf("%q: round trip %q", s, got)
		}
	}
}

// FuzzRender feeds arbitrary variable values to every kind of field: the
// output must stay a well-formed message with exactly the template's header
// fields, and the text body must carry the value unchanged.
func FuzzRender(f *testing.F) {
	f.Add("Ann", "Zürich")
	f.Add("a\r\nBcc: x@y\r\n\r\n", "<script>\x00")
	f.Add(strings.Repeat("w ", 80), "=_penstock_alt_1")
	c := mustCompile(f, Template{
		From: "{{.a}} <news@acme.example>", Subject: "S {{.a}} {{.b}}",
		Text: "T:{{.a}}|{{.b}}", HTML: `<p title="{{.a}}"><a href="{{.b}}">{{.a}}</a></p>`,
		Headers:         map[string]string{"X-A": "{{.a}}", "X-B": "b {{.b}}"},
		ListUnsubscribe: "https://u.example/{{.a}}?b={{.b}}", FeedbackID: "{{.b}}:x",
	})
	f.Fuzz(func(t *testing.T, a, b string) {
		raw, err := c.AppendRender(nil, map[string]string{"a": a, "b": b}, testMeta(1))
		if err != nil {
			if strings.Contains(err.Error(), "does not fit in a header line") {
				return // a word over 998 octets: refused, as it must be
			}
			t.Fatalf("render: %v", err)
		}
		p := parseMsgMax(t, raw, 998)
		for k := range p.msg.Header {
			switch k {
			case "From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "List-Unsubscribe",
				"List-Unsubscribe-Post", "Feedback-Id", "X-A", "X-B", "Content-Type":
			default:
				t.Fatalf("unexpected header %q in\n%s", k, raw)
			}
		}
		want := "T:" + a + "|" + b
		var norm []byte
		for i := 0; i < len(want); i++ {
			if want[i] == '\n' && (i == 0 || want[i-1] != '\r') {
				norm = append(norm, '\r')
			}
			norm = append(norm, want[i])
		}
		if got := p.parts["text/plain"]; got != string(norm) {
			t.Fatalf("text part %q, want %q", got, norm)
		}
		if len(p.parts) != 2 {
			t.Fatalf("parts: %q", p.parts)
		}
	})
}
