package smtpserver

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"
)

// traceInfo is what the Received: header records about one transaction.
type traceInfo struct {
	helo     string
	remote   netip.Addr
	hostname string
	tls      bool
	auth     bool
	smtputf8 bool
	id       string
	rcpts    []string
	now      time.Time
}

// appendReceived appends a Received: header (RFC 5321 §4.4) in the form
//
//	Received: from HELO ([IP])
//		by HOSTNAME (Penstock) with ESMTPSA id ID
//		for <rcpt>; DATE
//
// "for" is written only for a single recipient: listing a whole bulk
// envelope would disclose the recipients to one another.
func appendReceived(b []byte, t traceInfo) []byte {
	b = append(b, "Received: from "...)
	b = appendSafe(b, t.helo)
	b = append(b, " (["...)
	if t.remote.Is6() {
		b = append(b, "IPv6:"...)
	}
	b = t.remote.AppendTo(b)
	b = append(b, "])\r\n\tby "...)
	b = append(b, t.hostname...)
	b = append(b, " (Penstock) with "...)
	b = append(b, withProtocol(t)...)
	b = append(b, " id "...)
	b = append(b, t.id...)
	if len(t.rcpts) == 1 {
		b = append(b, "\r\n\tfor <"...)
		b = append(b, t.rcpts[0]...)
		b = append(b, '>')
	}
	b = append(b, ";\r\n\t"...)
	b = t.now.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 -0700")
	return append(b, "\r\n"...)
}

// withProtocol names the protocol as registered by RFC 3848 (ESMTP, ESMTPS,
// ESMTPA, ESMTPSA) and RFC 6531 §3.7.3 (UTF8SMTP...).
func withProtocol(t traceInfo) string {
	p := "ESMTP"
	if t.smtputf8 {
		p = "UTF8SMTP"
	}
	if t.tls {
		p += "S"
	}
	if t.auth {
		p += "A"
	}
	return p
}

// appendSafe appends the client-supplied HELO name with anything that could
// break the header (controls, spaces, comment and clause delimiters,
// non-ASCII) replaced by '_'. go-smtp passes the argument through unchecked.
func appendSafe(b []byte, s string) []byte {
	if s == "" {
		return append(b, "unknown"...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '(' || c == ')' || c == ';' || c == '\\' {
			c = '_'
		}
		b = append(b, c)
	}
	return b
}

// appendCRLF appends src to dst with every line ending made CRLF: a bare LF
// or bare CR (forbidden by RFC 5321 §2.3.8, but sent by careless clients)
// becomes CRLF. A non-empty body that lacks a final line ending gets one, so
// the stored message is a sequence of CRLF-terminated lines.
//
// Almost every client sends CRLF lines already: that body is appended in
// one copy; the rest go line by line. crlf is scanLines' verdict on src.
func appendCRLF(dst, src []byte, crlf bool) []byte {
	if crlf {
		return append(dst, src...)
	}
	return appendCRLFLines(dst, src)
}

// scanLines reads b a line at a time: whether it is CRLF-terminated lines
// and nothing else (it ends in CRLF, every LF follows a CR, and there are
// as many CRs as LFs, so no CR stands alone), and the length of its
// longest line, its line end not counted.
func scanLines(b []byte) (crlf bool, longest int) {
	crlf = len(b) == 0 || bytes.HasSuffix(b, []byte("\r\n"))
	lfs := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			longest = max(longest, len(b)-i)
			break
		}
		n := j
		if i+j > 0 && b[i+j-1] == '\r' {
			n--
		} else {
			crlf = false
		}
		longest = max(longest, n)
		lfs++
		i += j + 1
	}
	return crlf && bytes.Count(b, []byte{'\r'}) == lfs, longest
}

// appendCRLFLines is appendCRLF a line at a time, for bodies with bare CRs
// or LFs.
func appendCRLFLines(dst, src []byte) []byte {
	for len(src) > 0 {
		var line []byte
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
		} else {
			line, src = src, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		// Bare CRs inside a line are rare: handle them off the fast path.
		for {
			j := bytes.IndexByte(line, '\r')
			if j < 0 {
				break
			}
			dst = append(dst, line[:j]...)
			dst = append(dst, '\r', '\n')
			line = line[j+1:]
		}
		dst = append(dst, line...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

// has8Bit reports whether b has any octet above 127.
func has8Bit(b []byte) bool {
	// Eight octets at a time: their high bits OR'ed, 32 bytes a round.
	const high = 0x8080808080808080
	for len(b) >= 32 {
		w := binary.LittleEndian.Uint64(b) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:])
		if w&high != 0 {
			return true
		}
		b = b[32:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
