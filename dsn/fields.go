package dsn

import (
	"bytes"
	"regexp"
	"strings"
)

// group is one block of "Name: value" fields of a report part.
type group []Header

// get returns the first value of the field name (case-insensitive), or "".
func (g group) get(name string) string {
	for _, h := range g {
		if strings.EqualFold(h.Key, name) {
			return h.Value
		}
	}
	return ""
}

// fieldGroups splits the body of a message/delivery-status or
// message/feedback-report part into groups of fields separated by blank
// lines (RFC 3464 §2.1). Folded lines are unfolded by removing the line
// break only (RFC 5322 §2.2.3), so what Compose folds comes back exactly.
// Lines that are not fields are skipped; values are cut at maxValueLen and
// the number of groups is bounded.
func fieldGroups(b []byte) []group {
	var out []group
	var cur group
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	for len(b) > 0 && len(out) <= maxRecipients+1 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(cur) > 0 {
				h := &cur[len(cur)-1]
				// The fold's indentation is not part of the value: a
				// reply quoted over several lines must read as one line
				// for the text rules ("Recipient    address rejected"
				// would match nothing).
				if len(h.Value)+len(line) <= maxValueLen {
					h.Value = strings.TrimSpace(h.Value + " " + string(bytes.TrimSpace(line)))
				}
			}
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		k = bytes.TrimSpace(k)
		if len(k) == 0 || bytes.ContainsAny(k, " \t") {
			continue
		}
		if len(v) > maxValueLen {
			v = v[:maxValueLen]
		}
		// Some MTAs leave out the blank line between recipient groups: a
		// field already in the group starts the next one.
		key := string(k)
		if cur.get(key) != "" {
			flush()
		}
		if len(cur) >= maxGroupFields {
			continue // no real group is this long; keep the checks linear
		}
		cur = append(cur, Header{Key: key, Value: strings.TrimSpace(string(v))})
	}
	flush()
	return out
}

// stripType removes the type of a typed field value: "rfc822; a@b" -> "a@b",
// "dns; mx.example.com" -> "mx.example.com". A value without a type is
// returned trimmed.
func stripType(v string) string {
	if t, rest, ok := strings.Cut(v, ";"); ok && isToken(strings.TrimSpace(t)) {
		return strings.TrimSpace(rest)
	}
	return strings.TrimSpace(v)
}

// isToken reports whether s looks like an address or diagnostic type name
// such as "rfc822", "utf-8", "smtp" or "X-Postfix".
func isToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// stripAddr removes angle brackets and a trailing comment from an address.
func stripAddr(a string) string {
	a = strings.TrimSpace(a)
	if i := strings.IndexByte(a, '<'); i >= 0 {
		if j := strings.IndexByte(a[i:], '>'); j > 0 {
			return strings.TrimSpace(a[i+1 : i+j])
		}
	}
	if i := strings.IndexAny(a, " \t("); i > 0 {
		a = a[:i]
	}
	return a
}

func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t("); i >= 0 {
		s = s[:i]
	}
	return s
}

var (
	statusRe = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	// addrRe matches a bare address in running text.
	addrRe = regexp.MustCompile(`[^\s<>@(),;:"'\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]`)
)

// validStatus reports whether s is an RFC 3463 status code.
func validStatus(s string) bool { return statusRe.MatchString(s) }

// diagnosticCodes returns the SMTP reply code and the RFC 3463 enhanced code
// found in a diagnostic such as "smtp; 550 5.1.1 user unknown" or
// "X-Postfix; host mx said: 550-5.1.1 ...". Either may be missing.
func diagnosticCodes(d string) (code int, enhanced string) {
	code, enhanced, _ = bestCode(stripType(d))
	return code, enhanced
}

// hasCode reports whether s holds a failure reply code.
func hasCode(s string) bool {
	c, _, _ := bestCode(s)
	return c != 0
}

