package campaign

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Meta is what a render knows about the one recipient beyond its variables.
type Meta struct {
	DeliveryID string
	Recipient  string // the envelope recipient; also the To header
	// MessageID is the whole Message-ID, "<id@domain>". The message is
	// rendered again at every attempt, so derive it from stored data (see
	// MessageID) to keep it the same on a retry.
	MessageID string
	Date      time.Time // zero means now
}

// boundary separates the parts of multipart/alternative. A fixed one is safe:
// "=_" cannot occur in quoted-printable output (RFC 2045 §6.7 and the note in
// RFC 2046 §5.1.1), which is the only encoding the parts use. It contains '=',
// so Content-Type quotes it.
const boundary = "=_penstock_alt_1"

const crlf = "\r\n"

// Header lines should stay within 78 octets and must within 998 (RFC 5322
// §2.1.1), both excluding CRLF.
const (
	foldAt  = 78
	maxLine = 998
)

// renderState is one render's working memory, pooled per Compiled so a
// render allocates next to nothing.
type renderState struct {
	vars    map[string]string
	meta    Meta
	msgID   string            // meta.MessageID without angle brackets
	data    map[string]string // template data for fields without a fast path
	urlData map[string]string // the same, percent-encoded, for list_unsubscribe
	hasData bool
	hasURL  bool
	scratch []byte
	enc     []byte // RFC 2047-encoded header text
	check   []byte // Check's output, thrown away
	w       appendWriter
}

// appendWriter lets text/template execute straight into a byte slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (c *Compiled) state() *renderState {
	if st, ok := c.pool.Get().(*renderState); ok {
		return st
	}
	return &renderState{scratch: make([]byte, 0, 4096)}
}

func (c *Compiled) release(st *renderState) {
	if cap(st.scratch) > 1<<20 || cap(st.enc) > 1<<20 || cap(st.check) > 1<<20 {
		return // an outsized message; let its memory go
	}
	st.vars, st.meta, st.msgID = nil, Meta{}, ""
	clear(st.data)
	clear(st.urlData)
	st.hasData, st.hasURL = false, false
	st.w.b = nil
	c.pool.Put(st)
}

func (st *renderState) set(vars map[string]string, meta Meta) {
	st.vars, st.meta = vars, meta
	st.msgID = strings.TrimSuffix(strings.TrimPrefix(meta.MessageID, "<"), ">")
	st.hasData, st.hasURL = false, false
}

func (st *renderState) value(s *seg) string {
	switch s.ref {
	case refRecipient:
		return st.meta.Recipient
	case refDeliveryID:
		return st.meta.DeliveryID
	case refMessageID:
		return st.msgID
	}
	return st.vars[s.lit]
}

// templateData is the map a field without a fast path executes with:
// the recipient's variables, then the built-ins over them.
func (st *renderState) templateData(kind fieldKind) map[string]string {
	if kind == kindURL {
		if !st.hasURL {
			if st.urlData == nil {
				st.urlData = make(map[string]string, len(st.vars)+3)
			}
			for k, v := range st.vars {
				st.urlData[k] = string(appendPercent(nil, v))
			}
			st.urlData[VarRecipient] = string(appendPercent(nil, st.meta.Recipient))
			st.urlData[VarDeliveryID] = string(appendPercent(nil, st.meta.DeliveryID))
			st.urlData[VarMessageID] = string(appendPercent(nil, st.msgID))
			st.hasURL = true
		}
		return st.urlData
	}
	if !st.hasData {
		if st.data == nil {
			st.data = make(map[string]string, len(st.vars)+3)
		}
		for k, v := range st.vars {
			st.data[k] = v
		}
		st.data[VarRecipient] = st.meta.Recipient
		st.data[VarDeliveryID] = st.meta.DeliveryID
		st.data[VarMessageID] = st.msgID
		st.hasData = true
	}
	return st.data
}

