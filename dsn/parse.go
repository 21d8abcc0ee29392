package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on what Parse reads. Real reports are a few kilobytes to a few
// hundred; anything far beyond these is hostile or broken.
const (
	MaxSize         = 10 << 20  // whole message
	maxHeaderBytes  = 512 << 10 // one header block
	maxHeaderFields = 1000      // fields in one header block
	maxDepth        = 8         // multipart nesting
	maxParts        = 256       // MIME parts in all
	maxStatusBytes  = 1 << 20   // a delivery-status or feedback-report part
	maxTextBytes    = 256 << 10 // the human-readable text read for heuristics
	maxRecipients   = 1000      // recipients kept from one report
	maxValueLen     = 4096      // one field value in a report part
	maxGroupFields  = 100       // fields kept in one group of a report part
	maxInnerBytes   = 1 << 20   // an attached message kept in case it is the report
)

// IDHeader is the header field carrying Penstock's message id in mail it
// sends, so that a report that returns only headers (ARF, most DSNs) still
// names the message when no VERP address is at hand.
const IDHeader = "X-Penstock-Id"

// ErrTooBig is wrapped by Parse's error for input over MaxSize.
var ErrTooBig = errors.New("dsn: message too big")

// Kind says what a message that arrived at a bounce address is.
type Kind int

const (
	KindUnknown   Kind = iota // none of the below: log it and keep it
	KindDSN                   // a delivery status notification (RFC 3464, or a classic text bounce)
	KindARF                   // a feedback-loop complaint (RFC 5965)
	KindAutoReply             // an out-of-office or other automatic reply: ignore
)

func (k Kind) String() string {
	switch k {
	case KindDSN:
		return "dsn"
	case KindARF:
		return "arf"
	case KindAutoReply:
		return "auto-reply"
	}
	return "unknown"
}

// Header is one header field, unfolded, in its original order.
type Header struct {
	Key, Value string
}

// Report is what Parse understood of one message.
type Report struct {
	Kind       Kind
	Recipients []RecipientStatus // KindDSN: one per recipient reported on
	Feedback   *Feedback         // KindARF

	// OriginalHeaders are the headers of the returned message (from a
	// message/rfc822 or text/rfc822-headers part, or the copy below a text
	// bounce), where Message-ID and IDHeader can be found. Nil when the
	// report returned none.
	OriginalHeaders []Header

	Reporter   string // Reporting-MTA, without its "dns;" type
	EnvelopeID string // Original-Envelope-Id (RFC 3464 §2.2.1), if the reporter kept our ENVID
	From       string // the report's From field, decoded, for logs
	Subject    string // the report's Subject field, decoded, for logs

	complainants []string // KindARF: see FeedbackRecipients

	textBody []byte   // a text bounce's explanation, for fallbackToReturnedTo
	skip     []string // addresses that are not recipients, ditto
}

// FeedbackRecipients returns the addresses a complaint is about: every
// Original-Rcpt-To (RFC 5965 §3.2 allows one per recipient), or, when the
// report has none, the addresses in the To and Cc fields of the returned
// message (many feedback loops leave the optional field out but return the
// message, whose To names the complainant). Feedback.OriginalRcptTo is the
// first of them. Nil for other kinds.
func (r *Report) FeedbackRecipients() []string { return r.complainants }

// OriginalHeader returns the first value of the returned message's header
// field key (case-insensitive), or "".
func (r *Report) OriginalHeader(key string) string {
	for _, h := range r.OriginalHeaders {
		if strings.EqualFold(h.Key, key) {
			return h.Value
		}
	}
	return ""
}

// RecipientStatus is one per-recipient group of a DSN (RFC 3464 §2.3).
type RecipientStatus struct {
	Final      string // Final-Recipient address, without its "rfc822;" type
	Original   string // Original-Recipient address, if given
	Action     string // failed | delayed | delivered | relayed | expanded (lowercase)
	Status     string // RFC 3463 code such as "5.1.1"; derived from the diagnostic or action when absent
	Diagnostic string // Diagnostic-Code as given, e.g. "smtp; 550 5.1.1 user unknown"; see DiagnosticText
	Code       int    // SMTP reply code from the diagnostic, 0 if none
	RemoteMTA  string // Remote-MTA, without its "dns;" type
}

