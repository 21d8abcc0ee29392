package campaign

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	htemplate "html/template"
	"io"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"sync"
	ttemplate "text/template"
	"text/template/parse"
	"time"
)

// Template is a campaign's message as the API receives it. Every string field
// may use {{.var}} substitutions (text/template syntax; html/template for
// HTML) with the recipient's variables and the built-ins recipient,
// delivery_id and message_id.
type Template struct {
	From    string            `json:"from"` // header From, display name allowed; must parse with variables empty
	Subject string            `json:"subject"`
	Text    string            `json:"text,omitempty"`
	HTML    string            `json:"html,omitempty"`
	Headers map[string]string `json:"headers,omitempty"` // extra header fields; names the package sets itself are refused

	// ListUnsubscribe is an https URL pattern, e.g.
	// "https://x.example/u?r={{.recipient}}&d={{.delivery_id}}". It adds
	// List-Unsubscribe: <url> (RFC 2369) and List-Unsubscribe-Post:
	// List-Unsubscribe=One-Click (RFC 8058). Substituted values are
	// percent-encoded.
	ListUnsubscribe string `json:"list_unsubscribe,omitempty"`
	// FeedbackID is the Feedback-ID header value pattern, e.g.
	// "{{.delivery_id}}:newsletter:acme".
	FeedbackID string `json:"feedback_id,omitempty"`
}

// Names of the built-in variables, available in every field.
const (
	VarRecipient  = "recipient"
	VarDeliveryID = "delivery_id"
	VarMessageID  = "message_id" // the Message-ID without its angle brackets
)

// Compiled is a validated, precompiled Template. It is immutable and safe for
// concurrent use by many senders.
type Compiled struct {
	t Template

	from     addrField
	subject  *field
	text     *field
	html     *field
	headers  []header // sorted by name so output is deterministic
	unsub    *field
	feedback *field

	// body is the rendered body (its Content-Type fields, the empty line
	// and the parts) when text and html use no variable: rendered once per
	// template instead of once per recipient. nil otherwise.
	body []byte

	// checkAll: some field can fail on a value whatever its length (an
	// address with variables, a field on the template path); Check then
	// renders the headers. Otherwise only a word too long for a header
	// line can fail, and bounds (one per header field) tell when it
	// cannot.
	checkAll bool
	bounds   []wordBound

	pool sync.Pool // *renderState, reused across renders
}

// header is one custom header field.
type header struct {
	name string
	addr *addrField // address headers (Reply-To, Sender) are parsed, not RFC 2047-encoded whole
	val  *field
}

// addrField is a field holding a mailbox or mailbox list. When it has no
// variables it is parsed and formatted once, at compile time. A mailbox whose
// variables are all in the display name ("{{.name}} <news@acme.example>") is
// rendered as a name and a fixed address, so whatever the name holds (a
// comma, quotes) is quoted correctly instead of failing to parse.
type addrField struct {
	f      *field
	fixed  string // formatted value; "" when it depends on variables
	isList bool
	name   *field // display name template, when only it has variables
	spec   string // the fixed addr-spec that goes with name
}

type fieldKind uint8

const (
	kindText fieldKind = iota // text/template, value as is
	kindHTML                  // html/template, contextual escaping
	kindURL                   // text/template, values percent-encoded
)

// field is one compiled template field.
type field struct {
	name string
	kind fieldKind
	fast bool  // segs render it; otherwise tt or ht does
	segs []seg // literal text and variables, in order
	tt   *ttemplate.Template
	ht   *htemplate.Template
}

// ref says what a segment refers to.
type ref uint8

const (
	refLiteral ref = iota
	refVar
	refRecipient
	refDeliveryID
	refMessageID
)

type seg struct {
	ref    ref
	lit    string  // refLiteral: the text; refVar: the variable name
	filter bool    // html: pass the value through urlFilter first
	esc    escaper // html: the escaper chain html/template chose, fused
}

