package dns

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// RFC 1035 §2.3.4: a label is at most 63 octets and a name at most 255 in
// wire form, which is 253 characters in dotted form without the final dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// normalizeName returns name as lowercased ASCII without a trailing dot, or
// why it is not a usable domain name. Internationalised names become A-labels
// (RFC 5890 §2.3.2.1) with the UTS #46 lookup mapping, as a resolver must ask
// for the ASCII form.
func normalizeName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	if !isASCII(name) {
		if !utf8.ValidString(name) {
			return "", errors.New("not valid UTF-8")
		}
		a, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("bad internationalised name: %v", err)
		}
		name = a
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if err := checkHostname(name); err != nil {
		return "", err
	}
	return name, nil
}

// checkHostname accepts a lowercased name without trailing dot made of
// letters, digits, hyphens and underscores (LDH, RFC 1123 §2.1, with the
// underscore tolerated as real zones use it) in labels of 1 to 63 characters,
// 253 in all. Everything else, such as the escaped binary a hostile server can
// put in a name, is refused.
func checkHostname(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name is %d characters long, more than %d", len(name), maxNameLen)
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if label == 0 {
				return errors.New("empty label")
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("character %q not allowed in a host name", c)
		}
		label++
		if label > maxLabelLen {
			return fmt.Errorf("label longer than %d characters", maxLabelLen)
		}
	}
	if label == 0 {
		return errors.New("empty label")
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
