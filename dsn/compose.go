package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNullSender is returned by Compose.Bytes when To is empty or "<>": a
// DSN is never sent to the null reverse-path (RFC 5321 §4.5.5, RFC 3464 §2).
var ErrNullSender = errors.New("dsn: no DSN for the null sender")

// Failed is one recipient a DSN reports on.
type Failed struct {
	Recipient   string
	Status      string    // RFC 3463 code, e.g. "5.1.1"; "": the diagnostic's, else 5.0.0 (4.0.0 when delayed)
	Action      string    // "failed" (default), "delayed", or another RFC 3464 §2.3.3 action
	Diagnostic  string    // e.g. "smtp; 550 5.1.1 user unknown"; "smtp; " is added to a bare reply
	RemoteMTA   string    // the MX host that answered, if any
	LastAttempt time.Time // zero: not reported
}

// Compose describes a DSN to the sender of mail Penstock relayed.
type Compose struct {
	ReportingMTA    string    // our hostname
	From            string    // default "MAILER-DAEMON@" + ReportingMTA
	To              string    // the envelope sender; empty or "<>" is refused
	Arrival         time.Time // when we accepted the message; zero: not reported
	Failed          []Failed
	OriginalHeaders []byte    // the original message's header block; cut at its first blank line
	MessageID       string    // the DSN's own Message-ID; "" makes one up
	Date            time.Time // the DSN's Date; zero means the latest LastAttempt, else now
}

// Limits on what Compose copies, so a hostile reply or header cannot blow
// up the DSN.
const (
	maxDiagLen        = 900      // one Diagnostic-Code value
	maxReturnedHeader = 64 << 10 // the text/rfc822-headers part
	foldAt            = 76       // preferred line length (RFC 5322 §2.1.1: 78)
)