// isReservedHeader reports header names Render sets itself (or that are set
// later in the pipeline: DKIM, Return-Path at final delivery); a custom header
// of the same name would duplicate or contradict them. Cc and Bcc in a bulk
// template would show one list to every recipient. lower is lower case.
func isReservedHeader(lower string) bool {
	switch lower {
	case "bcc", "cc", "content-transfer-encoding", "content-type", "date",
		"dkim-signature", "feedback-id", "from", "list-unsubscribe",
		"list-unsubscribe-post", "message-id", "mime-version", "received",
		"return-path", "subject", "to":
		return true
	}
	return false
}

// isAddressHeader reports fields holding mailbox lists (RFC 5322 §3.6.2):
// they are validated as addresses and formatted per mailbox, never RFC
// 2047-encoded as a whole. lower is lower case.
func isAddressHeader(lower string) bool {
	return lower == "reply-to" || lower == "sender"
}

// sampleMeta fills the built-ins for the trial render in Compile.
func sampleMeta() Meta {
	return Meta{
		DeliveryID: "delivery",
		Recipient:  "recipient@example.com",
		MessageID:  "<message@example.com>",
		Date:       time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// Compile validates t and prepares it for rendering. Errors name the field
// ("html: template: html:3: ...").
func Compile(t Template) (*Compiled, error) {
	t.Headers = cloneMap(t.Headers)
	c := &Compiled{t: t}
	if strings.TrimSpace(t.From) == "" {
		return nil, errors.New("from: missing")
	}
	if strings.TrimSpace(t.Subject) == "" {
		return nil, errors.New("subject: missing")
	}
	if strings.TrimSpace(t.Text) == "" && strings.TrimSpace(t.HTML) == "" {
		return nil, errors.New("text, html: at least one body is required")
	}
	for _, s := range []struct{ name, v string }{
		{"from", t.From}, {"subject", t.Subject},
		{"list_unsubscribe", t.ListUnsubscribe}, {"feedback_id", t.FeedbackID},
	} {
		if strings.ContainsAny(s.v, "\r\n") {
			return nil, fmt.Errorf("%s: contains a line break; header values are one line", s.name)
		}
	}

	var err error
	if c.from, err = compileAddr("from", t.From, false); err != nil {
		return nil, err
	}
	if c.subject, err = compileField("subject", t.Subject, kindText); err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.Text) != "" {
		if c.text, err = compileField("text", t.Text, kindText); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(t.HTML) != "" {
		if c.html, err = compileField("html", t.HTML, kindHTML); err != nil {
			return nil, err
		}
	}
	if t.ListUnsubscribe != "" {
		if c.unsub, err = compileField("list_unsubscribe", t.ListUnsubscribe, kindURL); err != nil {
			return nil, err
		}
	}
	if t.FeedbackID != "" {
		if c.feedback, err = compileField("feedback_id", t.FeedbackID, kindText); err != nil {
			return nil, err
		}
	}
	if c.headers, err = compileHeaders(t.Headers); err != nil {
		return nil, err
	}

	// A trial render finds what only shows while executing, and checks the
	// fields whose rendered form must parse.
	st := c.state()
	defer c.release(st)
	if _, err := c.appendMessage(nil, st, nil, sampleMeta()); err != nil {
		return nil, err
	}
	if literal(c.text) && literal(c.html) {
		if c.body, err = c.appendBody(nil, st); err != nil {
			return nil, err
		}
	}
	c.planCheck()
	if c.unsub != nil {
		u, err := c.unsub.render(nil, st)
		if err != nil {
			return nil, err
		}
		// RFC 8058 §3.1: the one-click URI must be HTTPS. Variables are
		// percent-encoded, so the scheme and host come from the pattern.
		pu, err := url.Parse(string(u))
		if err != nil || pu.Scheme != "https" || pu.Host == "" {
			return nil, fmt.Errorf("list_unsubscribe: %q is not an https URL (RFC 8058 §3.1 requires one)", t.ListUnsubscribe)
		}
	}
	return c, nil
}

// wordBound is what a header field's longest word can reach: the length
// of its literal text plus refs values (each grown by factor: percent
// encoding triples a byte), after "name: ".
type wordBound struct {
	lit, refs, factor, name int
}

// planCheck sets checkAll and bounds (see Compiled).
func (c *Compiled) planCheck() {
	add := func(name string, f *field, factor int) {
		if f == nil {
			return
		}
		if !f.fast {
			c.checkAll = true
			return
		}
		b := wordBound{factor: factor, name: len(name) + 2}
		for _, s := range f.segs {
			if s.ref == refLiteral {
				b.lit += len(s.lit)
			} else {
				b.refs++
			}
		}
		if b.refs > 0 {
			c.bounds = append(c.bounds, b)
		}
	}
	addr := func(name string, a *addrField) {
		switch {
		case a.fixed != "":
		case a.name != nil:
			// Only the display name varies; it is quoted, never parsed.
			add(name, a.name, 2)
		default:
			c.checkAll = true // the address itself varies: it must parse
		}
	}
	addr("From", &c.from)
	add("Subject", c.subject, 1)
	add("List-Unsubscribe", c.unsub, 3)
	add("Feedback-ID", c.feedback, 1)
	for i := range c.headers {
		h := &c.headers[i]
		if h.addr != nil {
			addr(h.name, h.addr)
		} else {
			add(h.name, h.val, 1)
		}
	}
	if c.body == nil && (c.text != nil && !c.text.fast || c.html != nil && !c.html.fast) {
		c.checkAll = true
	}
}

// literal reports a field that renders the same for every recipient (or
// is absent).
func literal(f *field) bool {
	if f == nil {
		return true
	}
	if !f.fast {
		return false
	}
	for _, s := range f.segs {
		if s.ref != refLiteral {
			return false
		}
	}
	return true
}

// BodyFixed reports whether the body is the same for every recipient (no
// variable in text or html): stages that work on the body may do so once
// per template.
func (c *Compiled) BodyFixed() bool { return c.body != nil }

// Template returns the template c was compiled from.
func (c *Compiled) Template() Template {
	t := c.t
	t.Headers = cloneMap(t.Headers)
	return t
}

// storedTemplate is the storage form: versioned so a later layout can still
// read campaigns queued by this one.
type storedTemplate struct {
	Version  int      `json:"version"`
	Template Template `json:"template"`
}

const storedVersion = 1

// Bytes serialises the template for storage, once per campaign.
func (c *Compiled) Bytes() ([]byte, error) {
	return json.Marshal(storedTemplate{Version: storedVersion, Template: c.t})
}

// Load compiles a template serialised by Bytes.
func Load(data []byte) (*Compiled, error) {
	var s storedTemplate
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("campaign: stored template: %w", err)
	}
	if s.Version != storedVersion {
		return nil, fmt.Errorf("campaign: stored template: version %d, this build reads %d", s.Version, storedVersion)
	}
	c, err := Compile(s.Template)
	if err != nil {
		return nil, fmt.Errorf("campaign: stored template: %w", err)
	}
	return c, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func compileHeaders(h map[string]string) ([]header, error) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	seen := make(map[string]string, len(names))
	var out []header
	for _, name := range names {
		v := h[name]
		fname := "headers." + name
		if err := checkHeaderName(name); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
		lower := strings.ToLower(name)
		if isReservedHeader(lower) {
			return nil, fmt.Errorf("headers: %q is set by Penstock (use the template's own fields for From, Subject, List-Unsubscribe and Feedback-ID)", name)
		}
		if prev, ok := seen[lower]; ok {
			return nil, fmt.Errorf("headers: %q and %q name the same field", prev, name)
		}
		seen[lower] = name
		if strings.ContainsAny(v, "\r\n") {
			return nil, fmt.Errorf("%s: contains a line break; header values are one line", fname)
		}
		hd := header{name: name}
		if isAddressHeader(lower) {
			a, err := compileAddr(fname, v, true)
			if err != nil {
				return nil, err
			}
			hd.addr = &a
		} else {
			f, err := compileField(fname, v, kindText)
			if err != nil {
				return nil, err
			}
			hd.val = f
		}
		out = append(out, hd)
	}
	return out, nil
}

// checkHeaderName applies RFC 5322 §3.6.8: printable US-ASCII except colon.
func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return fmt.Errorf("header name %q: only printable ASCII without ':' is allowed (RFC 5322 §3.6.8)", name)
		}
	}
	return nil
}