// bestCode finds the reply code that reports the failure in a diagnostic or
// a transcript, and its enhanced code, and returns where the reply starts.
// Real texts hold other numbers that look like codes: greetings ("220-mx
// ESMTP"), IPv6 and IPv4 fragments, sizes, ids, and the "503 need RCPT"
// that follows a refused recipient. So: only 4xx and 5xx replies count; a
// number preceded by a colon counts unless it ends an IPv6 address; a reply
// followed by an enhanced code of its class (RFC 3463 §2) beats one that is
// not, a permanent reply beats a transient one, and a 503 (bad sequence of
// commands, RFC 5321 §4.2.4) counts only when there is nothing else. With
// no basic code, the first 4.x.x or 5.x.x enhanced code is returned alone
// and at is its position.
func bestCode(s string) (code int, enhanced string, at int) {
	best, bestScore := -1, -1
	var bestEnh string
	firstEnh, firstEnhAt := "", -1
	for i := 0; i+3 <= len(s); i++ {
		c := s[i]
		if c < '2' || c > '5' || (i > 0 && !codeBefore(s, i)) {
			continue
		}
		if e, n := enhancedAt(s, i); n > 0 {
			if firstEnhAt < 0 && e[0] != '2' {
				firstEnh, firstEnhAt = e, i
			}
			i += n - 1
			continue
		}
		if !isDigit(s[i+1]) || !isDigit(s[i+2]) || (i+3 < len(s) && !codeAfter(s[i+3])) {
			continue
		}
		if c != '4' && c != '5' {
			i += 2
			continue
		}
		score := 1
		if c == '5' {
			score = 2
		}
		var enh string
		if i+4 < len(s) && (s[i+3] == ' ' || s[i+3] == '-') {
			if e, n := enhancedAt(s, i+4); n > 0 && e[0] == c {
				enh, score = e, score+4
			}
		}
		if s[i:i+3] == "503" {
			score = 0
		}
		if score > bestScore {
			best, bestScore, bestEnh = i, score, enh
		}
		i += 2
	}
	if best < 0 {
		if firstEnhAt >= 0 {
			return 0, firstEnh, firstEnhAt
		}
		return 0, "", 0
	}
	code = int(s[best]-'0')*100 + int(s[best+1]-'0')*10 + int(s[best+2]-'0')
	if bestEnh == "" && firstEnhAt >= 0 && firstEnh[0] == s[best] {
		bestEnh = firstEnh
	}
	return code, bestEnh, best
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// codeBefore reports whether the byte before s[i] may precede a code.
func codeBefore(s string, i int) bool {
	switch s[i-1] {
	case ' ', '\t', '(', '[', '#', '\'', '"', '=', '<', '>', '\n', '\r':
		return true
	case ':':
		// "RCPT TO:550", but not the end of an IPv6 address
		// ("2001:db8::220").
		colons, j := 0, i-1
		for ; j >= 0 && j > i-40 && (s[j] == ':' || isHexDigit(s[j])); j-- {
			if s[j] == ':' {
				colons++
			}
		}
		return colons < 2
	}
	return false
}

func codeAfter(c byte) bool {
	switch c {
	case ' ', '\t', '-', ')', ']', ',', ';', ':', '\'', '"', '\n', '\r':
		return true
	}
	return false
}

func isHexDigit(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// enhancedAt reads an RFC 3463 code (class.subject.detail, 1 to 3 digits
// each) at s[i:] and returns it and its length, or n == 0.
func enhancedAt(s string, i int) (string, int) {
	j := i
	if j+5 > len(s) || (s[j] != '2' && s[j] != '4' && s[j] != '5') || s[j+1] != '.' {
		return "", 0
	}
	j += 2
	for part := 0; part < 2; part++ {
		k := j
		for j < len(s) && j-k < 3 && isDigit(s[j]) {
			j++
		}
		if j == k {
			return "", 0
		}
		if part == 0 {
			if j >= len(s) || s[j] != '.' {
				return "", 0
			}
			j++
		}
	}
	if j < len(s) && (isDigit(s[j]) || s[j] == '.' && j+1 < len(s) && isDigit(s[j+1])) {
		return "", 0 // a version number or an IP address
	}
	return s[i:j], j - i
}