// Bytes returns the DSN as a multipart/report message (RFC 6522, RFC 3464)
// with CRLF line ends, ready for the queue with a null MAIL FROM.
func (c Compose) Bytes() ([]byte, error) {
	to := strings.TrimSpace(c.To)
	if to == "" || to == "<>" {
		return nil, ErrNullSender
	}
	if bad(to) {
		return nil, fmt.Errorf("dsn: envelope sender %.100q contains whitespace or control characters", to)
	}
	mta := strings.TrimSpace(c.ReportingMTA)
	if mta == "" || bad(mta) {
		return nil, fmt.Errorf("dsn: ReportingMTA %q is not a host name", c.ReportingMTA)
	}
	if len(c.Failed) == 0 {
		return nil, errors.New("dsn: a DSN needs at least one recipient")
	}
	fs := make([]Failed, len(c.Failed))
	global := false // RFC 6533: non-ASCII addresses need the global types
	allDelayed, anyDelayed := true, false
	last := time.Time{}
	for i, f := range c.Failed {
		if f.Recipient == "" || bad(f.Recipient) {
			return nil, fmt.Errorf("dsn: recipient %d: address %.100q is empty or contains whitespace or control characters", i, f.Recipient)
		}
		f.Action = strings.ToLower(strings.TrimSpace(f.Action))
		switch f.Action {
		case "":
			f.Action = "failed"
		case "failed", "delayed", "delivered", "relayed", "expanded":
		default:
			return nil, fmt.Errorf("dsn: recipient %s: action %q is not one of failed, delayed, delivered, relayed, expanded (RFC 3464 §2.3.3)", f.Recipient, f.Action)
		}
		if f.Status == "" {
			_, f.Status = diagnosticCodes(f.Diagnostic)
		}
		if f.Status == "" {
			switch f.Action {
			case "failed":
				f.Status = "5.0.0"
			case "delayed":
				f.Status = "4.0.0"
			default:
				f.Status = "2.0.0"
			}
		}
		if !validStatus(f.Status) {
			return nil, fmt.Errorf("dsn: recipient %s: status %q is not an RFC 3463 code like 5.1.1", f.Recipient, f.Status)
		}
		f.Diagnostic = clean(f.Diagnostic, maxDiagLen)
		if f.Diagnostic != "" {
			if t, _, ok := strings.Cut(f.Diagnostic, ";"); !ok || !isToken(strings.TrimSpace(t)) {
				f.Diagnostic = "smtp; " + f.Diagnostic
			}
		}
		f.RemoteMTA = clean(f.RemoteMTA, 255)
		if !isASCII(f.Recipient) || !isASCII(f.Diagnostic) {
			global = true
		}
		if f.Action == "delayed" {
			anyDelayed = true
		} else {
			allDelayed = false
		}
		if f.LastAttempt.After(last) {
			last = f.LastAttempt
		}
		fs[i] = f
	}

	date := c.Date
	if date.IsZero() {
		date = last
	}
	if date.IsZero() {
		date = time.Now()
	}
	from := strings.TrimSpace(c.From)
	if from == "" {
		from = "MAILER-DAEMON@" + mta
	}
	if bad(strings.ReplaceAll(from, " ", "")) {
		return nil, fmt.Errorf("dsn: From %.100q contains control characters", from)
	}
	if !strings.Contains(from, "<") {
		from = "Mail Delivery System <" + from + ">"
	}
	msgID := strings.TrimSpace(c.MessageID)
	if msgID == "" {
		var b [12]byte
		rand.Read(b[:]) // never fails (crypto/rand, Go ≥ 1.24)
		msgID = "<dsn." + hex.EncodeToString(b[:]) + "@" + mta + ">"
	} else if bad(msgID) {
		return nil, fmt.Errorf("dsn: MessageID %.100q contains whitespace or control characters", msgID)
	} else if !strings.HasPrefix(msgID, "<") {
		msgID = "<" + msgID + ">"
	}

	subject := "Undelivered Mail Returned to Sender"
	switch {
	case allDelayed:
		subject = "Delayed Mail (still being retried)"
	case anyDelayed:
		subject = "Delivery Status Notification"
	}

	orig := headerBlock(c.OriginalHeaders)
	origID := ""
	for _, h := range readHeaders(bytes.NewReader(append(orig, '\r', '\n'))) {
		if strings.EqualFold(h.Key, "Message-Id") {
			if v := strings.TrimSpace(h.Value); v != "" && !bad(v) && len(v) < 500 {
				origID = v
			}
			break
		}
	}

	human := humanPart(mta, fs, allDelayed)
	status := statusPart(mta, c.Arrival, fs, global)

	boundary := ""
	for {
		var b [15]byte
		rand.Read(b[:])
		boundary = "=_penstock_" + hex.EncodeToString(b[:])
		// A boundary must not occur in any part (RFC 2046 §5.1.1). With
		// 120 random bits this loop runs once.
		if !bytes.Contains(human, []byte(boundary)) && !bytes.Contains(status, []byte(boundary)) && !bytes.Contains(orig, []byte(boundary)) {
			break
		}
	}

	var w bytes.Buffer
	hdr := func(k, v string) { w.WriteString(k + ": " + v + "\r\n") }
	hdr("From", from)
	hdr("To", addrField(to))
	hdr("Subject", subject)
	hdr("Date", date.Format(time.RFC1123Z))
	hdr("Message-ID", msgID)
	if origID != "" {
		hdr("In-Reply-To", origID)
		hdr("References", origID)
	}
	hdr("Auto-Submitted", "auto-replied") // RFC 3834 §5, RFC 3464 §2 (no loops)
	hdr("MIME-Version", "1.0")
	reportType := "delivery-status"
	statusType := "message/delivery-status"
	if global {
		reportType, statusType = "global-delivery-status", "message/global-delivery-status"
	}
	hdr("Content-Type", "multipart/report; report-type="+reportType+";\r\n\tboundary=\""+boundary+"\"")
	w.WriteString("\r\nThis is a MIME-encapsulated delivery status notification.\r\n")

	part := func(ctype string, body []byte) {
		w.WriteString("\r\n--" + boundary + "\r\n")
		w.WriteString("Content-Type: " + ctype + "\r\n")
		enc := "7bit"
		if !isASCII(string(body)) {
			enc = "8bit"
		}
		w.WriteString("Content-Transfer-Encoding: " + enc + "\r\n\r\n")
		w.Write(body)
	}
	part("text/plain; charset=utf-8", human)
	part(statusType, status)
	if len(orig) > 0 {
		part("text/rfc822-headers", append(orig, '\r', '\n'))
	}
	w.WriteString("\r\n--" + boundary + "--\r\n")
	return w.Bytes(), nil
}

