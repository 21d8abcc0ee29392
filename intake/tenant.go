package intake

import (
	"bytes"

	"github.com/penstock-mta/penstock/tenants"
)

// takeTenant removes every X-Penstock-Tenant field (with its folded
// continuation lines, RFC 5322 §2.2.3) from the header section of body
// and returns the value of the last one, unfolded and trimmed, and the
// body without them. A body without the field comes back as it was, not
// copied.
func takeTenant(body []byte) (string, []byte) {
	type span struct{ from, to int }
	var cut []span
	value := ""
	name := []byte(tenants.Header + ":")
	for at := 0; at < len(body); {
		end := bytes.IndexByte(body[at:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += at + 1
		}
		line := body[at:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the empty line: the header section ends
		}
		if len(line) >= len(name) && bytes.EqualFold(line[:len(name)], name) {
			// The field and its continuation lines.
			v := append([]byte(nil), bytes.TrimRight(line[len(name):], "\r\n")...)
			next := end
			for next < len(body) && (body[next] == ' ' || body[next] == '\t') {
				e := bytes.IndexByte(body[next:], '\n')
				if e < 0 {
					e = len(body)
				} else {
					e += next + 1
				}
				v = append(v, bytes.TrimRight(body[next:e], "\r\n")...)
				next = e
			}
			cut = append(cut, span{at, next})
			value = string(bytes.TrimSpace(v))
			end = next
		}
		at = end
	}
	if len(cut) == 0 {
		return "", body
	}
	out := make([]byte, 0, len(body))
	prev := 0
	for _, c := range cut {
		out = append(out, body[prev:c.from]...)
		prev = c.to
	}
	return value, append(out, body[prev:]...)
}
