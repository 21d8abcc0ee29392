package dkim

import (
	"bytes"
	"crypto/sha256"
	"hash"
	"strings"
)

// field is one header field as it appears in the message: name and the raw
// text of the whole field, folding included, with its final CRLF.
type field struct {
	name string // as written, for case-insensitive matching
	raw  []byte
}

// splitMessage returns the header fields and the body of msg (RFC 5322 §2.1:
// the header ends at the first empty line). A message with no empty line is
// all header and has an empty body. Lines may end in CRLF or a bare LF.
func splitMessage(msg []byte) (fields []field, body []byte) {
	pos := 0
	for pos < len(msg) {
		// An empty line ends the header.
		if msg[pos] == '\n' {
			return fields, msg[pos+1:]
		}
		if msg[pos] == '\r' && pos+1 < len(msg) && msg[pos+1] == '\n' {
			return fields, msg[pos+2:]
		}
		start := pos
		for {
			nl := bytes.IndexByte(msg[pos:], '\n')
			if nl < 0 {
				pos = len(msg)
				break
			}
			pos += nl + 1
			// RFC 5322 §2.2.3: a line starting with WSP continues the field.
			if pos >= len(msg) || (msg[pos] != ' ' && msg[pos] != '\t') {
				break
			}
		}
		raw := msg[start:pos]
		name, _, ok := bytes.Cut(raw, []byte{':'})
		if !ok {
			// Not a field (RFC 5322 forbids it); keep it so that nothing
			// is lost, but it can never be signed.
			name = nil
		}
		fields = append(fields, field{name: string(bytes.TrimRight(name, " \t")), raw: raw})
	}
	return fields, nil
}

// value returns the field's unfolded value with outer whitespace trimmed.
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte{':'})
	out := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			out = append(out, c)
		}
	}
	return strings.Trim(string(out), " \t")
}

func isWSP(b byte) bool { return b == ' ' || b == '\t' }

// canonHeader appends the canonical form of one raw header field, CRLF
// included (RFC 6376 §3.4.1 simple: unchanged; §3.4.2 relaxed: name
// lower-cased, unfolded, runs of WSP reduced to one SP, WSP removed at the
// end of the value and around the colon).
func canonHeader(dst, raw []byte, relaxed bool) []byte {
	if !relaxed {
		return append(dst, raw...)
	}
	name, value, _ := bytes.Cut(raw, []byte{':'})
	for _, c := range bytes.TrimRight(name, " \t") {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	return append(relaxValue(dst, value), '\r', '\n')
}

// relaxValue appends value unfolded, with WSP runs as one SP and no WSP at
// either end.
func relaxValue(dst, value []byte) []byte {
	space := false
	wrote := false
	for _, c := range value {
		switch {
		case c == '\r' || c == '\n':
			continue
		case isWSP(c):
			space = true
			continue
		}
		if space && wrote {
			dst = append(dst, ' ')
		}
		space = false
		wrote = true
		dst = append(dst, c)
	}
	return dst
}

// bodyHasher writes the canonical body (RFC 6376 §3.4.3 simple, §3.4.4
// relaxed) into a hash. The canonical lines are gathered in out and hashed
// in pieces of at least flushAt bytes: a hash Write per line cost more than
// the canonicalization itself.
type bodyHasher struct {
	h       hash.Hash
	relaxed bool
	empties int  // empty lines seen but not yet written: trailing ones are dropped
	any     bool // a non-empty line was written
	out     []byte
}

const flushAt = 16 << 10

func newBodyHasher(relaxed bool) *bodyHasher {
	return &bodyHasher{h: sha256.New(), relaxed: relaxed}
}

// line takes one body line without its line ending.
func (b *bodyHasher) line(l []byte) {
	// §3.4.4: WSP at the end of a line ignored, so a line of WSP only is
	// empty under relaxed.
	if len(l) == 0 || (b.relaxed && len(bytes.TrimLeft(l, " \t")) == 0) {
		b.empties++
		return
	}
	for ; b.empties > 0; b.empties-- {
		b.out = append(b.out, '\r', '\n')
	}
	if b.relaxed {
		// §3.4.4: runs of WSP inside a line reduced to one SP.
		space := false
		for _, c := range l {
			if isWSP(c) {
				space = true
				continue
			}
			if space {
				b.out = append(b.out, ' ')
				space = false
			}
			b.out = append(b.out, c)
		}
	} else {
		b.out = append(b.out, l...)
	}
	b.out = append(b.out, '\r', '\n')
	b.any = true
	if len(b.out) >= flushAt {
		b.h.Write(b.out)
		b.out = b.out[:0]
	}
}

// sum hashes body and returns the digest.
func (b *bodyHasher) sum(body []byte) []byte {
	b.out = make([]byte, 0, min(len(body)+64, 2*flushAt))
	for len(body) > 0 {
		nl := bytes.IndexByte(body, '\n')
		var l []byte
		if nl < 0 {
			// A last line without CRLF gets one (§3.4.3, §3.4.4).
			l, body = body, nil
		} else {
			l, body = body[:nl], body[nl+1:]
			l = bytes.TrimSuffix(l, []byte{'\r'})
		}
		b.line(l)
	}
	// §3.4.3: the simple canonical form of an empty body is one CRLF;
	// §3.4.4: the relaxed form is empty.
	if !b.any && !b.relaxed {
		b.out = append(b.out, '\r', '\n')
	}
	b.h.Write(b.out)
	return b.h.Sum(nil)
}

// bodyHash is the SHA-256 of body in the given canonical form.
func bodyHash(body []byte, relaxed bool) []byte {
	return newBodyHasher(relaxed).sum(body)
}