func compileAddr(name, src string, list bool) (addrField, error) {
	f, err := compileField(name, src, kindText)
	if err != nil {
		return addrField{}, err
	}
	a := addrField{f: f, isList: list}
	if f.fast && len(f.segs) <= 1 && (len(f.segs) == 0 || f.segs[0].ref == refLiteral) {
		s, err := formatAddr(name, src, list)
		if err != nil {
			return addrField{}, err
		}
		a.fixed = s
		return a, nil
	}
	src = strings.TrimSpace(src)
	i := strings.LastIndexByte(src, '<')
	if list || i < 0 || !strings.HasSuffix(src, ">") || strings.Contains(src[i:], "{{") || strings.Contains(src[i:], "}}") {
		return a, nil
	}
	spec, err := mail.ParseAddress(src[i:])
	if err != nil {
		return addrField{}, fmt.Errorf("%s: %q: %w", name, src[i:], err)
	}
	if a.name, err = compileField(name, strings.TrimSpace(src[:i]), kindText); err != nil {
		return addrField{}, err
	}
	a.spec = spec.Address
	return a, nil
}

// formatAddr parses a mailbox (list) and prints it back in canonical form,
// RFC 2047-encoding display names that need it.
func formatAddr(name, s string, list bool) (string, error) {
	var as []*mail.Address
	if list {
		l, err := mail.ParseAddressList(s)
		if err != nil {
			return "", fmt.Errorf("%s: %q: %w", name, s, err)
		}
		as = l
	} else {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return "", fmt.Errorf("%s: %q: %w", name, s, err)
		}
		as = []*mail.Address{a}
	}
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString(", ")
		}
		s := a.String()
		if a.Name == "" {
			s = s[1 : len(s)-1] // a bare addr-spec reads better than <addr-spec>
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func compileField(name, src string, kind fieldKind) (*field, error) {
	f := &field{name: name, kind: kind}
	var tree *parse.Tree
	if kind == kindHTML {
		ht, err := htemplate.New(name).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		// html/template escapes the tree on first execution; its errors
		// (e.g. an unterminated attribute) only show then.
		if err := ht.Execute(io.Discard, map[string]string{}); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.ht, tree = ht, ht.Tree
	} else {
		tt, err := ttemplate.New(name).Option("missingkey=zero").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f.tt, tree = tt, tt.Tree
	}
	f.segs, f.fast = lower(tree, kind == kindHTML)
	return f, nil
}

// lower flattens a parse tree made only of text and {{.name}} actions (in
// html, followed by escapers we implement) into segments. ok is false for
// anything else.
func lower(tree *parse.Tree, html bool) (segs []seg, ok bool) {
	if tree == nil || tree.Root == nil {
		return nil, true
	}
	for _, n := range tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			if len(n.Text) == 0 {
				continue
			}
			if k := len(segs) - 1; k >= 0 && segs[k].ref == refLiteral {
				segs[k].lit += string(n.Text)
			} else {
				segs = append(segs, seg{ref: refLiteral, lit: string(n.Text)})
			}
		case *parse.ActionNode:
			p := n.Pipe
			if p == nil || len(p.Decl) != 0 || p.IsAssign || len(p.Cmds) == 0 {
				return nil, false
			}
			c0 := p.Cmds[0]
			if len(c0.Args) != 1 {
				return nil, false
			}
			fn, isField := c0.Args[0].(*parse.FieldNode)
			if !isField || len(fn.Ident) != 1 {
				return nil, false
			}
			s := seg{ref: refVar, lit: fn.Ident[0]}
			switch s.lit {
			case VarRecipient:
				s.ref = refRecipient
			case VarDeliveryID:
				s.ref = refDeliveryID
			case VarMessageID:
				s.ref = refMessageID
			}
			if !html && len(p.Cmds) != 1 {
				return nil, false
			}
			if html {
				var chain []string
				for _, c := range p.Cmds[1:] {
					if len(c.Args) != 1 {
						return nil, false
					}
					id, isIdent := c.Args[0].(*parse.IdentifierNode)
					if !isIdent {
						return nil, false
					}
					chain = append(chain, id.Ident)
				}
				if s.filter, s.esc = escaperFor(chain); s.esc == nil {
					return nil, false
				}
			}
			segs = append(segs, s)
		default:
			return nil, false
		}
	}
	return segs, true
}