// TextDiagnosticType is the diagnostic type (RFC 3464 §2.3.6) of a
// Diagnostic that Parse read from a human-readable text without a reply
// code in it; with a code, the type is "smtp".
const TextDiagnosticType = "X-Text"

// DiagnosticText returns the diagnostic without its type: the reply or the
// text to classify. Only a leading token followed by ";" is a type, so a
// diagnostic that has none keeps its own semicolons.
func (rs *RecipientStatus) DiagnosticText() string {
	return stripType(rs.Diagnostic)
}

// Feedback is the machine-readable part of an ARF report (RFC 5965 §3.1).
type Feedback struct {
	Type             string // Feedback-Type, lowercase: abuse, fraud, virus, other, not-spam, auth-failure
	UserAgent        string
	Version          string
	OriginalRcptTo   string // first Original-Rcpt-To, without angle brackets; see Recipients
	OriginalMailFrom string // Original-Mail-From, without angle brackets
	ArrivalDate      time.Time
	SourceIP         string
	ReportedDomain   string // first Reported-Domain
}

// Parse reads one message that arrived at a bounce address. An error means
// the message is malformed or over a limit; the caller should log it and
// keep the message. A nil error comes with a Report, possibly KindUnknown.
// Parse never panics and never modifies msg.
func Parse(msg []byte) (rep *Report, err error) {
	return parse(msg, 0)
}

// parse is Parse for a message at depth levels of attachment.
func parse(msg []byte, depth int) (rep *Report, err error) {
	if len(msg) == 0 {
		return nil, errors.New("dsn: empty message")
	}
	if len(msg) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooBig, len(msg), MaxSize)
	}
	msg = normalize(msg)
	w := &walker{}
	var h *message.Header
	var strictErr error
	e, err := message.ReadWithOptions(bytes.NewReader(msg), &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes})
	if e != nil {
		if n := e.Header.Len(); n > maxHeaderFields {
			return nil, fmt.Errorf("dsn: message has %d header fields, limit %d", n, maxHeaderFields)
		}
		h = &e.Header
		if walkErr := w.walk(e, 0); walkErr != nil && !w.complete {
			strictErr = walkErr
		}
	} else {
		strictErr = fmt.Errorf("dsn: reading the message header: %w", err)
	}
	if strictErr != nil {
		// Damage before a report part was read whole (a truncated
		// multipart, a boundary parameter folded without indentation, a
		// header line that is not a field): read the message again
		// without trusting its structure. Damage after the report part
		// is the usual truncated returned copy and needs nothing.
		lh, body := lenientHeader(msg)
		if lh.Len() == 0 {
			return nil, strictErr
		}
		if len(msg)-len(body) > maxHeaderBytes {
			return nil, fmt.Errorf("dsn: reading the message header: longer than %d bytes", maxHeaderBytes)
		}
		lw := &walker{}
		if err := lw.lenient(msg, 0); err != nil {
			return nil, err
		}
		if lw.status == nil && lw.feedback == nil && lw.text == nil && lw.html == nil {
			return nil, strictErr
		}
		w = lw
		if h == nil {
			h = &lh
		}
	}
	if h.Len() == 0 {
		return nil, errors.New("dsn: message has no header fields")
	}
	if w.text == nil && w.html != nil {
		w.text = htmlText(w.html)
	}
	w.text = unquote(w.text)
	if w.status == nil && w.feedback == nil && w.text != nil {
		// A status part that the MIME structure hid: a boundary line the
		// reader did not see (indented, or a top-level header without
		// Content-Type) leaves it inside the text.
		w.status = embeddedStatus(w.text)
	}
	rep = &Report{
		From:    decodeWords(h.Get("From")),
		Subject: decodeWords(h.Get("Subject")),
	}
	if w.returned != nil {
		rep.OriginalHeaders = w.returned
	}

	switch {
	case w.feedback != nil && (w.reportType == "feedback-report" || w.status == nil):
		rep.Kind = KindARF
		if err := rep.parseFeedback(w.feedback); err != nil {
			return nil, err
		}
	case w.status != nil:
		rep.Kind = KindDSN
		if err := rep.parseStatus(w.status); err != nil {
			// A status part without a usable recipient group: the text
			// part, read as a person reads it, may still name one.
			rep.Kind, rep.Recipients = KindUnknown, nil
			rep.classifyText(h, w.text, true, w.haveRet)
			rep.fallbackToReturnedTo()
			if rep.Kind != KindDSN {
				return nil, err
			}
		} else if w.text != nil {
			rep.fillFromText(w.text)
		}
	case w.reportType == "disposition-notification" || w.mdn:
		// RFC 8098 read receipts are automatic answers, not bounces.
		rep.Kind = KindAutoReply
	default:
		if rep.sesNotification(w.text) {
			break
		}
		rep.classifyText(h, w.text, false, w.haveRet)
		if rep.Kind == KindUnknown && w.inner != nil && depth < 1 {
			// A report forwarded as an attachment (a relay or a
			// mailbox that wraps the bounce it got): read the inner one.
			if in, err := parse(w.inner, depth+1); err == nil && (in.Kind == KindDSN || in.Kind == KindARF) {
				in.From, in.Subject = rep.From, rep.Subject
				return in, nil
			}
		}
		rep.fallbackToReturnedTo()
	}
	rep.textBody, rep.skip = nil, nil // working state, not part of the result
	return rep, nil
}