// render appends the field's output to dst.
func (f *field) render(dst []byte, st *renderState) ([]byte, error) {
	if !f.fast {
		st.w.b = dst
		var err error
		if f.ht != nil {
			err = f.ht.Execute(&st.w, st.templateData(f.kind))
		} else {
			err = f.tt.Execute(&st.w, st.templateData(f.kind))
		}
		dst, st.w.b = st.w.b, nil
		if err != nil {
			return dst, fmt.Errorf("%s: %w", f.name, err)
		}
		return dst, nil
	}
	for i := range f.segs {
		s := &f.segs[i]
		if s.ref == refLiteral {
			dst = append(dst, s.lit...)
			continue
		}
		v := st.value(s)
		switch {
		case f.kind == kindURL:
			dst = appendPercent(dst, v)
		case s.esc == nil:
			dst = append(dst, v...)
		default:
			if s.filter {
				v = urlFilter(v)
			}
			dst = s.esc(dst, v)
		}
	}
	return dst, nil
}

// Render appends the message for one recipient to w. On error w is left as
// it was. Safe for concurrent use.
func (c *Compiled) Render(w *bytes.Buffer, vars map[string]string, meta Meta) error {
	b, err := c.AppendRender(w.AvailableBuffer(), vars, meta)
	if err != nil {
		return err
	}
	w.Write(b) // b usually aliases w's free space: no second copy
	return nil
}

// AppendRender appends the message for one recipient to dst and returns the
// extended slice; on error it returns dst unchanged.
func (c *Compiled) AppendRender(dst []byte, vars map[string]string, meta Meta) ([]byte, error) {
	if err := checkMeta(meta); err != nil {
		return dst, err
	}
	st := c.state()
	defer c.release(st)
	return c.appendMessage(dst, st, vars, meta)
}

// Check reports whether the message for one recipient can be built with
// these variables, without building all of it: it renders the header
// fields, where a value can make an address that does not parse or a word
// too long for a line, and the body parts only when one of them runs
// through the template package (whose functions can fail on a value); the
// fast path of a part cannot fail. The error is the one Render would give.
// Safe for concurrent use.
func (c *Compiled) Check(vars map[string]string, meta Meta) error {
	if err := checkMeta(meta); err != nil {
		return err
	}
	if !c.checkAll {
		// Only a word too long for a line can fail here: skip the render
		// when no field can make one with these values.
		longest := max(len(meta.Recipient), len(meta.MessageID), len(meta.DeliveryID))
		for _, v := range vars {
			longest = max(longest, len(v))
		}
		fits := true
		for _, b := range c.bounds {
			fits = fits && b.name+b.lit+b.refs*b.factor*longest <= maxLine
		}
		if fits {
			return nil
		}
	}
	st := c.state()
	defer c.release(st)
	var err error
	st.check, err = c.appendHeaders(st.check[:0], st, vars, meta)
	if err == nil && c.body == nil && (c.text != nil && !c.text.fast || c.html != nil && !c.html.fast) {
		st.check, err = c.appendBody(st.check[:0], st)
	}
	return err
}

func checkMeta(m Meta) error {
	if m.Recipient == "" {
		return errors.New("campaign: render: no recipient")
	}
	for i := 0; i < len(m.Recipient); i++ {
		if b := m.Recipient[i]; b < 0x20 || b == 0x7f {
			return fmt.Errorf("campaign: render: recipient %q contains a control character", m.Recipient)
		}
	}
	// RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">", no white space.
	id := m.MessageID
	if len(id) < 5 || id[0] != '<' || id[len(id)-1] != '>' || !strings.Contains(id, "@") ||
		strings.ContainsAny(id[1:len(id)-1], "<> \t\r\n") {
		return fmt.Errorf("campaign: render: Message-ID %q: want \"<id@domain>\"", id)
	}
	return nil
}

