package bounce

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestAnchors(t *testing.T) {
	cases := []struct {
		pat  string
		want []string
	}{
		{`user unknown`, []string{"user unknown"}},
		{`User Unknown|No such USER`, []string{"no such user", "user unknown"}},
		{`receiving (e-?)?mail too quickly`, []string{"receiving e-mail too quickly", "receiving email too quickly", "receiving mail too quickly"}},
		{`\[BL\d\d\]|\[TSS09\]`, []string{"[bl", "[tss09]"}},
		{`\bSC-00\d\b`, []string{"sc-00"}},
		{`mailbox\s+full`, []string{"mailbox"}},
		{`(account|mailbox) (disabled|closed)`, []string{"account closed", "account disabled", "mailbox closed", "mailbox disabled"}},
		{`^x+y`, nil},   // no word of 3 bytes
		{`abc|.*`, nil}, // a branch without words
		{`(?:abc)?def`, []string{"abcdef", "def"}},
		{`d[ae]f`, []string{"daf", "def"}},
		{`é+tat`, []string{"tat"}},
		{`(`, nil},
	}
	for _, tc := range cases {
		if got := anchors(tc.pat); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("anchors(%q) = %q, want %q", tc.pat, got, tc.want)
		}
	}
}

func TestAhoCorasick(t *testing.T) {
	words := []string{"he", "she", "hers", "his", "xyz"}
	owner := []int{0, 1, 2, 3, 70}
	m := newAC(words, owner)
	cases := []struct {
		text string
		want []int
	}{
		{"USHERS", []int{0, 1, 2}},
		{"this", []int{3}},
		{"ahishers", []int{0, 1, 2, 3}},
		{"nothing here", []int{0}},
		{"", nil},
		{"xyZ and \xff\x00 hE", []int{0, 70}},
	}
	for _, tc := range cases {
		hits := make([]uint64, 2)
		m.scan(tc.text, hits)
		var got []int
		for r := 0; r < 128; r++ {
			if hits[r>>6]&(1<<(r&63)) != 0 {
				got = append(got, r)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("scan(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

// prefilterMisses reports every shipped rule branch that the prefilter rules
// out while its regexp matches text, and every words-only branch whose verdict
// differs from a plain substring search: the prefilter may let through too
// much, never too little.
func prefilterMisses(c *Classifier, text string) []string {
	hits := make([]uint64, (c.nbranch+63)/64)
	c.ac.scan(text, hits)
	var miss []string
	for _, r := range c.rules {
		for _, b := range r.branches {
			hit := hits[b.id>>6]&(1<<(b.id&63)) != 0
			switch {
			case b.re == nil && hit != containsFoldASCII(text, b.words):
				miss = append(miss, fmt.Sprintf("%s %q (words)", r.Name, b.words))
			case b.re != nil && b.filtered && !hit && b.re.MatchString(text):
				miss = append(miss, fmt.Sprintf("%s %q", r.Name, b.words))
			}
		}
		// And the branches together decide as the whole pattern would.
		if r.Match != "" {
			whole := regexp.MustCompile("(?i)" + r.Match).MatchString(text)
			if got := r.matchText(text, hits); got != whole && !foldsBeyondASCII(text) {
				miss = append(miss, fmt.Sprintf("%s: branches say %v, pattern %v", r.Name, got, whole))
			}
		}
	}
	return miss
}

// foldsBeyondASCII reports the two characters that (?i) folds to ASCII
// letters and the prefilter does not: the Kelvin sign and the long s.
func foldsBeyondASCII(s string) bool { return strings.ContainsAny(s, "\u212a\u017f") }

func containsFoldASCII(text string, words []string) bool {
	low := strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, text)
	for _, w := range words {
		if strings.Contains(low, w) {
			return true
		}
	}
	return false
}

func TestPrefilterNeverMisses(t *testing.T) {
	c, err := New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range realWorld {
		for _, text := range []string{tc.text, strings.ToUpper(tc.text), strings.ToLower(tc.text), "x " + tc.text + " y"} {
			if miss := prefilterMisses(c, text); miss != nil {
				t.Errorf("%q: prefilter misses %v", text, miss)
			}
		}
	}
}

func FuzzPrefilter(f *testing.F) {
	for _, tc := range realWorld {
		f.Add(tc.text)
	}
	c, err := New(nil, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if miss := prefilterMisses(c, text); miss != nil {
			t.Fatalf("%q: prefilter misses %v", text, miss)
		}
	})
}
