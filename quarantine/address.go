package quarantine

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrBadAddress is wrapped by every error about an address that cannot be
// an entry (errors.Is); the message says what is wrong with it.
var ErrBadAddress = errors.New("bad address")

// maxAddressLen is the longest address taken: RFC 5321 §4.5.3.1.3 limits a
// path to 256 octets including the angle brackets.
const maxAddressLen = 254

// Normalize returns the key under which addr is kept: surrounding spaces and
// angle brackets removed, the domain lowercased (RFC 5321 §2.4: domains are
// case-insensitive) and a trailing dot dropped, the local part kept exact
// unless caseSensitiveLocal is false (the RFC lets the receiving host decide;
// all big providers fold case, most small ones do too). IDNA forms are not
// unified. An address that is not valid is returned trimmed but otherwise
// unchanged; use the Store's methods to get an error for it.
func Normalize(addr string, caseSensitiveLocal bool) string {
	var buf [maxAddressLen]byte
	k, err := normalizeInto(buf[:0], addr, !caseSensitiveLocal)
	if err != nil {
		return strings.TrimSpace(addr)
	}
	return string(k)
}

// normalizeInto appends the normalised form of addr to dst (cap 254 avoids
// allocating for ASCII input) or says why addr is not an address. Only
// non-ASCII domains allocate.
func normalizeInto(dst []byte, addr string, foldLocal bool) ([]byte, error) {
	a := strings.TrimSpace(addr)
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = strings.TrimSpace(a[1 : len(a)-1])
	}
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrBadAddress, clip(addr, 80), why)
	}
	if a == "" {
		return nil, bad("empty")
	}
	at := strings.IndexByte(a, '@')
	switch {
	case at < 0:
		return nil, bad("no '@'")
	case strings.IndexByte(a[at+1:], '@') >= 0:
		return nil, bad("more than one '@'")
	case at == 0:
		return nil, bad("empty local part")
	}
	local, domain := a[:at], strings.TrimSuffix(a[at+1:], ".")
	if domain == "" {
		return nil, bad("empty domain")
	}
	if len(local)+1+len(domain) > maxAddressLen {
		return nil, bad(fmt.Sprintf("longer than %d characters", maxAddressLen))
	}
	if !utf8.ValidString(a) {
		return nil, bad("not UTF-8")
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		// Refused outside a quoted local part (RFC 5321 §4.1.2), and quoted
		// local parts are not taken: bulk lists never need them, and these
		// characters in a list are a broken export (a CSV with ';', a name
		// and an address).
		if c <= ' ' || c == 0x7f || strings.IndexByte(`"(),:;<>[\]`, c) >= 0 {
			return nil, bad(fmt.Sprintf("character %q in the local part", c))
		}
	}
	if err := checkDomain(domain); err != "" {
		return nil, bad(err)
	}
	if foldLocal {
		dst = appendLower(dst, local)
	} else {
		dst = append(dst, local...)
	}
	dst = append(dst, '@')
	return appendLower(dst, domain), nil
}

// checkDomain accepts a host name (RFC 5321 §4.1.2, plus '_' and U-labels,
// both seen in real lists) or an address literal in brackets.
func checkDomain(d string) string {
	if d[0] == '[' {
		if d[len(d)-1] != ']' || len(d) < 3 {
			return "broken address literal"
		}
		// RFC 5321 §4.1.3: dcontent is printable ASCII but '[', '\\'
		// and ']'; a space, a control or a line break would let a key
		// carry what no address can (and break listings and logs).
		for i := 1; i < len(d)-1; i++ {
			if c := d[i]; c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' {
				return fmt.Sprintf("character %q in the address literal", c)
			}
		}
		return ""
	}
	label := 0
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c == '.':
			if label == 0 {
				return "empty label in the domain"
			}
			label = 0
			continue
		case c >= 0x80, c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Sprintf("character %q in the domain", c)
		}
		label++
	}
	if label == 0 {
		return "empty label in the domain"
	}
	return ""
}

// appendLower appends s lowercased: a byte loop for ASCII, strings.ToLower
// (which allocates) only when s has non-ASCII letters.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return append(dst, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