// normalize prepares a message for parsing: it drops a leading mbox "From "
// line (an artefact of storage, never sent over SMTP) and turns lone CRs
// (classic Mac mailboxes, or mixed into CRLF text) into LF. CRLF is left
// alone: every reader here accepts it. msg is not modified; a copy is made
// only when needed.
func normalize(msg []byte) []byte {
	for bytes.HasPrefix(msg, []byte("From ")) {
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			break
		}
		msg = msg[i+1:]
	}
	lone := false
	for i := bytes.IndexByte(msg, '\r'); i >= 0 && i < len(msg); {
		if i+1 == len(msg) || msg[i+1] != '\n' {
			lone = true
			break
		}
		j := bytes.IndexByte(msg[i+1:], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if !lone {
		return msg
	}
	// Some line ends are a lone CR (classic Mac files, or a report that
	// mixes them into CRLF text): make them LF.
	out := make([]byte, len(msg))
	for i, c := range msg {
		if c == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
			c = '\n'
		}
		out[i] = c
	}
	return out
}

// walker collects the parts Parse needs from a MIME tree. It never enters
// attached messages: their own parts are the sender's business.
type walker struct {
	parts      int
	reportType string // report-type of the first multipart/report
	status     []byte // first message/delivery-status body
	feedback   []byte // first message/feedback-report body
	mdn        bool   // saw a message/disposition-notification
	text       []byte // first text/plain body, at most maxTextBytes
	html       []byte // first text/html body as text, for when there is no text/plain
	returned   []Header
	inner      []byte // the first attached message, at most maxInnerBytes
	haveRet    bool
	complete   bool // a status or feedback part was read whole
}