// humanPart is the text a person reads first.
func humanPart(mta string, fs []Failed, delayed bool) []byte {
	var b bytes.Buffer
	b.WriteString("This is the mail system at host " + mta + ".\r\n\r\n")
	if delayed {
		b.WriteString("Your message could not be delivered yet to the recipients\r\n" +
			"below. It stays queued and delivery will be retried; you do not\r\n" +
			"need to resend it.\r\n\r\n")
	} else {
		b.WriteString("Your message could not be delivered to one or more recipients.\r\n" +
			"The reason is given below for each. This is a permanent error\r\n" +
			"unless a recipient is marked as delayed. The headers of your\r\n" +
			"message are attached.\r\n\r\n")
	}
	for _, f := range fs {
		line := "<" + f.Recipient + ">: " + f.Action
		if f.RemoteMTA != "" {
			line += ", host " + f.RemoteMTA
		}
		b.WriteString(line + "\r\n")
		d := f.Diagnostic
		if d == "" {
			d = "status " + f.Status
		}
		b.WriteString(fold("    "+d, "    ") + "\r\n\r\n")
	}
	return b.Bytes()
}

// statusPart is the message/delivery-status body (RFC 3464 §2.2, §2.3).
func statusPart(mta string, arrival time.Time, fs []Failed, global bool) []byte {
	addrType := "rfc822"
	if global {
		addrType = "utf-8" // RFC 6533 §3
	}
	var b bytes.Buffer
	field := func(k, v string) { b.WriteString(fold(k+": "+v, " ") + "\r\n") }
	field("Reporting-MTA", "dns; "+mta)
	if !arrival.IsZero() {
		field("Arrival-Date", arrival.Format(time.RFC1123Z))
	}
	for _, f := range fs {
		b.WriteString("\r\n")
		field("Final-Recipient", addrType+"; "+f.Recipient)
		field("Action", f.Action)
		field("Status", f.Status)
		if f.RemoteMTA != "" {
			field("Remote-MTA", "dns; "+f.RemoteMTA)
		}
		if f.Diagnostic != "" {
			field("Diagnostic-Code", f.Diagnostic)
		}
		if !f.LastAttempt.IsZero() {
			field("Last-Attempt-Date", f.LastAttempt.Format(time.RFC1123Z))
		}
	}
	return b.Bytes()
}

// fold breaks s before spaces so lines stay near foldAt characters. The
// continuation lines begin with the space that was there, plus indent minus
// one character, so unfolding by removing the line breaks (RFC 5322
// §2.2.3) gives s back when indent is a single space.
func fold(s, indent string) string {
	if len(s) <= foldAt {
		return s
	}
	var b strings.Builder
	line := 0
	for i, w := range strings.SplitAfter(s, " ") {
		if i > 0 && line+len(w) > foldAt && line > len(indent) {
			// Move the separating space to the start of the next line.
			str := b.String()
			if strings.HasSuffix(str, " ") {
				b.Reset()
				b.WriteString(str[:len(str)-1])
				b.WriteString("\r\n" + indent)
				line = len(indent)
			}
		}
		b.WriteString(w)
		line += len(w)
	}
	return b.String()
}

// headerBlock returns h up to its first blank line, with CRLF line ends,
// at most maxReturnedHeader bytes cut at a line end, without the final
// line break.
func headerBlock(h []byte) []byte {
	var out bytes.Buffer
	for len(h) > 0 {
		var line []byte
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			line, h = h, nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		// A bare CR inside a line would end it for some readers.
		line = bytes.ReplaceAll(line, []byte{'\r'}, []byte{' '})
		if out.Len()+len(line)+2 > maxReturnedHeader {
			break
		}
		out.Write(line)
		out.WriteString("\r\n")
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\r\n"))
}

// clean makes untrusted text (a remote server's reply) safe for a header
// field: control characters become spaces, runs of spaces collapse, invalid
// UTF-8 is replaced, and it is cut to at most max bytes.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// bad reports whether s is unusable as an address or token in a header:
// whitespace, control characters or invalid UTF-8.
func bad(s string) bool {
	if !utf8.ValidString(s) {
		return true
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addrField formats an envelope address for the To field.
func addrField(a string) string {
	if strings.HasPrefix(a, "<") {
		return a
	}
	return "<" + a + ">"
}
