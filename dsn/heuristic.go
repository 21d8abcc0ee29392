package dsn

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/emersion/go-message"
)

// classifyText decides what a message without a usable report part is: a
// classic text bounce, an automatic reply, or unknown. isReport is true when
// the message is a report whose status part named no recipient: it is a
// bounce whatever its headers say.
//
// A message that returns a copy of the original (message/rfc822 or
// text/rfc822-headers, flagged by returnedCopy) is read as a possible bounce
// even when its From and Subject say nothing: carriers word their notices
// in every language, and automatic replies do not attach what they answer.
func (r *Report) classifyText(h *message.Header, text []byte, isReport, returnedCopy bool) {
	if !isReport && !looksLikeBounce(h, r.From, r.Subject) && !(returnedCopy && !isAutoReply(h, r.Subject) && saysUndelivered(text)) {
		if isAutoReply(h, r.Subject) {
			r.Kind = KindAutoReply
		}
		return
	}
	body, returned := splitReturned(text)
	if r.OriginalHeaders == nil && returned != nil {
		r.OriginalHeaders = returned
	}
	var failed []string
	for _, v := range h.Values("X-Failed-Recipients") { // Exim
		for _, a := range strings.Split(v, ",") {
			if a = stripAddr(a); strings.Contains(a, "@") {
				failed = append(failed, a)
			}
		}
	}
	// Addresses that are not recipients: the reporter's and the notified
	// sender's (a bounce quotes both), and the original sender's.
	var skip []string
	for _, k := range []string{"From", "To", "Reply-To", "Return-Path", "Sender"} {
		skip = append(skip, headerAddrs([]Header{{Key: k, Value: h.Get(k)}}, k)...)
	}
	skip = append(skip, headerAddrs(r.OriginalHeaders, "From", "Return-Path", "Sender", "Reply-To")...)
	r.Recipients = textRecipients(body, failed, skip)
	if len(r.Recipients) > 0 {
		r.Kind = KindDSN
	}
	r.textBody, r.skip = body, skip
}

// fallbackToReturnedTo is the last resort for a text bounce that names no
// address (some carriers only say that "the" address failed): the returned
// message's single recipient is the one.
func (r *Report) fallbackToReturnedTo() {
	if r.Kind != KindUnknown || r.textBody == nil {
		return
	}
	if to := headerAddrs(r.OriginalHeaders, "To"); len(to) == 1 && !isSkipped(to[0], r.skip) {
		if rs, ok := textStatus(to[0], strings.Join(strings.Fields(string(r.textBody)), " "), true); ok {
			r.Recipients = append(r.Recipients, rs)
			r.Kind = KindDSN
		}
	}
}

// fillFromText completes the recipients of a delivery-status part from the
// human-readable part: a recipient whose diagnostic has no reply code often
// has one in the text (Exchange, Amazon SES, Google Workspace).
func (r *Report) fillFromText(text []byte) {
	var addrs []string
	for _, rs := range r.Recipients {
		if rs.Code == 0 && (rs.Action == "failed" || rs.Action == "delayed") {
			addrs = append(addrs, rs.Final)
		}
	}
	if len(addrs) == 0 {
		return
	}
	body, _ := splitReturned(text)
	segs := segments(body, addrs) // one pass for all of them
	for i := range r.Recipients {
		rs := &r.Recipients[i]
		if rs.Code != 0 || rs.Action != "failed" && rs.Action != "delayed" {
			continue
		}
		seg := segs[strings.ToLower(rs.Final)]
		code, enh, at := bestCode(seg)
		if code == 0 || (rs.Status != "" && rs.Status[0] != byte('0'+code/100)) {
			if rs.Diagnostic == "" && seg != "" {
				// No diagnostic at all (Gmail's own reports): the
				// text's words are all there is to classify.
				rs.Diagnostic = TextDiagnosticType + "; " + clip(seg)
			}
			continue
		}
		rs.Code = code
		if rs.Diagnostic == "" || !hasCode(rs.Diagnostic) {
			rs.Diagnostic = "smtp; " + clip(seg[at:])
		}
		if enh != "" && (rs.Status == "" || strings.HasSuffix(rs.Status, ".0.0")) {
			rs.Status = enh
		}
	}
}

