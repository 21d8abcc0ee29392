package message

import (
	"bytes"
	"context"

	"github.com/penstock-mta/penstock/spool"
)

// FixHeaders is the header-fix stage: canonical CRLF line ends, a final
// CRLF, and an empty line between header and body (see the package
// comment). A message already in that form is not copied.
type FixHeaders struct{}

func (FixHeaders) Name() string               { return "fix" }
func (FixHeaders) Scope(*spool.Message) Scope { return PerMessage }

func (FixHeaders) Apply(_ context.Context, s *Send) error {
	d := Canonical(s.Data)
	n, blank := headerEnd(d)
	if !blank {
		// RFC 5322 §2.1: the body follows an empty line. Insert it where
		// the header stops (a copy: s.Data may be shared).
		nd := make([]byte, 0, len(d)+2)
		nd = append(nd, d[:n]...)
		nd = append(nd, "\r\n"...)
		d = append(nd, d[n:]...)
	}
	s.Data, s.HeaderLen = d, n
	return nil
}

// Canonical returns b with every line ending in CRLF: a bare LF or a bare
// CR becomes CRLF, and a last line without an end gets one. It returns b
// itself when nothing changes. An empty b stays empty.
func Canonical(b []byte) []byte {
	if isCanonical(b) {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// isCanonical reports whether every CR in b is followed by LF, every LF
// preceded by CR, and b ends in CRLF (or is empty). It runs on every
// message sent, so it uses the vectorised byte searches: each LF must
// follow a CR, and then there are as many CRs as LFs only if no CR is bare.
func isCanonical(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if len(b) < 2 || b[len(b)-2] != '\r' || b[len(b)-1] != '\n' {
		return false
	}
	lines := 0
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			break
		}
		p := off + i
		if p == 0 || b[p-1] != '\r' {
			return false
		}
		lines++
		off = p + 1
	}
	return bytes.Count(b, []byte{'\r'}) == lines
}

// headerEnd finds the end of the header in canonical d: n is the length of
// the header fields, and blank whether an empty line follows them. Without
// an empty line the header stops before the first line that is not a
// header field or its continuation (RFC 5322 §2.2, §3.6.8), or at the end.
func headerEnd(d []byte) (n int, blank bool) {
	for off := 0; off < len(d); {
		i := bytes.Index(d[off:], []byte("\r\n"))
		line := d[off : off+i]
		switch {
		case len(line) == 0:
			return off, true
		case (line[0] == ' ' || line[0] == '\t') && off > 0:
			// folded continuation of the field above
		case !isFieldLine(line):
			return off, false
		}
		off += i + 2
	}
	return len(d), false
}

// isFieldLine reports "name:" at the start of line: a name of printable
// ASCII but ':' (RFC 5322 §3.6.8), optionally followed by white space
// before the colon (the obsolete syntax of §4.5).
func isFieldLine(line []byte) bool {
	i := 0
	for i < len(line) && line[i] > ' ' && line[i] < 0x7f && line[i] != ':' {
		i++
	}
	if i == 0 {
		return false
	}
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	return i < len(line) && line[i] == ':'
}
