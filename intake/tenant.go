package intake

import (
	"bytes"
	"errors"
	"fmt"
)

// TenantHeader is the injection header field that names the tenant a
// message is sent for. Intake removes it before the message is stored, so
// no receiver ever sees it.
const TenantHeader = "X-Penstock-Tenant"

// ErrBadTenant is wrapped by the error for a tenant name that is not
// 1 to 64 letters, digits, '.', '_', '-' or '@'.
var ErrBadTenant = errors.New("bad tenant name")

// CheckTenant says what is wrong with a tenant name ("" is no tenant).
func CheckTenant(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: %d characters, at most 64", ErrBadTenant, len(name))
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return fmt.Errorf("%w: %q has %q: use letters, digits, '.', '_', '-', '@'", ErrBadTenant, name, c)
		}
	}
	return nil
}

// takeTenant removes every X-Penstock-Tenant field (with its folded
// continuation lines, RFC 5322 §2.2.3) from the header section of body
// and returns the value of the last one, unfolded and trimmed, and the
// body without them. A body without the field comes back as it was, not
// copied.
func takeTenant(body []byte) (string, []byte) {
	type span struct{ from, to int }
	var cut []span
	value := ""
	name := []byte(TenantHeader + ":")
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