func (w *walker) walk(e *message.Entity, depth int) error {
	t, params, err := e.Header.ContentType()
	if err != nil {
		// Unparsable parameters: keep the media type, lose the params.
		t, _, _ = strings.Cut(e.Header.Get("Content-Type"), ";")
		t = strings.ToLower(strings.TrimSpace(t))
		params = nil
	}
	if t == "" {
		t = "text/plain" // RFC 2045 §5.2
	}
	switch {
	case strings.HasPrefix(t, "multipart/"):
		if depth >= maxDepth {
			return fmt.Errorf("dsn: MIME nested deeper than %d levels", maxDepth)
		}
		if t == "multipart/report" && w.reportType == "" {
			w.reportType = strings.ToLower(params["report-type"])
		}
		if params["boundary"] == "" {
			return fmt.Errorf("dsn: %s without a boundary", t)
		}
		mr := e.MultipartReader()
		if mr == nil {
			return fmt.Errorf("dsn: %s cannot be read as multipart", t)
		}
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return nil
			}
			if p == nil {
				return fmt.Errorf("dsn: reading part %d of %s: %w", w.parts+1, t, err)
			}
			// An unknown charset or transfer encoding still yields a
			// readable part: the raw bytes are good enough here.
			w.parts++
			if w.parts > maxParts {
				return fmt.Errorf("dsn: more than %d MIME parts", maxParts)
			}
			if n := p.Header.Len(); n > maxHeaderFields {
				return fmt.Errorf("dsn: MIME part has %d header fields, limit %d", n, maxHeaderFields)
			}
			if err := w.walk(p, depth+1); err != nil {
				return err
			}
		}
	default:
		return w.leaf(t, isAttachment(&e.Header), e.Body)
	}
}

// leaf takes what Parse needs from one non-multipart part of media type t,
// its body decoded from its transfer encoding.
func (w *walker) leaf(t string, attachment bool, body io.Reader) error {
	switch {
	case t == "message/delivery-status" || t == "message/global-delivery-status":
		if w.status != nil {
			return nil
		}
		b, err := readLimited(body, maxStatusBytes)
		if err != nil {
			return fmt.Errorf("dsn: reading the %s part: %w", t, err)
		}
		w.status, w.complete = b, true
	case t == "message/feedback-report":
		if w.feedback != nil {
			return nil
		}
		b, err := readLimited(body, maxStatusBytes)
		if err != nil {
			return fmt.Errorf("dsn: reading the %s part: %w", t, err)
		}
		w.feedback, w.complete = b, true
	case t == "message/disposition-notification" || t == "message/global-disposition-notification":
		w.mdn = true
	case t == "message/rfc822" || t == "message/global" || t == "text/rfc822-headers" || t == "message/global-headers" ||
		t == "text/rfc822-header": // sic, seen in feedback reports
		if !w.haveRet {
			w.haveRet = true
			b, _ := io.ReadAll(io.LimitReader(body, maxInnerBytes))
			w.returned = readHeaders(bytes.NewReader(b))
			if t == "message/rfc822" {
				w.inner = b
			}
		}
	case t == "text/plain":
		if w.text == nil && !attachment {
			b, _ := io.ReadAll(io.LimitReader(body, maxTextBytes))
			// A read error (truncated part) leaves what was read: for
			// heuristics a prefix is as good as the whole.
			w.text = b
			if w.text == nil {
				w.text = []byte{}
			}
		}
	case t == "text/html":
		// Some gateways send their explanation only as HTML.
		if w.html == nil && !attachment {
			b, _ := io.ReadAll(io.LimitReader(body, maxTextBytes))
			w.html = b // turned into text only if there is no text/plain
		}
	}
	return nil
}

func isAttachment(h *message.Header) bool {
	d, _, err := h.ContentDisposition()
	return err == nil && d == "attachment"
}

// readLimited reads all of r, failing if it is longer than limit.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("longer than %d bytes", limit)
	}
	return b, nil
}

// readHeaders reads the header block at the start of r, keeping what it can
// of a damaged one: returned copies are often cut short.
func readHeaders(r io.Reader) []Header {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderBytes))
	h, _ := textproto.ReadHeader(br)
	out := make([]Header, 0, min(h.Len(), maxHeaderFields))
	for f := h.Fields(); f.Next() && len(out) < maxHeaderFields; {
		out = append(out, Header{Key: f.Key(), Value: f.Value()})
	}
	return out
}

// decodeWords decodes RFC 2047 encoded words; on failure it returns s.
func decodeWords(s string) string {
	// The zero WordDecoder knows UTF-8, US-ASCII and ISO-8859-1, which
	// covers the subjects we look at; others stay encoded.
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return d
}