func (c *Compiled) appendMessage(dst []byte, st *renderState, vars map[string]string, meta Meta) ([]byte, error) {
	start := len(dst)
	dst, err := c.appendHeaders(dst, st, vars, meta)
	if err == nil {
		if c.body != nil {
			dst = append(dst, c.body...)
		} else {
			dst, err = c.appendBody(dst, st)
		}
	}
	if err != nil {
		return dst[:start], err
	}
	return dst, nil
}

func (c *Compiled) appendHeaders(dst []byte, st *renderState, vars map[string]string, meta Meta) ([]byte, error) {
	st.set(vars, meta)
	var err error
	if dst, err = c.appendAddr(dst, "From", &c.from, st); err != nil {
		return dst, err
	}
	if dst, err = appendHeader(dst, "To", meta.Recipient); err != nil {
		return dst, err
	}
	if dst, err = c.appendText(dst, "Subject", c.subject, st, false); err != nil {
		return dst, err
	}
	date := meta.Date
	if date.IsZero() {
		date = time.Now()
	}
	dst = append(dst, "Date: "...)
	dst = date.AppendFormat(dst, time.RFC1123Z) // RFC 5322 §3.3 date-time
	dst = append(dst, crlf+"Message-ID: "...)
	dst = append(dst, meta.MessageID...)
	dst = append(dst, crlf+"MIME-Version: 1.0"+crlf...)
	if c.unsub != nil {
		sc := append(st.scratch[:0], '<')
		if sc, err = c.unsub.render(sc, st); err != nil {
			return dst, err
		}
		st.scratch = sc
		// Values are percent-encoded; this guards what a template construct
		// without a fast path could still print.
		for _, b := range sc[1:] {
			if b <= ' ' || b == '<' || b == '>' || b >= 0x7f {
				return dst, fmt.Errorf("list_unsubscribe: rendered URL %q has white space, a control character, non-ASCII or angle bracket", sc[1:])
			}
		}
		sc = append(sc, '>')
		st.scratch = sc
		if dst, err = appendHeader(dst, "List-Unsubscribe", sc); err != nil {
			return dst, err
		}
		// RFC 8058 §3.1: a POST of this body to the URL unsubscribes.
		dst = append(dst, "List-Unsubscribe-Post: List-Unsubscribe=One-Click"+crlf...)
	}
	if c.feedback != nil {
		if dst, err = c.appendText(dst, "Feedback-ID", c.feedback, st, true); err != nil {
			return dst, err
		}
	}
	for i := range c.headers {
		h := &c.headers[i]
		if h.addr != nil {
			dst, err = c.appendAddr(dst, h.name, h.addr, st)
		} else {
			dst, err = c.appendText(dst, h.name, h.val, st, true)
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func (c *Compiled) appendBody(dst []byte, st *renderState) ([]byte, error) {
	var err error
	switch {
	case c.text != nil && c.html != nil:
		dst = append(dst, "Content-Type: multipart/alternative; boundary=\""+boundary+"\""+crlf+crlf...)
		dst = append(dst, "--"+boundary+crlf...)
		if dst, err = c.appendPart(dst, st, c.text, "text/plain"); err != nil {
			return dst, err
		}
		// The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1).
		dst = append(dst, crlf+"--"+boundary+crlf...)
		if dst, err = c.appendPart(dst, st, c.html, "text/html"); err != nil {
			return dst, err
		}
		dst = append(dst, crlf+"--"+boundary+"--"+crlf...)
	case c.text != nil:
		if dst, err = c.appendPart(dst, st, c.text, "text/plain"); err != nil {
			return dst, err
		}
		dst = endLine(dst)
	default:
		if dst, err = c.appendPart(dst, st, c.html, "text/html"); err != nil {
			return dst, err
		}
		dst = endLine(dst)
	}
	return dst, nil
}

// endLine makes the message end with CRLF, as SMTP DATA wants (RFC 5321
// §4.1.1.4).
func endLine(b []byte) []byte {
	if len(b) < 2 || b[len(b)-2] != '\r' || b[len(b)-1] != '\n' {
		b = append(b, crlf...)
	}
	return b
}

// appendPart writes a part's headers, an empty line and its body as
// quoted-printable: any 8-bit text and any line length then pass 7-bit relays
// unchanged.
func (c *Compiled) appendPart(dst []byte, st *renderState, f *field, ctype string) ([]byte, error) {
	sc, err := f.render(st.scratch[:0], st)
	st.scratch = sc
	if err != nil {
		return dst, err
	}
	dst = append(dst, "Content-Type: "...)
	dst = append(dst, ctype...)
	dst = append(dst, "; charset=utf-8"+crlf+"Content-Transfer-Encoding: quoted-printable"+crlf+crlf...)
	return appendQP(dst, sc), nil
}

// appendText writes an unstructured header field (RFC 5322 §3.2.5): control
// characters a variable brought in become spaces, and text that is not
// ASCII is RFC 2047-encoded. With omitEmpty an empty value drops the field.
func (c *Compiled) appendText(dst []byte, name string, f *field, st *renderState, omitEmpty bool) ([]byte, error) {
	sc, err := f.render(st.scratch[:0], st)
	st.scratch = sc
	if err != nil {
		return dst, err
	}
	v, ascii := sanitizeHeader(sc)
	if len(v) == 0 && omitEmpty {
		return dst, nil
	}
	if !ascii {
		st.enc = appendEncodedWords(st.enc[:0], v)
		return appendHeader(dst, name, st.enc)
	}
	return appendHeader(dst, name, v)
}

// appendAddr writes a mailbox or mailbox-list field.
func (c *Compiled) appendAddr(dst []byte, name string, a *addrField, st *renderState) ([]byte, error) {
	if a.fixed != "" {
		return appendHeader(dst, name, a.fixed)
	}
	f := a.f
	if a.name != nil {
		f = a.name
	}
	sc, err := f.render(st.scratch[:0], st)
	st.scratch = sc
	if err != nil {
		return dst, err
	}
	v, _ := sanitizeHeader(sc)
	if a.name != nil {
		dn := string(v)
		if len(dn) >= 2 && dn[0] == '"' && dn[len(dn)-1] == '"' {
			dn = strings.NewReplacer(`\\`, `\`, `\"`, `"`).Replace(dn[1 : len(dn)-1])
		}
		if dn == "" {
			return appendHeader(dst, name, a.spec)
		}
		// Address.String quotes the name or RFC 2047-encodes it as needed.
		return appendHeader(dst, name, (&mail.Address{Name: dn, Address: a.spec}).String())
	}
	s, err := formatAddr(f.name, string(v), a.isList)
	if err != nil {
		return dst, err
	}
	return appendHeader(dst, name, s)
}

// sanitizeHeader turns control characters (CR and LF above all: they would
// start a new header) into spaces in place, trims white space and reports
// whether the result is plain ASCII.
func sanitizeHeader(b []byte) (v []byte, ascii bool) {
	ascii = true
	for i, c := range b {
		switch {
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			b[i] = ' '
		case c >= 0x80:
			ascii = false
		}
	}
	b = bytes.TrimLeft(b, " \t")
	b = bytes.TrimRight(b, " \t")
	if !ascii && !utf8.Valid(b) {
		// RFC 2047 words declare utf-8: make that true.
		b = bytes.ToValidUTF8(b, []byte("\uFFFD"))
	}
	return b, ascii
}

// appendEncodedWords appends s as RFC 2047 encoded-words in the Q encoding,
// "=?utf-8?q?...?=", separated by spaces so the field can fold between them.
// Each word is at most 75 characters and holds whole characters (RFC 2047
// §2, §5). Only letters, digits and "!*+-/" stay as they are, the set RFC
// 2047 §5(3) allows even in a phrase, so the words are safe in any field; a
// space becomes '_' (§4.2).
func appendEncodedWords(dst, s []byte) []byte {
	const (
		open     = "=?utf-8?q?"
		close    = "?="
		maxWord  = 75
		upperHex = "0123456789ABCDEF"
	)
	qlen := func(c byte) int {
		if c == ' ' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!*+-/", c) >= 0 {
			return 1
		}
		return 3
	}
	n := 0 // encoded characters in the current word
	dst = append(dst, open...)
	for len(s) > 0 {
		_, size := utf8.DecodeRune(s)
		w := 0
		for _, c := range s[:size] {
			w += qlen(c)
		}
		if n > 0 && len(open)+n+w+len(close) > maxWord {
			dst = append(dst, close+" "+open...)
			n = 0
		}
		for _, c := range s[:size] {
			switch {
			case c == ' ':
				dst = append(dst, '_')
			case qlen(c) == 1:
				dst = append(dst, c)
			default:
				dst = append(dst, '=', upperHex[c>>4], upperHex[c&15])
			}
		}
		n += w
		s = s[size:]
	}
	return append(dst, close...)
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// leadingChunk is the length of v's first word.
func leadingChunk[T string | []byte](v T) int {
	j := 0
	for j < len(v) && !isWSP(v[j]) {
		j++
	}
	return j
}

// appendHeader appends "name: value" CRLF, folding before white space (RFC
// 5322 §2.2.3) so lines stay within 78 octets where the value allows, and
// refusing a value that cannot fit in 998-octet lines (§2.1.1). v must not
// begin or end with white space.
func appendHeader[T string | []byte](dst []byte, name string, v T) ([]byte, error) {
	dst = append(dst, name...)
	dst = append(dst, ':')
	if len(v) == 0 {
		return append(dst, crlf...), nil
	}
	dst = append(dst, ' ')
	n := len(name) + 2 // octets on the current line
	if n+len(v) <= foldAt {
		dst = append(dst, v...)
		return append(dst, crlf...), nil
	}
	first := true
	if c := leadingChunk(v); len(name)+2+c > foldAt && 1+c <= foldAt {
		// The first word fits a line of its own but not after the name:
		// fold right after the colon (FWS may start any unstructured value).
		dst = append(dst[:len(dst)-1], crlf+" "...)
		n = 1
	}
	for len(v) > 0 {
		j := 0
		for j < len(v) && isWSP(v[j]) {
			j++
		}
		for j < len(v) && !isWSP(v[j]) {
			j++
		}
		chunk := v[:j]
		v = v[j:]
		if !first && n+len(chunk) > foldAt {
			dst = append(dst, crlf...) // the chunk's leading white space starts the continuation
			n = 0
		}
		first = false
		if n+len(chunk) > maxLine {
			return dst, fmt.Errorf("%s: a word of about %d octets does not fit in a header line (RFC 5322 §2.1.1: at most 998)", name, len(chunk))
		}
		dst = append(dst, chunk...)
		n += len(chunk)
	}
	return append(dst, crlf...), nil
}

// MessageID returns "<deliveryID.index@domain>": a Message-ID derived from
// what the spool stores, so every attempt for one recipient carries the same
// ID (RFC 5322 §3.6.4: one per message). Characters outside RFC 5322 atext in
// deliveryID become '_'.
func MessageID(deliveryID string, index uint64, domain string) string {
	b := make([]byte, 0, len(deliveryID)+len(domain)+24)
	b = append(b, '<')
	for i := 0; i < len(deliveryID); i++ {
		c := deliveryID[i]
		if !isAtext(c) {
			c = '_'
		}
		b = append(b, c)
	}
	if len(deliveryID) > 0 {
		b = append(b, '.')
	}
	b = strconv.AppendUint(b, index, 10)
	b = append(b, '@')
	b = append(b, domain...)
	b = append(b, '>')
	return string(b)
}

// isAtext reports RFC 5322 §3.2.3 atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
