package smtpserver

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits from RFC 5321 §4.5.3.1: a path is at most 256 octets including the
// angle brackets, so a mailbox is at most 254; a local part at most 64; a
// domain label at most 63 (RFC 1035 §2.3.4).
const (
	maxAddressLen   = 254
	maxLocalPartLen = 64
	maxLabelLen     = 63
)

// errNeedsUTF8 marks an address that is well formed but non-ASCII in a
// transaction that did not announce SMTPUTF8 (RFC 6531 §3.2).
var errNeedsUTF8 = errors.New("non-ASCII address without SMTPUTF8")

// checkMailbox validates a mailbox as go-smtp hands it over (angle brackets
// and source route removed, a quoted local part unquoted) and returns it with
// the domain lower-cased, since domains compare case-insensitively and the
// local part is the receiving site's business (RFC 5321 §2.4).
//
// A quoted local part is accepted only when it is also a valid dot-string:
// go-smtp has already dropped the quotes, and re-quoting on the way out is a
// rarity a bulk MTA does not need.
func checkMailbox(addr string, smtputf8 bool) (string, error) {
	if len(addr) > maxAddressLen {
		return "", fmt.Errorf("address is longer than %d octets", maxAddressLen)
	}
	if !utf8.ValidString(addr) {
		return "", errors.New("address is not valid UTF-8")
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", errors.New("address has no @domain")
	}
	local, domain := addr[:at], addr[at+1:]
	nonASCII := false
	if err := checkLocalPart(local, &nonASCII); err != nil {
		return "", err
	}
	domain, err := checkDomain(domain, &nonASCII)
	if err != nil {
		return "", err
	}
	if nonASCII && !smtputf8 {
		return "", errNeedsUTF8
	}
	return local + "@" + domain, nil
}

// checkLocalPart checks the RFC 5321 §4.1.2 Dot-string form, with RFC 6531
// §3.3's extension of atext to non-ASCII UTF-8.
func checkLocalPart(local string, nonASCII *bool) error {
	switch {
	case local == "":
		return errors.New("local part is empty")
	case len(local) > maxLocalPartLen:
		return fmt.Errorf("local part is longer than %d octets", maxLocalPartLen)
	case local[0] == '.' || local[len(local)-1] == '.':
		return errors.New("local part starts or ends with a dot")
	case strings.Contains(local, ".."):
		return errors.New("local part has two dots in a row")
	}
	for _, r := range local {
		switch {
		case r >= 0x80:
			if !unicode.IsGraphic(r) {
				return fmt.Errorf("local part has a non-printable character %U", r)
			}
			*nonASCII = true
		case r == '.' || isAtext(byte(r)):
		default:
			return fmt.Errorf("local part has a character not allowed unquoted: %q", r)
		}
	}
	return nil
}

// isAtext reports whether c is an RFC 5322 §3.2.3 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkDomain checks an RFC 5321 §4.1.2 Domain (LDH labels, or U-labels
// under RFC 6531) or an address literal (§4.1.3), and lower-cases it.
func checkDomain(domain string, nonASCII *bool) (string, error) {
	if domain == "" {
		return "", errors.New("domain is empty")
	}
	if domain[0] == '[' {
		return checkAddressLiteral(domain)
	}
	if domain[len(domain)-1] == '.' {
		return "", errors.New("domain ends with a dot")
	}
	for label := range strings.SplitSeq(domain, ".") {
		if err := checkLabel(label, nonASCII); err != nil {
			return "", err
		}
	}
	return strings.ToLower(domain), nil
}

func checkLabel(label string, nonASCII *bool) error {
	switch {
	case label == "":
		return errors.New("domain has an empty label")
	case len(label) > maxLabelLen:
		return fmt.Errorf("domain label is longer than %d octets", maxLabelLen)
	case label[0] == '-' || label[len(label)-1] == '-':
		return fmt.Errorf("domain label %q starts or ends with a hyphen", label)
	}
	for _, r := range label {
		switch {
		case r >= 0x80:
			// U-label (RFC 5890): letters, digits and combining marks.
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) {
				return fmt.Errorf("domain has a character not allowed in a label: %q", r)
			}
			*nonASCII = true
		case r == '-', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		default:
			return fmt.Errorf("domain has a character not allowed in a label: %q", r)
		}
	}
	return nil
}

// checkAddressLiteral accepts "[192.0.2.1]" and "[IPv6:2001:db8::1]"
// (RFC 5321 §4.1.3); general address literals have no use here.
func checkAddressLiteral(lit string) (string, error) {
	if len(lit) < 3 || lit[len(lit)-1] != ']' {
		return "", errors.New("address literal is not closed with ]")
	}
	inner := lit[1 : len(lit)-1]
	if v6, ok := cutPrefixFold(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("address literal %s is not an IPv6 address", lit)
		}
		return "[IPv6:" + a.String() + "]", nil
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("address literal %s is not an IPv4 address", lit)
	}
	return "[" + a.String() + "]", nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