// parseStatus reads a message/delivery-status body (RFC 3464 §2.1): a
// per-message group, then one group per recipient.
func (r *Report) parseStatus(b []byte) error {
	for _, g := range fieldGroups(b) {
		final, original := g.get("Final-Recipient"), g.get("Original-Recipient")
		// Per-message fields. Tolerate them in any group: some MTAs
		// repeat them, put them last or run them into the first
		// recipient's group.
		if v := g.get("Reporting-MTA"); v != "" && r.Reporter == "" {
			r.Reporter = stripType(v)
		}
		if v := g.get("Original-Envelope-Id"); v != "" && r.EnvelopeID == "" {
			r.EnvelopeID = v
		}
		if final == "" && original == "" {
			continue
		}
		if len(r.Recipients) >= maxRecipients {
			continue
		}
		if badRFC822(final) && (original == "" || badRFC822(original)) {
			continue // "rfc822; @mx.example.org": the text may do better
		}
		rs := RecipientStatus{
			Final:      stripAddr(stripType(final)),
			Original:   stripAddr(stripType(original)),
			Action:     strings.ToLower(firstWord(g.get("Action"))),
			Status:     firstWord(g.get("Status")),
			Diagnostic: g.get("Diagnostic-Code"),
			RemoteMTA:  stripType(g.get("Remote-MTA")),
		}
		if rs.Final == "" || badRFC822(final) {
			rs.Final = rs.Original
		}
		fillStatus(&rs)
		r.Recipients = append(r.Recipients, rs)
	}
	if len(r.Recipients) == 0 {
		return errors.New("dsn: delivery-status part names no recipient (no Final-Recipient field)")
	}
	return nil
}

// fillStatus normalises a recipient's fields and fills what is missing from
// the rest: a status from the diagnostic's enhanced code, its basic code or
// the action, and an action from the status class.
func fillStatus(rs *RecipientStatus) {
	code, enh := diagnosticCodes(rs.Diagnostic)
	rs.Code = code
	if validStatus(rs.Status) && strings.HasSuffix(rs.Status, ".0.0") && enh != "" && enh[0] == rs.Status[0] {
		// "Status: 5.0.0" over "550 5.7.1 ...": the reporter knew no
		// more than the class; the remote server said more.
		rs.Status = enh
	}
	if !validStatus(rs.Status) {
		switch {
		case enh != "":
			rs.Status = enh
		case code != 0:
			rs.Status = fmt.Sprintf("%d.0.0", code/100)
		default:
			switch rs.Action {
			case "failed":
				rs.Status = "5.0.0"
			case "delayed":
				rs.Status = "4.0.0"
			case "delivered", "relayed", "expanded":
				rs.Status = "2.0.0"
			default:
				rs.Status = ""
			}
		}
	}
	if rs.Action == "" && rs.Status != "" {
		switch rs.Status[0] {
		case '5':
			rs.Action = "failed"
		case '4':
			rs.Action = "delayed"
		case '2':
			rs.Action = "delivered"
		}
	}
}

// parseFeedback reads a message/feedback-report body (RFC 5965 §3.1).
func (r *Report) parseFeedback(b []byte) error {
	var g group
	for _, gg := range fieldGroups(b) {
		g = append(g, gg...) // one group by the RFC; be lenient about blank lines
	}
	f := &Feedback{
		Type:             strings.ToLower(firstWord(g.get("Feedback-Type"))),
		UserAgent:        g.get("User-Agent"),
		Version:          g.get("Version"),
		OriginalRcptTo:   stripAddr(stripType(g.get("Original-Rcpt-To"))),
		OriginalMailFrom: stripAddr(g.get("Original-Mail-From")),
		SourceIP:         g.get("Source-IP"),
		ReportedDomain:   g.get("Reported-Domain"),
	}
	if f.Type == "" {
		return errors.New("dsn: feedback report without Feedback-Type (RFC 5965 §3.1)")
	}
	for _, h := range g {
		// Removal-Recipient: the opt-out reports of early ARF drafts.
		if (strings.EqualFold(h.Key, "Original-Rcpt-To") || strings.EqualFold(h.Key, "Removal-Recipient")) && len(r.complainants) < maxRecipients {
			if a := stripAddr(stripType(h.Value)); a != "" {
				r.complainants = append(r.complainants, a)
			}
		}
	}
	if len(r.complainants) == 0 {
		// Many feedback loops leave Original-Rcpt-To out (it is optional,
		// RFC 5965 §3.2) but return the message, whose To names the
		// complainant.
		r.complainants = headerAddrs(r.OriginalHeaders, "To", "Cc")
	}
	if f.OriginalRcptTo == "" && len(r.complainants) > 0 {
		f.OriginalRcptTo = r.complainants[0]
	}
	date := g.get("Arrival-Date")
	if date == "" {
		date = g.get("Received-Date") // the draft's name, still seen
	}
	if date != "" {
		if t, err := mail.ParseDate(date); err == nil {
			f.ArrivalDate = t
		}
	}
	if v := g.get("Reporting-MTA"); v != "" {
		r.Reporter = stripType(v)
	}
	if v := g.get("Original-Envelope-Id"); v != "" {
		r.EnvelopeID = v
	}
	r.Feedback = f
	return nil
}

