package bounce

import (
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
)

// The prefilter keeps regexps off the hot path. For each rule's pattern it
// finds a set of words at least one of which occurs in every text the pattern
// matches (case folded). All rules' words go into one Aho-Corasick automaton;
// Classify scans the reply text once (linear in its length) and then runs the
// regexp only of rules whose words were seen. A pattern that is nothing but
// words separated by '|' needs no regexp at all.
//
// Case folding is ASCII only: a text that spells a word with the Kelvin sign
// for K or the long s for s (which Go's (?i) folds) escapes the prefilter.
// Mail servers do not write those.

const (
	maxAnchorSet = 32 // larger sets are given up on
	minAnchorLen = 3  // shorter words would hit nearly every text
)

// branches splits a rule's pattern into its top-level alternatives and finds
// each one's words. A pattern with inline flags is kept whole, since a flag
// reaches across '|' to the end of its group.
func branches(pattern string) []branch {
	parts := splitTop(pattern)
	flags := hasInlineFlags(pattern)
	if flags {
		parts = []string{pattern}
	}
	out := make([]branch, 0, len(parts))
	for _, p := range parts {
		b := branch{}
		re, err := syntax.Parse(p, syntax.Perl|syntax.FoldCase)
		if err == nil {
			re = re.Simplify()
			// (With inline flags some words may be case-sensitive: the
			// folded words still filter, but cannot decide.)
			if e := exact(re); e != nil && !flags && pureWords(re) && minLen(e) > 0 {
				// Nothing but words: seeing one is a match.
				b.words, b.filtered = sortUnique(e), true
				out = append(out, b)
				continue
			}
			if w := required(re); w != nil {
				b.words, b.filtered = sortUnique(w), true
			}
		}
		b.re, err = regexp.Compile("(?i)" + p)
		if err != nil { // cannot happen for a part of a valid pattern; be safe
			return []branch{{re: regexp.MustCompile("(?i)" + pattern)}}
		}
		out = append(out, b)
	}
	return out
}

// hasInlineFlags reports a "(?flags)" or "(?flags:" group.
func hasInlineFlags(p string) bool {
	for i := strings.Index(p, "(?"); i >= 0; {
		if i == 0 || p[i-1] != '\\' {
			if j := i + 2; j < len(p) && p[j] != ':' && p[j] != 'P' && p[j] != '<' {
				return true
			}
		}
		k := strings.Index(p[i+2:], "(?")
		if k < 0 {
			break
		}
		i += 2 + k
	}
	return false
}

// pureWords reports whether re is made of literals, small classes, optional
// parts, groups and alternations only: no assertions, no repetition.
func pureWords(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpLiteral, syntax.OpCharClass, syntax.OpEmptyMatch:
		return true
	case syntax.OpCapture, syntax.OpQuest, syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			if !pureWords(sub) {
				return false
			}
		}
		return true
	}
	return false
}

func sortUnique(set []string) []string {
	set = append([]string(nil), set...)
	sort.Strings(set)
	out := set[:0]
	for i, s := range set {
		if i == 0 || s != set[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// anchors returns, lower-cased, a set of words one of which occurs in every
// match of pattern (compiled case-insensitively), or nil if it finds none
// worth using.
func anchors(pattern string) []string {
	// The branches of the top-level alternation are parsed one by one: the
	// parser would factor their common prefixes ("[BL..]|[TSS..]" becomes
	// "[(?:BL..|TSS..)"), hiding the words.
	var set []string
	for _, branch := range splitTop(pattern) {
		re, err := syntax.Parse(branch, syntax.Perl|syntax.FoldCase)
		if err != nil {
			return nil
		}
		s := required(re.Simplify())
		if s == nil {
			return nil
		}
		set = append(set, s...)
	}
	return sortUnique(set)
}

// splitTop splits a pattern at the '|' that are outside groups and classes.
func splitTop(p string) []string {
	var out []string
	depth, start := 0, 0
	inClass := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++ // the escaped character is never syntax
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(p) && p[i+1] == '^' {
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				i++ // a leading ']' is a literal
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

// required returns a set of strings at least one of which occurs in any
// string re matches, or nil.
func required(re *syntax.Regexp) []string {
	if e := exact(re); usable(e) {
		return e
	}
	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return required(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return required(re.Sub[0])
		}
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			s := required(sub)
			if s == nil {
				return nil // this branch can match without any known word
			}
			all = append(all, s...)
		}
		if len(all) > 4*maxAnchorSet {
			return nil
		}
		return all
	case syntax.OpConcat:
		// Every match contains, for each child, a match of that child, and
		// for each run of consecutive children with finite matches, one of
		// the concatenations. Keep the candidate whose shortest word is
		// longest.
		var best []string
		consider := func(s []string) {
			if usable(s) && (best == nil || minLen(s) > minLen(best)) {
				best = s
			}
		}
		run := []string{""}
		for _, sub := range re.Sub {
			if e := exact(sub); e != nil {
				if x := cross(run, e); x != nil {
					run = x
				} else {
					consider(run)
					run = e
				}
				continue
			}
			consider(run)
			run = []string{""}
			consider(required(sub))
		}
		consider(run)
		return best
	}
	return nil
}

// exact returns every string re can match, lower-cased, if they are few and
// known; nil otherwise. Zero-width assertions match "".
func exact(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}
	case syntax.OpLiteral:
		s, ok := foldASCII(re.Rune)
		if !ok {
			return nil
		}
		return []string{s}
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				s, ok := foldASCII([]rune{r})
				if !ok || len(out) >= 8 {
					return nil
				}
				out = appendUnique(out, s)
			}
		}
		return out
	case syntax.OpCapture:
		return exact(re.Sub[0])
	case syntax.OpQuest:
		if e := exact(re.Sub[0]); e != nil {
			return appendUnique(append([]string(nil), e...), "")
		}
	case syntax.OpConcat:
		acc := []string{""}
		for _, sub := range re.Sub {
			e := exact(sub)
			if e == nil {
				return nil
			}
			if acc = cross(acc, e); acc == nil {
				return nil
			}
		}
		return acc
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			e := exact(sub)
			if e == nil {
				return nil
			}
			for _, s := range e {
				out = appendUnique(out, s)
			}
			if len(out) > maxAnchorSet {
				return nil
			}
		}
		return out
	}
	return nil
}

