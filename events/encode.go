package events

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// appendRecord appends r as one JSON object and a newline. The output is what
// encoding/json would produce for the struct tags of Record, except that '<',
// '>' and '&' are not escaped (SMTP replies are full of them and the log is
// read by people) and the time is formatted with time.RFC3339Nano directly.
// It is hand-written because Write is on the delivery hot path and reflection
// costs several times more.
func appendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, string(r.Type))
	b = append(b, `,"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendStringField(b, `,"id":`, r.ID)
	b = appendStringField(b, `,"delivery_id":`, r.DeliveryID)
	b = appendStringField(b, `,"sender":`, r.Sender)
	b = appendStringField(b, `,"recipient":`, r.Recipient)
	b = appendStringField(b, `,"site":`, r.Site)
	b = appendStringField(b, `,"mx_host":`, r.MXHost)
	b = appendStringField(b, `,"mx_ip":`, r.MXIP)
	b = appendStringField(b, `,"source_ip":`, r.SourceIP)
	b = appendStringField(b, `,"rule":`, r.Rule)
	if r.Code != 0 {
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(r.Code), 10)
	}
	b = appendStringField(b, `,"enhanced_code":`, r.EnhancedCode)
	b = appendStringField(b, `,"text":`, r.Text)
	b = appendStringField(b, `,"reason":`, r.Reason)
	b = appendStringField(b, `,"class":`, r.Class)
	if r.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(r.Attempt), 10)
	}
	b = appendStringField(b, `,"status":`, r.Status)
	b = appendStringField(b, `,"detail":`, r.Detail)
	b = appendStringField(b, `,"state":`, r.State)
	if r.Size != 0 {
		b = append(b, `,"size":`...)
		b = strconv.AppendInt(b, r.Size, 10)
	}
	if r.TLS {
		b = append(b, `,"tls":true`...)
	}
	b = appendStringField(b, `,"tls_info":`, r.TLSInfo)
	b = appendStringField(b, `,"tls_policy":`, r.TLSPolicy)
	if r.ConnUse != 0 {
		b = append(b, `,"conn_use":`...)
		b = strconv.AppendInt(b, int64(r.ConnUse), 10)
	}
	return append(b, '}', '\n')
}

func appendStringField(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, key...), s)
}

const hexDigits = "0123456789abcdef"

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasZero and hasLess set the high bit of each byte of the result whose byte
// in x is zero, or less than n (n <= 128), for bytes below 0x80; callers also
// reject bytes with the high bit set, so the classic false positives after a
// high byte do not matter.
func hasZero(x uint64) uint64         { return (x - lsb) &^ x }
func hasLess(x uint64, n byte) uint64 { return (x - lsb*uint64(n)) &^ x }

// plain[c] is true for ASCII bytes that go into a JSON string as they are:
// everything printable except '"' and '\\' (RFC 8259 §7).
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string. Control characters are escaped,
// invalid UTF-8 becomes U+FFFD byte by byte (as encoding/json does), and
// U+2028/U+2029 are escaped so that a line can be pasted into JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is pending, to be copied as is
	for i := 0; i < len(s); {
		// Skip 8 plain ASCII bytes at a time: none below 0x20, none '"' or
		// '\\', none with the high bit set.
		for i+8 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if (hasLess(x, 0x20)|hasZero(x^(lsb*'"'))|hasZero(x^(lsb*'\\'))|x)&msb != 0 {
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
