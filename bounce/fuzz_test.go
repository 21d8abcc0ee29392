package bounce

import (
	"strings"
	"testing"
)

// FuzzClassify qualifies any reply a remote server could send, with the
// shipped rules: nothing may panic, every reply gets a reason, a class and
// the rule that decided, and its normalised text (what `penstock bounces`
// groups by) is one line without runs of white space.
func FuzzClassify(f *testing.F) {
	for _, tc := range realWorld {
		f.Add(tc.code, tc.enhanced, tc.text)
	}
	f.Add(0, "", "")
	f.Add(999, "9.9.9", "5.1.1 leading code")
	f.Add(-1, " 4.7.0 ", "\r\n\t  x  \x00")
	c, err := New(nil, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code int, enhanced, text string) {
		v := c.Classify(code, enhanced, text)
		if v.Reason == "" || v.Class == "" || v.Rule == "" || v.Retry < 0 {
			t.Fatalf("Classify(%d, %q, %q) = %+v", code, enhanced, text, v)
		}
		n := Normalize(text)
		if strings.ContainsAny(n, "\r\n\t\v\f") || strings.Contains(n, "  ") || n != strings.TrimSpace(n) {
			t.Fatalf("Normalize(%q) = %q", text, n)
		}
	})
}

// A vertical tab is white space too: RE2's \s leaves it out. Found by
// FuzzClassify.
func TestNormalizeVerticalTab(t *testing.T) {
	if got := Normalize("mailbox\v\vfull \v now"); got != "mailbox full now" {
		t.Fatalf("got %q", got)
	}
}