func cross(a, b []string) []string {
	if len(a)*len(b) > maxAnchorSet {
		return nil
	}
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = appendUnique(out, x+y)
		}
	}
	return out
}

func appendUnique(s []string, x string) []string {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}

func usable(s []string) bool { return s != nil && minLen(s) >= minAnchorLen }

func minLen(s []string) int {
	m := -1
	for _, x := range s {
		if m < 0 || len(x) < m {
			m = len(x)
		}
	}
	return m
}

// foldASCII lower-cases runes that are all ASCII.
func foldASCII(rs []rune) (string, bool) {
	var b strings.Builder
	for _, r := range rs {
		if r >= 0x80 {
			return "", false
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		b.WriteByte(byte(r))
	}
	return b.String(), true
}

// acMatcher is an Aho-Corasick automaton over ASCII-folded bytes, compiled
// to a table: one lookup per byte of text.
type acMatcher struct {
	class  [256]uint8 // byte -> input class; 0 for bytes in no word
	nclass int
	next   []int32   // state*nclass + class -> state
	out    [][]int32 // state -> rules with a word ending here
}

// newAC builds the automaton for words[i] belonging to rule owner[i].
func newAC(words []string, owner []int) *acMatcher {
	m := &acMatcher{}
	n := 1
	for _, w := range words {
		for i := 0; i < len(w); i++ {
			c := w[i]
			if m.class[c] == 0 {
				m.class[c] = uint8(n)
				if 'a' <= c && c <= 'z' {
					m.class[c-'a'+'A'] = uint8(n)
				}
				n++
			}
		}
	}
	m.nclass = n
	// The trie, with -1 for "no edge" until the failure links fill them in.
	m.next = make([]int32, n)
	for i := range m.next {
		m.next[i] = -1
	}
	m.out = [][]int32{nil}
	for wi, w := range words {
		s := int32(0)
		for i := 0; i < len(w); i++ {
			k := int(s)*n + int(m.class[w[i]])
			if m.next[k] < 0 {
				m.next[k] = int32(len(m.out))
				m.out = append(m.out, nil)
				for j := 0; j < n; j++ {
					m.next = append(m.next, -1)
				}
			}
			s = m.next[k]
		}
		m.out[s] = appendRule(m.out[s], int32(owner[wi]))
	}
	// Breadth first: complete the table with failure transitions and merge
	// the outputs of each state's failure state.
	fail := make([]int32, len(m.out))
	var queue []int32
	for c := 0; c < n; c++ {
		k := c
		if m.next[k] < 0 || c == 0 {
			m.next[k] = 0
			continue
		}
		fail[m.next[k]] = 0
		queue = append(queue, m.next[k])
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, r := range m.out[fail[s]] {
			m.out[s] = appendRule(m.out[s], r)
		}
		for c := 0; c < n; c++ {
			k := int(s)*n + c
			f := m.next[int(fail[s])*n+c]
			if t := m.next[k]; t >= 0 && c != 0 {
				fail[t] = f
				queue = append(queue, t)
			} else {
				m.next[k] = f
			}
		}
	}
	return m
}

func appendRule(s []int32, r int32) []int32 {
	for _, x := range s {
		if x == r {
			return s
		}
	}
	return append(s, r)
}

// scan sets hits[r] for every rule r with a word in text.
func (m *acMatcher) scan(text string, hits []uint64) {
	s := int32(0)
	n := int32(m.nclass)
	for i := 0; i < len(text); i++ {
		s = m.next[s*n+int32(m.class[text[i]])]
		for _, r := range m.out[s] {
			hits[r>>6] |= 1 << (r & 63)
		}
	}
}