// headerAddrs returns the addresses in the fields keys of h, in order.
func headerAddrs(h []Header, keys ...string) []string {
	var out []string
	for _, f := range h {
		for _, k := range keys {
			if !strings.EqualFold(f.Key, k) {
				continue
			}
			list, err := mail.ParseAddressList(decodeWords(f.Value))
			if err != nil {
				// A damaged or undisclosed list: take what looks like addresses.
				out = append(out, addrRe.FindAllString(f.Value, maxRecipients)...)
				continue
			}
			for _, a := range list {
				if len(out) < maxRecipients {
					out = append(out, a.Address)
				}
			}
		}
	}
	return out
}

// badRFC822 reports whether a typed address field (RFC 3464 §2.3.2) is of
// type rfc822 (or untyped) but no local@domain. Other types (x400, utf-8)
// are taken as they are.
func badRFC822(v string) bool {
	if t, _, ok := strings.Cut(v, ";"); ok && !strings.EqualFold(strings.TrimSpace(t), "rfc822") && isToken(strings.TrimSpace(t)) {
		return false
	}
	a := stripAddr(stripType(v))
	i := strings.LastIndexByte(a, '@')
	return i <= 0 || i == len(a)-1
}

var statusStartRe = regexp.MustCompile(`(?im)^(Reporting-MTA|Final-Recipient|Original-Recipient)[ \t]*:`)

// embeddedStatus returns the delivery-status fields inside a text, from the
// first Reporting-MTA, Final-Recipient or Original-Recipient line to the
// next boundary-like line, or nil when the text has no Final-Recipient.
func embeddedStatus(text []byte) []byte {
	loc := statusStartRe.FindIndex(text)
	if loc == nil {
		return nil
	}
	b := text[loc[0]:]
	if i := bytes.Index(b, []byte("\n--")); i >= 0 {
		b = b[:i]
	}
	if i := bytes.Index(b, []byte("\n --")); i >= 0 {
		b = b[:i]
	}
	if !bytes.Contains(bytes.ToLower(b), []byte("final-recipient")) {
		return nil
	}
	return b
}

// unquote removes one level of "> " quoting from a text that is mostly
// quoted: a bounce that a person forwarded inline. Other texts are returned
// as they are.
func unquote(text []byte) []byte {
	if bytes.Count(text, []byte("\n>")) < 5 {
		return text
	}
	lines := bytes.Split(text, []byte("\n"))
	quoted, nonEmpty := 0, 0
	for _, l := range lines {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		nonEmpty++
		if l[0] == '>' {
			quoted++
		}
	}
	if quoted*2 < nonEmpty {
		return text
	}
	out := make([]byte, 0, len(text))
	for i, l := range lines {
		if len(l) > 0 && l[0] == '>' {
			l = l[1:]
			if len(l) > 0 && l[0] == ' ' {
				l = l[1:]
			}
		}
		if i > 0 {
			out = append(out, '\n')
		}
		out = append(out, l...)
	}
	return out
}
