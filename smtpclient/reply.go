package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Reply is one SMTP reply (RFC 5321 §4.2), possibly of several lines.
type Reply struct {
	Code     int    // three-digit reply code, e.g. 250
	Enhanced string // RFC 3463 status code without the reply code, e.g. "5.1.1"; "" if none was sent
	// Text is the reply text without code and enhanced code; the lines of a
	// multi-line reply are joined with "\n".
	Text string
}

// String formats the reply as a server would send its first line:
// "550 5.1.1 text" (lines of a multi-line text stay joined with "\n").
func (r Reply) String() string {
	b := make([]byte, 0, 4+len(r.Enhanced)+1+len(r.Text))
	b = strconv.AppendInt(b, int64(r.Code), 10)
	if r.Enhanced != "" {
		b = append(b, ' ')
		b = append(b, r.Enhanced...)
	}
	if r.Text != "" {
		b = append(b, ' ')
		b = append(b, r.Text...)
	}
	return string(b)
}

// Limits that keep a hostile or broken server from making us read forever.
// Deadlines bound the time; these bound the memory.
const (
	maxReplyLines = 256     // EHLO replies are the longest in practice, a few dozen lines
	maxLineSkip   = 1 << 16 // bytes of an overlong line we skip before giving up
)

// rawReply is a reply parsed in place: its buffers are reused from one reply
// to the next, so reading a reply allocates nothing until a caller needs the
// Reply (see reply).
type rawReply struct {
	code int
	enh  []byte
	text []byte
	long []byte // holds the kept part of an overlong line
}

// reply materializes the last read reply.
func (rr *rawReply) reply() Reply {
	r := Reply{Code: rr.code, Text: string(rr.text)}
	if len(rr.enh) > 0 {
		r.Enhanced = internEnhanced(rr.enh)
	}
	return r
}

// internEnhanced avoids an allocation for the codes that most replies carry.
// (The compiler does not allocate for a switch on string(b).)
func internEnhanced(b []byte) string {
	switch string(b) {
	case "2.0.0":
		return "2.0.0"
	case "2.1.0":
		return "2.1.0"
	case "2.1.5":
		return "2.1.5"
	case "2.6.0":
		return "2.6.0"
	case "5.1.1":
		return "5.1.1"
	case "4.7.0":
		return "4.7.0"
	case "5.7.1":
		return "5.7.1"
	}
	return string(b)
}

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// readReply reads one reply into rr. Enhanced status codes (RFC 2034) are
// taken from the start of each line's text when ext (ENHANCEDSTATUSCODES
// advertised) is set, or, without it, when the code's class matches the reply
// code: servers send them anyway, also before EHLO.
//
// Errors are I/O errors or ErrProtocol; either leaves the stream out of sync.
func readReply(r *bufio.Reader, rr *rawReply, ext bool) error {
	rr.code = 0
	rr.enh = rr.enh[:0]
	rr.text = rr.text[:0]
	for n := 0; n < maxReplyLines; n++ {
		line, err := readLine(r, rr)
		if err != nil {
			return err
		}
		// RFC 5321 §4.2: a three-digit code, then SP (last line), "-"
		// (more lines follow) or nothing. Only 2xx-5xx exist (§4.2.1).
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
			return protoErr("malformed reply line %q", truncate(line))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		last := true
		var rest []byte
		if len(line) > 3 {
			switch line[3] {
			case ' ':
			case '-':
				last = false
			default:
				return protoErr("malformed reply line %q", truncate(line))
			}
			rest = line[4:]
		}
		if n == 0 {
			rr.code = code
		} else {
			// RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
			if code != rr.code {
				return protoErr("reply code changed from %d to %d within a multi-line reply", rr.code, code)
			}
			rr.text = append(rr.text, '\n')
		}
		if l := enhancedLen(rest); l > 0 && (ext || rest[0] == line[0]) {
			if n == 0 {
				rr.enh = append(rr.enh, rest[:l]...)
			}
			rest = rest[l:]
			if len(rest) > 0 {
				rest = rest[1:] // the space after the code
			}
		}
		rr.text = append(rr.text, rest...)
		if last {
			return nil
		}
	}
	return protoErr("reply longer than %d lines", maxReplyLines)
}

// readLine returns the next line without its CRLF (a bare LF is tolerated).
// The slice is valid until the next read. An overlong line is cut at the
// reader's buffer size: RFC 5321 §4.5.3.1.5 allows 512 octets, but a long
// text is no reason to drop a connection.
func readLine(r *bufio.Reader, rr *rawReply) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		rr.long = append(rr.long[:0], line...)
		skipped := 0
		for err == bufio.ErrBufferFull {
			var more []byte
			more, err = r.ReadSlice('\n')
			skipped += len(more)
			if skipped > maxLineSkip {
				return nil, protoErr("reply line longer than %d bytes", maxLineSkip)
			}
		}
		line = rr.long
		if err == nil {
			line = append(line, '\n')
		}
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, nil
}

// enhancedLen returns the length of an RFC 3463 §2 status code
// (class "." subject "." detail, class 2, 4 or 5, subject and detail of 1-3
// digits) at the start of b, followed by a space or the end; 0 if there is none.
func enhancedLen(b []byte) int {
	if len(b) < 5 || (b[0] != '2' && b[0] != '4' && b[0] != '5') || b[1] != '.' {
		return 0
	}
	i := 2
	for part := 0; part < 2; part++ {
		n := 0
		for i < len(b) && isDigit(b[i]) && n < 4 {
			i++
			n++
		}
		if n == 0 || n > 3 {
			return 0
		}
		if part == 0 {
			if i >= len(b) || b[i] != '.' {
				return 0
			}
			i++
		}
	}
	if i < len(b) && b[i] != ' ' {
		return 0
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

// isProtocol reports whether err is a protocol error (the remote's fault).
func isProtocol(err error) bool { return errors.Is(err, ErrProtocol) }
