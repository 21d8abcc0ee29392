package campaign

import (
	"bytes"
	"strings"
	"testing"
)

// fixedBodyTemplate is testTemplate with no variable in text or html.
func fixedBodyTemplate() Template {
	tp := testTemplate()
	tp.Text = "Hello,\n\nThis month's offers are online.\n.leading dot\n"
	tp.HTML = `<p>Hello,</p><p>This month's offers are <a href="https://shop.example/">online</a>.</p>`
	return tp
}

// TestBodyFixedRenderedOnce: a body without variables is rendered at
// compile time and reused, byte for byte what a render per recipient gives.
func TestBodyFixedRenderedOnce(t *testing.T) {
	c := mustCompile(t, fixedBodyTemplate())
	if !c.BodyFixed() {
		t.Fatal("BodyFixed = false for a body without variables")
	}
	for i, vars := range []map[string]string{testVars(), nil, {"first_name": "Zoë"}} {
		got, err := c.AppendRender(nil, vars, testMeta(i))
		if err != nil {
			t.Fatal(err)
		}
		// The same template without the precomputed body renders each part.
		slow := mustCompile(t, fixedBodyTemplate())
		slow.body = nil
		want, err := slow.AppendRender(nil, vars, testMeta(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("render %d differs from the per-recipient render:\n%s\n---\n%s", i, got, want)
		}
	}
	for _, tp := range []Template{testTemplate(), func() Template {
		tp := fixedBodyTemplate()
		tp.Text = "Hi {{.recipient}}"
		return tp
	}(), func() Template {
		tp := fixedBodyTemplate()
		tp.HTML = "{{if true}}x{{end}}"
		return tp
	}()} {
		if mustCompile(t, tp).BodyFixed() {
			t.Errorf("BodyFixed = true for text %q html %q", tp.Text, tp.HTML)
		}
	}
}

// TestCheckMatchesRender: Check refuses exactly the variables Render
// fails on, with the same error, for headers and for a body part on the
// template path.
func TestCheckMatchesRender(t *testing.T) {
	tp := testTemplate()
	tp.Headers = map[string]string{"Reply-To": "help+{{.tag}}@acme.example"}
	slow := fixedBodyTemplate()
	slow.Text = "code {{if .code}}{{index .code 3}}{{end}}\n"
	for _, tc := range []struct {
		tp   Template
		vars map[string]string
		ok   bool
	}{
		{tp, map[string]string{"tag": "spring"}, true},
		{tp, map[string]string{"tag": "a b"}, false},
		{tp, map[string]string{"tag": "x>y"}, false},
		{slow, map[string]string{"code": "ABCD"}, true},
		{slow, map[string]string{"code": "AB"}, false},
		{fixedBodyTemplate(), map[string]string{"anything": "\r\n<>"}, true},
		// Nothing but the length of a word can fail in these headers:
		// Check skips the render for short values, not for long ones.
		{testTemplate(), testVars(), true},
		{testTemplate(), map[string]string{"first_name": strings.Repeat("x", 990)}, false},
		{testTemplate(), map[string]string{"first_name": strings.Repeat("x ", 990)}, true},
		{testTemplate(), map[string]string{"unused": strings.Repeat("x", 990)}, true},
	} {
		c := mustCompile(t, tc.tp)
		cerr := c.Check(tc.vars, testMeta(1))
		_, rerr := c.AppendRender(nil, tc.vars, testMeta(1))
		if (cerr == nil) != tc.ok || (rerr == nil) != tc.ok {
			t.Errorf("vars %v: Check %v, Render %v; want ok=%v", tc.vars, cerr, rerr, tc.ok)
			continue
		}
		if cerr != nil && cerr.Error() != rerr.Error() {
			t.Errorf("vars %v: Check says %q, Render %q", tc.vars, cerr, rerr)
		}
	}
}
