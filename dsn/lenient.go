package dsn

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
)

// lenient walks a MIME entity that the strict reader refused. It trusts
// nothing but the boundary lines: a header line that is neither a field nor
// indented continues the field before it (MTAs that fold "boundary=" without
// indentation), a part without its closing boundary runs to the end, and an
// undecodable transfer encoding leaves what could be decoded. The limits
// are those of the strict walk.
func (w *walker) lenient(b []byte, depth int) error {
	h, body := lenientHeader(b)
	if h.Len() > maxHeaderFields {
		return fmt.Errorf("dsn: MIME part has %d header fields, limit %d", h.Len(), maxHeaderFields)
	}
	t, params := lenientContentType(h.Get("Content-Type"))
	if strings.HasPrefix(t, "multipart/") {
		if depth >= maxDepth {
			return fmt.Errorf("dsn: MIME nested deeper than %d levels", maxDepth)
		}
		if t == "multipart/report" && w.reportType == "" {
			w.reportType = strings.ToLower(params["report-type"])
		}
		boundary := params["boundary"]
		if boundary == "" {
			boundary = guessBoundary(body)
		}
		if boundary == "" {
			// Not multipart after all: read it as text.
			return w.leaf("text/plain", false, bytes.NewReader(body))
		}
		parts := splitParts(body, boundary)
		if len(parts) == 0 {
			// The header's boundary is not the one the body uses (seen
			// from MTAs that rewrite one and not the other).
			if g := guessBoundary(body); g != "" && g != boundary {
				parts = splitParts(body, g)
			}
		}
		if len(parts) == 0 {
			// No boundary line at all: the body is all there is.
			return w.leaf("text/plain", false, bytes.NewReader(body))
		}
		for _, p := range parts {
			w.parts++
			if w.parts > maxParts {
				return fmt.Errorf("dsn: more than %d MIME parts", maxParts)
			}
			if err := w.lenient(p, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	d, _, _ := h.ContentDisposition()
	err := w.leaf(t, d == "attachment", bytes.NewReader(decodeBody(body, h.Get("Content-Transfer-Encoding"))))
	if err != nil && (t == "message/delivery-status" || t == "message/feedback-report") {
		// An oversized report part: keep going, the text may do.
		return nil
	}
	return err
}

// lenientHeader reads the header block at the start of b and returns it
// with the body after the blank line. A block that does not start with a
// field has no header: b is all body.
func lenientHeader(b []byte) (message.Header, []byte) {
	var h message.Header
	var key string
	var val []byte
	flush := func() {
		if key != "" {
			h.Add(key, strings.TrimSpace(string(val)))
		}
		key, val = "", nil
	}
	rest := b
	for len(rest) > 0 {
		line := rest
		next := []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, next = rest[:i], rest[i+1:]
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			rest = next
			break
		}
		if k, v, ok := bytes.Cut(line, []byte{':'}); ok && line[0] != ' ' && line[0] != '\t' && isFieldName(k) {
			flush()
			key, val = string(k), append([]byte(nil), v...)
		} else if key != "" && len(val) < maxValueLen {
			// Folded, with or without the indentation RFC 5322 §2.2.3
			// requires.
			val = append(append(val, ' '), bytes.TrimSpace(line)...)
		} else if key == "" {
			return h, b
		}
		rest = next
		if h.Len() > maxHeaderFields {
			break
		}
	}
	flush()
	return h, rest
}

func isFieldName(k []byte) bool {
	if len(k) == 0 || len(k) > 76 {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 127 {
			return false
		}
	}
	return true
}

var paramRe = regexp.MustCompile(`(?i)\b(boundary|report-type)\s*=\s*(?:"([^"]*)"|([^\s;]+))`)

// lenientContentType parses a Content-Type value, falling back to picking
// the parameters it needs out of a malformed one.
func lenientContentType(v string) (string, map[string]string) {
	t, params, err := mime.ParseMediaType(v)
	if err == nil {
		return t, params
	}
	t, _, _ = strings.Cut(v, ";")
	t = strings.ToLower(strings.TrimSpace(t))
	if t == "" {
		t = "text/plain" // RFC 2045 §5.2
	}
	params = map[string]string{}
	for _, m := range paramRe.FindAllStringSubmatch(v, 4) {
		params[strings.ToLower(m[1])] = m[2] + m[3]
	}
	return t, params
}

// guessBoundary returns the boundary of a multipart body whose header lost
// it: the first line that starts with "--" and is followed later by the
// same line.
func guessBoundary(body []byte) string {
	for n, rest := 0, body; len(rest) > 0 && n < 200; n++ {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, "\r \t")
		if len(line) > 2 && len(line) < 74 && bytes.HasPrefix(line, []byte("--")) {
			return string(line[2:])
		}
	}
	return ""
}

// splitParts cuts a multipart body at its boundary lines (RFC 2046
// §5.1.1). The preamble is dropped; a part cut short by a missing closing
// delimiter runs to the end.
func splitParts(body []byte, boundary string) [][]byte {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	for pos := 0; pos < len(body) && len(parts) <= maxParts; {
		end := bytes.IndexByte(body[pos:], '\n')
		lineEnd := len(body)
		if end >= 0 {
			lineEnd = pos + end + 1
		}
		line := bytes.TrimRight(body[pos:lineEnd], "\r\n \t")
		if bytes.HasPrefix(line, delim) {
			tail := line[len(delim):]
			if len(tail) == 0 || bytes.Equal(tail, []byte("--")) {
				if start >= 0 {
					parts = append(parts, body[start:pos])
				}
				if len(tail) == 2 {
					return parts
				}
				start = lineEnd
			}
		}
		pos = lineEnd
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// decodeBody undoes a transfer encoding, keeping what decodes of a damaged
// body.
func decodeBody(b []byte, cte string) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := make([]byte, 0, len(b))
		for _, c := range b {
			if c == '=' || c == '+' || c == '/' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
				clean = append(clean, c)
			}
		}
		if i := bytes.IndexByte(clean, '='); i >= 0 {
			clean = clean[:i]
		}
		if len(clean)%4 == 1 {
			clean = clean[:len(clean)-1] // a stray character cannot be decoded
		}
		out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
		n, _ := base64.RawStdEncoding.Decode(out, clean)
		return out[:n]
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		return out
	}
	return b
}

// htmlText turns an HTML body into plain text, well enough to read a bounce
// explanation from it: block tags become line breaks, other tags go,
// script and style elements go whole, entities are decoded. One pass, no
// regexp: report bodies can be large.
func htmlText(b []byte) []byte {
	out := make([]byte, 0, len(b)/2)
	for i := 0; i < len(b); {
		c := b[i]
		if c != '<' {
			out = append(out, c)
			i++
			continue
		}
		end := bytes.IndexByte(b[i:], '>')
		if end < 0 {
			break
		}
		tag := bytes.ToLower(bytes.TrimLeft(b[i+1:i+end], "/"))
		if j := bytes.IndexAny(tag, " \t\r\n/"); j >= 0 {
			tag = tag[:j]
		}
		i += end + 1
		switch string(tag) {
		case "script", "style":
			// Skip to the closing tag, compared without case; each byte
			// is looked at once, however many such elements there are.
			for {
				k := bytes.Index(b[i:], []byte("</"))
				if k < 0 {
					i = len(b)
					break
				}
				i += k
				if j := i + 2 + len(tag); j <= len(b) && bytes.EqualFold(b[i+2:j], tag) {
					break
				}
				i += 2
			}
		case "br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6":
			out = append(out, '\n')
		}
	}
	return []byte(html.UnescapeString(string(out)))
}
