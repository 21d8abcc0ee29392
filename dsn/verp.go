package dsn

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrefix starts the local part of a VERP address when VERP.Prefix is
// empty.
const DefaultPrefix = "b"

// checkLen is the length of the check in base32 characters: 40 bits, so a
// forger needs about 2^39 tries per address to hit a valid one.
const checkLen = 8

// maxRcptDigits bounds the recipient index so that it always fits an int.
const maxRcptDigits = 9

// ErrBadCheck is wrapped by Decode's error when the address has the VERP
// form but its check does not match: a forged or mangled bounce.
var ErrBadCheck = errors.New("dsn: VERP check does not match (forged or mangled bounce address)")

// VERP encodes message and recipient into a return path (variable envelope
// return path) and decodes them from the address a bounce comes back to.
// Key must be secret and stable: changing it orphans the bounces of mail
// already sent.
type VERP struct {
	Prefix string // local part before '+'; "" means DefaultPrefix
	Domain string // the bounce domain
	Key    []byte // HMAC key for the check
}

func (v VERP) prefix() string {
	if v.Prefix == "" {
		return DefaultPrefix
	}
	return v.Prefix
}

// check returns the keyed hash of the lowercase message id and the index.
func (v VERP) check(msgID string, rcpt int) string {
	m := hmac.New(sha256.New, v.Key)
	m.Write([]byte(msgID))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.Itoa(rcpt)))
	sum := m.Sum(nil)
	// 5 bytes are exactly 8 base32 characters, with no padding.
	return strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))
}

// Encode returns the return path for recipient index rcpt (counted from 0)
// of message msgID, which must be Penstock's 16-hex message id. The id is
// written in lowercase.
func (v VERP) Encode(msgID string, rcpt int) string {
	msgID = strings.ToLower(msgID)
	r := strconv.Itoa(rcpt)
	return v.prefix() + "+" + msgID + "." + r + "." + v.check(msgID, rcpt) + "@" + v.Domain
}

// Decode returns the message id (lowercase) and recipient index that addr
// was made for. addr may be enclosed in angle brackets. It fails when the
// domain is not v.Domain, the local part is not the VERP form, or the check
// does not match (the error then wraps ErrBadCheck). Decode refuses
// everything when v.Key is empty: unverifiable bounces could be forged to
// quarantine any address.
func (v VERP) Decode(addr string) (msgID string, rcpt int, err error) {
	if len(v.Key) == 0 {
		return "", 0, errors.New("dsn: VERP key is empty: refusing to trust bounce addresses")
	}
	a := strings.TrimSpace(addr)
	if strings.HasPrefix(a, "<") && strings.HasSuffix(a, ">") {
		a = a[1 : len(a)-1]
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return "", 0, fmt.Errorf("dsn: bounce address %.100q has no domain", addr)
	}
	local, domain := a[:at], strings.TrimSuffix(a[at+1:], ".")
	want := strings.TrimSuffix(v.Domain, ".")
	if want == "" || !strings.EqualFold(domain, want) {
		return "", 0, fmt.Errorf("dsn: bounce address %.100q is not in bounce domain %q", addr, v.Domain)
	}
	bad := func(why string) error {
		return fmt.Errorf("dsn: bounce address %.100q is not a VERP address (want %s+<msgid>.<rcpt>.<check>): %s", addr, v.prefix(), why)
	}
	p := v.prefix() + "+"
	if len(local) < len(p) || !strings.EqualFold(local[:len(p)], p) {
		return "", 0, bad("wrong prefix")
	}
	parts := strings.Split(local[len(p):], ".")
	if len(parts) != 3 {
		return "", 0, bad("want three dot-separated fields")
	}
	id, idx, chk := strings.ToLower(parts[0]), parts[1], strings.ToLower(parts[2])
	if len(id) != 16 || !isHex(id) {
		return "", 0, bad("message id is not 16 hex digits")
	}
	if idx == "" || len(idx) > maxRcptDigits || !isDigits(idx) || (len(idx) > 1 && idx[0] == '0') {
		return "", 0, bad("recipient index is not a number")
	}
	n, _ := strconv.Atoi(idx) // cannot fail: at most 9 digits
	if len(chk) != checkLen {
		return "", 0, bad("check has the wrong length")
	}
	if !hmac.Equal([]byte(chk), []byte(v.check(id, n))) {
		return "", 0, fmt.Errorf("%w: %.100q", ErrBadCheck, addr)
	}
	return id, n, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