// looksLikeBounce reports whether a message without a report part was sent
// by a mail system about a failed delivery.
func looksLikeBounce(h *message.Header, from, subject string) bool {
	if h.Has("X-Failed-Recipients") {
		return true
	}
	f := strings.ToLower(from)
	for _, w := range []string{"mailer-daemon", "postmaster@", "mail delivery subsystem", "mail delivery system"} {
		if strings.Contains(f, w) {
			return true
		}
	}
	s := strings.ToLower(subject)
	for _, w := range []string{
		"undeliver", "undelivered mail", "delivery status notification",
		"mail delivery failed", "delivery failure", "failure notice",
		"returned mail", "could not be delivered", "delivery has failed",
		"nondeliverable", "non-deliverable", "unzustellbar", "nicht zustellbar",
		"non remis", "non distribuable", "mail system error", "delivery failed",
		"error sending your mail", "returned to sender", "delivery notification",
	} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// saysUndelivered reports whether a text says that mail was not delivered,
// in the words of the mail systems that write no bounce subject.
func saysUndelivered(text []byte) bool {
	if len(text) > 8192 {
		text = text[:8192]
	}
	low := bytes.ToLower(text)
	for _, w := range []string{
		"could not be delivered", "couldn't be delivered", "not delivered", "undeliverable",
		"unable to deliver", "delivery failed", "delivery has failed", "failed to deliver",
		"delivery to the following", "permanent error", "returned mail",
	} {
		if bytes.Contains(low, []byte(w)) {
			return true
		}
	}
	return false
}

// isAutoReply recognises automatic replies: RFC 3834 §5 Auto-Submitted,
// the X-Autoreply family that vacation programs add, Precedence:
// auto_reply, and the subjects of common out-of-office replies.
func isAutoReply(h *message.Header, subject string) bool {
	if v := strings.ToLower(firstWord(strings.TrimSuffix(h.Get("Auto-Submitted"), ";"))); v != "" && v != "no" {
		return true
	}
	for _, k := range []string{"X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autoreply-From", "X-Mail-Autoreply", "X-Vacation"} {
		if h.Has(k) {
			return true
		}
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") {
		return true
	}
	if strings.EqualFold(strings.TrimSpace(h.Get("X-Autogenerated")), "reply") {
		return true
	}
	s := strings.ToLower(subject)
	if strings.HasPrefix(s, "auto:") { // Lotus Notes
		return true
	}
	for _, w := range []string{
		"out of office", "out of the office", "out-of-office",
		"automatic reply", "auto reply", "auto-reply", "autoreply", "auto response", "autoresponse",
		"abwesenheitsnotiz", "automatische antwort", "abwesend",
		"réponse automatique", "reponse automatique", "absence du bureau",
		"respuesta automática", "respuesta automatica", "fuera de la oficina",
		"risposta automatica", "fuori sede", "automatisch antwoord", "afwezig",
		"resposta automática", "autosvar", "vacation",
	} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// returnedMarkers introduce the copy of the original message in text
// bounces (Exim, qmail, Sendmail and others); text below them is the
// sender's, not the mail system's.
var returnedMarkers = []string{
	"this is a copy of the message",
	"below this line is a copy of the message",
	"original message follows",
	"copy of the original message",
	"original message headers",
	"undelivered message headers",
	"----- original message -----",
	"--- the header of the original message is following",
}

// splitReturned cuts a text bounce at the line that introduces the returned
// copy and reads the header block below it.
func splitReturned(text []byte) (body []byte, returned []Header) {
	// ASCII-only lowering keeps byte offsets: bytes.ToLower would turn
	// invalid UTF-8 into longer replacement characters.
	lower := make([]byte, len(text))
	for i, c := range text {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	cut := -1
	for _, m := range returnedMarkers {
		if i := bytes.Index(lower, []byte(m)); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut < 0 {
		return text, nil
	}
	start := bytes.LastIndexByte(text[:cut], '\n') + 1
	body, rest := text[:start], text[cut:]
	if i := bytes.IndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	} else {
		rest = nil
	}
	rest = bytes.TrimLeft(rest, "\r\n \t")
	if fieldLineRe.Match(rest) {
		returned = readHeaders(bytes.NewReader(rest))
	}
	return body, returned
}

var (
	fieldLineRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*:`)
	hostRe      = regexp.MustCompile(`\bhost ([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)[ \[]`)
	// lineAddrRe matches a line that starts with an address, as text
	// bounces list their recipients: "<a@b>:", "  a@b", "\"a@b\":",
	// "<a@b>: host mx said: 550 ...", "<a@b>... User unknown".
	lineAddrRe = regexp.MustCompile(`^[ \t]*["<]?[^\s<>@(),;:"\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]>?"?(?:[ \t]*(?::|\.\.\.|<mailto:|\(|\[|$))`)
)

// textRecipients reads a text bounce the way a person does. The recipients
// are the addresses in X-Failed-Recipients and those that start a line
// ("<a@b>: 550 ...", Exim's and Postfix's lists), even if in skip (a
// sender can write to itself); failing those, any address the text names
// that is not in skip ("could not deliver your
// message to a@b"). Each address gets the text from its first mention to
// the mention of another address, and the best reply code in that text
// gives its status. When the text names exactly one address, a code
// anywhere in it is that address's.
func textRecipients(text []byte, failed, skip []string) []RecipientStatus {
	var listed, named []string
	seen := make(map[string]bool)
	note := func(list *[]string, a string) {
		k := strings.ToLower(a)
		if seen[k] || (list == &named && isSkipped(a, skip)) || len(seen) >= maxRecipients {
			return
		}
		seen[k] = true
		*list = append(*list, a)
	}
	for _, a := range failed {
		note(&listed, a)
	}
	lines := strings.Split(string(text), "\n")
	for _, line := range lines {
		if strings.IndexByte(line, '@') >= 0 && lineAddrRe.MatchString(line) {
			note(&listed, addrRe.FindString(line))
		}
	}
	for _, line := range lines {
		if strings.IndexByte(line, '@') < 0 {
			continue // the regexp costs more than this look
		}
		for _, a := range addrRe.FindAllString(line, 20) {
			note(&named, trimAddr(a))
		}
	}
	addrs := listed
	if len(addrs) == 0 {
		addrs = named
	}
	if len(addrs) == 0 {
		return nil
	}
	segs := segments(text, append(append([]string(nil), listed...), named...))
	whole := ""
	var out []RecipientStatus
	for _, a := range addrs {
		t := segs[strings.ToLower(a)]
		if c, enh, _ := bestCode(t); c == 0 && enh == "" && len(addrs) == 1 {
			if whole == "" {
				whole = strings.Join(strings.Fields(string(text)), " ")
			}
			t = whole
		}
		if rs, ok := textStatus(a, t, true); ok {
			out = append(out, rs)
		}
	}
	return out
}

func trimAddr(a string) string {
	return strings.TrimRight(strings.TrimLeft(a, "'\"<"), ".'\">")
}

func isSkipped(a string, skip []string) bool {
	for _, s := range skip {
		if strings.EqualFold(a, s) {
			return true
		}
	}
	return false
}

// segments gives each address the text about it: every run of lines from
// a line naming it to the next line naming another of addrs (at most 40
// lines a run), joined by single spaces. Keys are lower case.
func segments(text []byte, addrs []string) map[string]string {
	known := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		known[strings.ToLower(a)] = true
	}
	parts := make(map[string]*strings.Builder, len(addrs))
	var cur []string // addresses the current run is about
	n := 0
	for _, line := range strings.Split(string(text), "\n") {
		var here []string
		for _, a := range addrsIn(line) {
			if k := strings.ToLower(trimAddr(a)); known[k] {
				here = append(here, k)
			}
		}
		if len(here) > 0 && !sameSet(here, cur) {
			cur, n = here, 0
		}
		if n++; n > 40 || len(cur) == 0 {
			continue
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		for _, k := range cur {
			b := parts[k]
			if b == nil {
				b = &strings.Builder{}
				parts[k] = b
			}
			if b.Len() < 4096 {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(strings.Join(strings.Fields(line), " "))
			}
		}
	}
	out := make(map[string]string, len(parts))
	for k, b := range parts {
		out[k] = b.String()
	}
	return out
}

// sameSet reports whether every address in a is in b.
func sameSet(a, b []string) bool {
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// textStatus makes a RecipientStatus from the free text about one address.
// ok is false when the text reports no failure: a success code, or no code
// at all unless assumeFailed.
func textStatus(addr, text string, assumeFailed bool) (rs RecipientStatus, ok bool) {
	rs.Final = addr
	text = strings.ToValidUTF8(text, "?")
	if m := hostRe.FindStringSubmatch(text); m != nil {
		rs.RemoteMTA = m[1]
	}
	code, enh, at := bestCode(text)
	switch {
	case code != 0:
		rs.Code = code
		rs.Diagnostic = "smtp; " + clip(text[at:])
	default:
		// "<a@b>: Sorry, no mailbox here by that name. (#5.1.1)": the
		// address that opens the text is not part of the diagnostic.
		t := strings.TrimSpace(text)
		if m := lineAddrRe.FindString(t); m != "" && strings.EqualFold(trimAddr(addrRe.FindString(m)), addr) {
			t = strings.TrimSpace(strings.TrimLeft(t[len(m):], ":.( "))
		}
		rs.Diagnostic = TextDiagnosticType + "; " + clip(t)
		if enh == "" && !assumeFailed {
			return rs, false
		}
	}
	rs.Status = enh
	switch {
	case rs.Status != "":
	case code != 0:
		rs.Status = fmt.Sprintf("%d.0.0", code/100)
	default:
		rs.Status = "5.0.0"
	}
	switch rs.Status[0] {
	case '5':
		rs.Action = "failed"
	case '4':
		rs.Action = "delayed"
	default:
		return rs, false // a 2xx in a transcript is not about a failure
	}
	return rs, true
}

// clip bounds a diagnostic taken from free text.
// 2 KB holds a provider's whole explanation even in a script of 3-byte
// characters, where the words or link that identify it come last.
func clip(s string) string {
	if len(s) > 2048 {
		s = s[:2048]
	}
	return strings.ToValidUTF8(s, "?")
}

// addrsIn returns up to 20 addresses in line; lines without '@' skip the
// regexp, whose leading class would otherwise be tried at every position.
func addrsIn(line string) []string {
	if strings.IndexByte(line, '@') < 0 {
		return nil
	}
	return addrRe.FindAllString(line, 20)
}
