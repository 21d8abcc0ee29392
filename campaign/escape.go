package campaign

import "strings"

// escaper appends s, escaped for one context, to dst.
type escaper func(dst []byte, s string) []byte

// escaperFor maps the escaper chain html/template put on an action in its
// escaped tree to one function of ours with the same output for plain
// strings (the only values a campaign has), fused so that a chain costs no
// intermediate string. urlFilter, which only ever passes a value or replaces
// it, comes apart as filter. A chain not listed here (JavaScript, CSS,
// unquoted attributes) returns nil and leaves the field on the html/template
// path. The names are html/template internals; if a Go release renamed them,
// the fast path would give way to the slow one, never to wrong output, and
// TestHTMLFastPathMatchesTemplate holds the two paths to the same bytes.
func escaperFor(chain []string) (filter bool, esc escaper) {
	if len(chain) > 0 && chain[0] == "_html_template_urlfilter" {
		filter, chain = true, chain[1:]
	}
	switch strings.Join(chain, "|") {
	case "_html_template_htmlescaper", "_html_template_attrescaper", "_html_template_rcdataescaper":
		// For plain strings all three escape the same set: text, quoted
		// attribute values and RCDATA (title, textarea).
		return filter, appendHTMLEscaped
	case "_html_template_urlescaper", "_html_template_urlescaper|_html_template_attrescaper":
		// The URL escaper leaves only unreserved characters and %XX, which
		// the attribute escaper passes unchanged.
		return filter, appendURLEscaped
	case "_html_template_urlnormalizer":
		return filter, appendURLNormalized
	case "_html_template_urlnormalizer|_html_template_attrescaper":
		return filter, appendURLNormalizedAttr
	case "_html_template_commentescaper":
		// html/template drops actions inside HTML comments.
		return filter, func(dst []byte, _ string) []byte { return dst }
	}
	return false, nil
}

// htmlEscape returns the escape for the bytes escaped in HTML text and quoted attribute
// values. '+' is escaped as html/template does (UTF-7 sniffing); NUL
// becomes U+FFFD as an HTML parser would make it.
func htmlEscape(c byte) string {
	switch c {
	case 0:
		return "\uFFFD"
	case '"':
		return "&#34;"
	case '&':
		return "&amp;"
	case '\'':
		return "&#39;"
	case '+':
		return "&#43;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	}
	return ""
}

func appendHTMLEscaped(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > '>' || (c != 0 && c != '"' && c != '&' && c != '\'' && c != '+' && c != '<' && c != '>') {
			continue
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, htmlEscape(c)...)
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// isUnreserved reports RFC 3986 §2.3 unreserved characters.
func isUnreserved(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '-' || c == '.' || c == '_' || c == '~'
}

// isReserved reports RFC 3986 §2.2 reserved characters, less the quote and
// parentheses, which a URL in an attribute or CSS url() must not carry raw.
func isReserved(c byte) bool {
	return strings.IndexByte("!#$&*+,/:;=?@[]", c) >= 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

const lowerHex = "0123456789abcdef"

// appendURLEscaped percent-encodes everything but unreserved characters:
// the value of a query parameter or path segment (lower-case hex, as
// html/template writes it).
func appendURLEscaped(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			continue
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, '%', lowerHex[c>>4], lowerHex[c&15])
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// appendURLNormalized percent-encodes what may not appear in a URL at all,
// keeping reserved characters and existing %XX escapes: a variable that is
// a whole URL or a part of one.
func appendURLNormalized(dst []byte, s string) []byte { return appendURLNorm(dst, s, false) }

// appendURLNormalizedAttr is appendURLNormalized, then HTML-escaped for a
// quoted attribute. Of what normalizing keeps, only '&' and '+' need it.
func appendURLNormalizedAttr(dst []byte, s string) []byte { return appendURLNorm(dst, s, true) }

func appendURLNorm(dst []byte, s string, attr bool) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			continue
		}
		if isReserved(c) && (!attr || c != '&' && c != '+') {
			continue
		}
		dst = append(dst, s[last:i]...)
		switch {
		case isReserved(c):
			dst = append(dst, htmlEscape(c)...)
		default:
			dst = append(dst, '%', lowerHex[c>>4], lowerHex[c&15])
		}
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// urlFilter passes URLs whose scheme is http, https or mailto, or that have
// none (relative), and replaces any other (javascript:, data:) with
// html/template's marker "#ZgotmplZ".
func urlFilter(s string) string {
	if scheme, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(scheme, "/") {
		if !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "mailto") {
			return "#ZgotmplZ"
		}
	}
	return s
}

// appendPercent encodes a value substituted into the List-Unsubscribe URL:
// only unreserved characters (RFC 3986 §2.3) stay, so a value is data in a
// path segment or query and never changes the URL's structure. Upper-case
// hex per RFC 3986 §2.1.
func appendPercent(dst []byte, s string) []byte {
	const upperHex = "0123456789ABCDEF"
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) {
			continue
		}
		dst = append(dst, s[last:i]...)
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		last = i + 1
	}
	return append(dst, s[last:]...)
}

// qpLineMax is the longest encoded line before a soft break's '=' (RFC 2045
// §6.7 rule 5: lines of at most 76 characters, the '=' included).
const qpLineMax = 75

// qpPlain reports bytes copied as they are in a run: printable ASCII except
// '=' (RFC 2045 §6.7 rule 2), plus space and tab, which rule 3 allows except
// at the end of a line; appendQP handles that case.
func qpPlain(c byte) bool { return c-32 < 95 && c != '=' || c == '\t' }

// appendQP appends src encoded as quoted-printable (RFC 2045 §6.7) with
// CRLF line breaks. LF and CRLF in src are line breaks; a lone CR is
// encoded. White space before a line break is encoded, so transports that
// strip trailing blanks change nothing.
func appendQP(dst, src []byte) []byte {
	const upperHex = "0123456789ABCDEF"
	n := 0 // characters on the current output line
	for i := 0; i < len(src); {
		c := src[i]
		if c == '\n' {
			dst = append(dst, crlf...)
			n = 0
			i++
			continue
		}
		if c == '\r' && i+1 < len(src) && src[i+1] == '\n' {
			dst = append(dst, crlf...)
			n = 0
			i += 2
			continue
		}
		if qpPlain(c) {
			if n >= qpLineMax {
				dst = append(dst, '=', '\r', '\n')
				n = 0
			}
			// Copy the run of plain bytes that fits on this line at once.
			lim := i + qpLineMax - n
			if lim > len(src) {
				lim = len(src)
			}
			j := i
			for _, b := range src[i:lim] {
				if !qpPlain(b) {
					break
				}
				j++
			}
			// A run ending in white space at the end of a line or of the
			// text leaves that byte to be encoded (rule 3).
			if e := src[j-1]; e == ' ' || e == '\t' {
				if j == len(src) || src[j] == '\n' || src[j] == '\r' && j+1 < len(src) && src[j+1] == '\n' {
					j--
				}
			}
			dst = append(dst, src[i:j]...)
			n += j - i
			if j > i {
				i = j
				continue
			}
		}
		if n+3 > qpLineMax {
			dst = append(dst, '=', '\r', '\n')
			n = 0
		}
		dst = append(dst, '=', upperHex[c>>4], upperHex[c&15])
		n += 3
		i++
	}
	return dst
}
