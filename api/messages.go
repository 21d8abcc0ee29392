package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/tenants"
)

// MessageRequest is the body of POST /api/v1/messages: either Raw (an RFC
// 5322 message) or the parts from which Penstock builds correct MIME.
type MessageRequest struct {
	// From is the sender, with or without a display name ("Ann
	// <ann@example.com>"): the From header gets it whole, the envelope
	// (MAIL FROM) the bare address. After validation From holds that bare
	// address; the header form is kept for build.
	From    string            `json:"from"`
	To      []string          `json:"to"`
	Subject string            `json:"subject,omitempty"`
	Text    string            `json:"text,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Raw     string            `json:"raw,omitempty"`
	// Tenant is the customer the message is sent for (its quota and fair
	// share); it wins over an X-Penstock-Tenant header, which is removed
	// before the message is stored either way.
	Tenant string `json:"tenant,omitempty"`
	Body   []byte `json:"-"` // the message as built

	fromHeader string // From as the header shows it (set by validate)
}

func (h *handler) messages(w http.ResponseWriter, r *http.Request) {
	var req MessageRequest
	if !decode(w, r, &req, max(h.maxMessage*2, maxBody)) {
		return
	}
	if f, msg := req.validate(); f != "" {
		writeErr(w, http.StatusBadRequest, msg, f)
		return
	}
	body, err := req.build(time.Now())
	if err != nil {
		writeErr(w, http.StatusBadRequest, err.Error(), "raw")
		return
	}
	if h.maxMessage > 0 && int64(len(body)) > h.maxMessage {
		writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("message of %d bytes exceeds max_message_size %d", len(body), h.maxMessage), "raw")
		return
	}
	req.Body = body
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	id, err := h.d.Node.InjectMessage(ctx, req)
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "not stored, try again: "+err.Error(), "")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "recipients": len(req.To)})
}

func (req *MessageRequest) validate() (field, msg string) {
	if req.From != "" {
		// RFC 5322 §3.4 mailbox, comments and display name allowed; the
		// envelope takes only the addr-spec (RFC 5321 §4.1.2), so a name
		// or a comment can never reach MAIL FROM or the Message-ID.
		a, err := mail.ParseAddress(req.From)
		if err != nil || !strings.Contains(a.Address, "@") {
			return "from", fmt.Sprintf("from: not an address: %q", req.From)
		}
		req.fromHeader = formatMailbox(a)
		req.From = a.Address
	}
	if len(req.To) == 0 {
		return "to", "to: at least one recipient is required"
	}
	if err := tenants.Check(req.Tenant); err != nil {
		return "tenant", "tenant: " + err.Error()
	}
	for _, t := range req.To {
		a, err := mail.ParseAddress(t)
		if err != nil || a.Address != t || !strings.Contains(t, "@") {
			return "to", "to: not a plain address: " + t
		}
	}
	if req.Raw == "" && req.Text == "" && req.HTML == "" {
		return "text", "give raw, or text and/or html"
	}
	if req.Raw != "" && (req.Text != "" || req.HTML != "" || req.Subject != "") {
		return "raw", "raw excludes subject, text and html"
	}
	if req.Raw != "" && len(req.Headers) > 0 {
		return "headers", "raw excludes headers: put them in the raw message"
	}
	for k, v := range req.Headers {
		f := "headers." + k
		if err := checkFieldName(k); err != nil {
			return f, f + ": " + err.Error()
		}
		if i := strings.IndexFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }); i >= 0 {
			return f, fmt.Sprintf("%s: control character %q in the value; header values are one line", f, v[i])
		}
		switch lower := strings.ToLower(k); {
		case builtHeader[lower]:
			return f, fmt.Sprintf("%s: set by Penstock from the request (use from, to, subject, text, html)", f)
		case addressHeader[lower]:
			if _, err := mail.ParseAddressList(v); err != nil {
				return f, fmt.Sprintf("%s: not an address list: %q: %v", f, v, err)
			}
		}
	}
	return "", ""
}

// builtHeader are the fields build writes itself: a custom one would
// duplicate them (RFC 5322 §3.6 allows each once). Lower case.
var builtHeader = map[string]bool{
	"from": true, "to": true, "subject": true, "date": true, "message-id": true,
	"mime-version": true, "content-type": true, "content-transfer-encoding": true,
}

// addressHeader are fields holding address lists (RFC 5322 §3.6.2, §3.6.3):
// parsed at acceptance and written per mailbox, never encoded whole.
var addressHeader = map[string]bool{"reply-to": true, "sender": true, "cc": true, "bcc": true}

// checkFieldName applies RFC 5322 §3.6.8: printable US-ASCII but colon.
func checkFieldName(name string) error {
	if name == "" {
		return fmt.Errorf("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("header name %q: only printable ASCII without ':' (RFC 5322 §3.6.8)", name)
		}
	}
	return nil
}

// formatMailbox writes a mailbox for a header: the bare address, or the
// display name (quoted or RFC 2047-encoded as needed) and <address>.
func formatMailbox(a *mail.Address) string {
	if a.Name == "" {
		return a.Address
	}
	return a.String()
}

// formatAddressList rewrites a validated address list per mailbox.
func formatAddressList(v string) string {
	l, err := mail.ParseAddressList(v)
	if err != nil {
		return v // validate refused it already
	}
	out := make([]string, len(l))
	for i, a := range l {
		out[i] = formatMailbox(a)
	}
	return strings.Join(out, ", ")
}

// build returns the message to store, with CRLF line ends.
func (req *MessageRequest) build(now time.Time) ([]byte, error) {
	if req.Raw != "" {
		// Every line end becomes CRLF, a bare CR included, as the SMTP
		// listener does: a bare CR passed on could end a line, or with
		// "\r.\r" the data, at a receiver that takes it as one (RFC 5321
		// §2.3.8 forbids it; SMTP smuggling).
		raw := strings.ReplaceAll(req.Raw, "\r\n", "\n")
		raw = strings.ReplaceAll(strings.ReplaceAll(raw, "\r", "\n"), "\n", "\r\n")
		if _, err := mail.ReadMessage(strings.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("raw: not an RFC 5322 message: %v", err)
		}
		return []byte(raw), nil
	}
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	from := req.fromHeader
	if from == "" {
		from = req.From
	}
	hdr("From", from)
	hdr("To", strings.Join(req.To, ", "))
	if req.Subject != "" {
		hdr("Subject", mime.QEncoding.Encode("utf-8", req.Subject))
	}
	hdr("Date", now.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+randomID()+"@"+domainOf(req.From)+">")
	hdr("MIME-Version", "1.0")
	keys := make([]string, 0, len(req.Headers))
	for k := range req.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if addressHeader[strings.ToLower(k)] {
			hdr(k, formatAddressList(req.Headers[k]))
			continue
		}
		hdr(k, mime.QEncoding.Encode("utf-8", req.Headers[k]))
	}
	part := func(ctype, text string) {
		fmt.Fprintf(&b, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", ctype)
		qp := quotedprintable.NewWriter(&b)
		qp.Write([]byte(strings.ReplaceAll(text, "\r\n", "\n")))
		qp.Close()
		b.WriteString("\r\n")
	}
	switch {
	case req.Text != "" && req.HTML != "":
		boundary := "=_" + randomID()
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary)
		fmt.Fprintf(&b, "--%s\r\n", boundary)
		part("text/plain", req.Text)
		fmt.Fprintf(&b, "--%s\r\n", boundary)
		part("text/html", req.HTML)
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	case req.HTML != "":
		part("text/html", req.HTML)
	default:
		part("text/plain", req.Text)
	}
	// quoted-printable writes bare LF line ends for "\n": make them CRLF.
	out := bytes.ReplaceAll(b.Bytes(), []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(out, []byte("\n"), []byte("\r\n")), nil
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.Trim(addr[i+1:], "> ")
	}
	return "penstock.invalid"
}
