package dsn

import (
	"bytes"
	"regexp"
	"strconv"
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
				if len(h.Value)+len(line) <= maxValueLen {
					h.Value = strings.TrimSpace(h.Value + string(line))
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
		cur = append(cur, Header{Key: string(k), Value: strings.TrimSpace(string(v))})
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
	statusRe   = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)
	enhancedRe = regexp.MustCompile(`(?:^|[\s(#:\[-])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:$|[\s),;:\]])`)
	basicRe    = regexp.MustCompile(`(?:^|[\s(:#])([245][0-9][0-9])(?:$|[\s:-])`)
)

// validStatus reports whether s is an RFC 3463 status code.
func validStatus(s string) bool { return statusRe.MatchString(s) }

// diagnosticCodes returns the SMTP reply code and the RFC 3463 enhanced code
// found in a diagnostic such as "smtp; 550 5.1.1 user unknown" or
// "X-Postfix; host mx said: 550-5.1.1 ...". Either may be missing.
func diagnosticCodes(d string) (code int, enhanced string) {
	d = stripType(d)
	if m := basicRe.FindStringSubmatch(d); m != nil {
		code, _ = strconv.Atoi(m[1])
	}
	if m := enhancedRe.FindStringSubmatch(d); m != nil {
		enhanced = m[1]
	}
	return code, enhanced
}
