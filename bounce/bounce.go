package bounce

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Class says what a failure does to the recipient and to its address.
type Class string

const (
	Hard    Class = "hard"    // never retried; the address is quarantined
	Soft    Class = "soft"    // retried; counts toward quarantine
	Ignored Class = "ignored" // retried; never counts
)

// Reason is why an attempt failed, in words an operator filters on.
type Reason string

const (
	UserUnknown     Reason = "user_unknown"     // the mailbox does not exist
	InvalidDomain   Reason = "invalid_domain"   // the domain does not exist or takes no mail
	MailboxFull     Reason = "mailbox_full"     // over quota
	AccountDisabled Reason = "account_disabled" // exists but inactive, suspended or closed
	Unreachable     Reason = "unreachable"      // no route to the destination (DNS, network)
	Refused         Reason = "refused"          // policy, reputation, rate limit, content: about us, not the address
	SenderRejected  Reason = "sender_rejected"  // our envelope sender refused (unknown, unverifiable, listed): about us
	NotConnected    Reason = "not_connected"    // could not get an SMTP session (refused, timeout, TLS)
	ErrorIgnored    Reason = "error_ignored"    // greylisting and alike: try again, think nothing of it
	Unknown         Reason = "unknown"
	// BadMessage: the message could not be built (a rendered header that
	// does not parse): ours, never the address's nor the site's, and no
	// retry can change it. Only ClassifyLocal gives it; rules cannot.
	BadMessage Reason = "bad_message"
)

// RecipientLevel reports whether the reason is about the address itself
// (it does not exist, its domain takes no mail, it is full or disabled):
// such a failure counts toward the address's quarantine and says nothing
// about how the site treats us, so flow control does not count it. Every
// other reason is about us, the site or the way between.
func (r Reason) RecipientLevel() bool {
	switch r {
	case UserUnknown, InvalidDomain, MailboxFull, AccountDisabled:
		return true
	}
	return false
}

func validReason(r Reason) bool {
	switch r {
	case UserUnknown, InvalidDomain, MailboxFull, AccountDisabled,
		Unreachable, Refused, SenderRejected, NotConnected, ErrorIgnored, Unknown:
		return true
	}
	return false
}

// Rule maps replies to a reason and a class. Empty Code, Enhanced and Match
// match anything; a rule must set at least one of them.
type Rule struct {
	Name     string
	Code     string // basic code pattern: "550", "55?", "5*"; '*' any run, '?' one digit
	Enhanced string // enhanced code pattern: "5.1.1", "5.7.*"
	Match    string // regexp on the reply text, case-insensitive
	Reason   Reason
	Class    Class
	Retry    time.Duration // optional retry interval, for soft reasons
}

// Verdict is the outcome of classifying one reply.
type Verdict struct {
	Reason Reason
	Class  Class
	Rule   string // the matching rule's name, or "rfc3463" / "default" / "local"
	Retry  time.Duration
}

// Names of the built-in fallbacks in Verdict.Rule.
const (
	RuleRFC3463 = "rfc3463" // decided by the enhanced status code
	RuleDefault = "default" // decided by the basic reply code
	RuleLocal   = "local"   // one of our own errors (ClassifyLocal)
)

// Classifier qualifies replies. It is immutable after New and safe for
// concurrent use.
type Classifier struct {
	rules   []compiled
	ac      *acMatcher // the words of every rule's text pattern (prefilter.go); nil if none
	nbranch int
}

type compiled struct {
	Rule
	branches []branch // the alternatives of Match; none: any text
}

// branch is one top-level alternative of a rule's Match.
type branch struct {
	words    []string       // lower-case; one occurs in every match (prefilter.go)
	filtered bool           // the branch can match only if the prefilter saw a word
	re       *regexp.Regexp // nil when a word seen is a match: the branch is only words
	id       int            // the branch's bit in the prefilter's hits
}

// New builds a Classifier from the operator's rules, followed by the shipped
// set when shipped is true. It checks every rule and names the first bad one.
func New(rules []Rule, shipped bool) (*Classifier, error) {
	all := rules
	if shipped {
		all = append(append([]Rule(nil), rules...), Shipped()...)
	}
	c := &Classifier{rules: make([]compiled, 0, len(all))}
	seen := make(map[string]int, len(rules))
	for i, r := range all {
		cr, err := compile(r)
		if err != nil {
			return nil, err
		}
		// A user rule may shadow a shipped rule's name (it comes first and
		// wins anyway); two user rules may not share one.
		if j, dup := seen[r.Name]; dup && i < len(rules) {
			return nil, fmt.Errorf("bounce rule %q: name already used by rule #%d", r.Name, j+1)
		}
		if _, dup := seen[r.Name]; !dup {
			seen[r.Name] = i
		}
		c.rules = append(c.rules, cr)
	}
	var words []string
	var owner []int
	nb := 0
	for i := range c.rules {
		for j := range c.rules[i].branches {
			b := &c.rules[i].branches[j]
			b.id = nb
			nb++
			if b.filtered {
				for _, w := range b.words {
					words = append(words, w)
					owner = append(owner, b.id)
				}
			}
		}
	}
	c.nbranch = nb
	if len(words) > 0 {
		c.ac = newAC(words, owner)
	}
	return c, nil
}

func compile(r Rule) (compiled, error) {
	bad := func(format string, a ...any) (compiled, error) {
		return compiled{}, fmt.Errorf("bounce rule %q: "+format, append([]any{r.Name}, a...)...)
	}
	if r.Name == "" {
		return compiled{}, fmt.Errorf("bounce rule with code %q, enhanced %q, match %q: missing name", r.Code, r.Enhanced, r.Match)
	}
	if !validReason(r.Reason) {
		return bad("unknown reason %q (want one of user_unknown, invalid_domain, mailbox_full, account_disabled, unreachable, refused, sender_rejected, not_connected, error_ignored, unknown)", r.Reason)
	}
	switch r.Class {
	case Hard, Soft, Ignored:
	default:
		return bad("unknown class %q (want hard, soft or ignored)", r.Class)
	}
	if r.Retry < 0 {
		return bad("negative retry %v", r.Retry)
	}
	if r.Code == "" && r.Enhanced == "" && r.Match == "" {
		return bad("matches every reply: set code, enhanced or match")
	}
	if err := checkCodePattern(r.Code); err != nil {
		return bad("code %q: %v", r.Code, err)
	}
	if err := checkEnhancedPattern(r.Enhanced); err != nil {
		return bad("enhanced %q: %v", r.Enhanced, err)
	}
	cr := compiled{Rule: r}
	if r.Match == "" {
		return cr, nil
	}
	if _, err := regexp.Compile("(?i)" + r.Match); err != nil {
		return bad("match: %v", err)
	}
	cr.branches = branches(r.Match)
	return cr, nil
}

func checkCodePattern(p string) error {
	if p == "" {
		return nil
	}
	star := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= '0' && c <= '9', c == '?':
		case c == '*':
			star = true
		default:
			return fmt.Errorf("unexpected %q: want digits, '?' and '*'", c)
		}
	}
	if !star && len(p) != 3 {
		return fmt.Errorf("want three characters (\"550\", \"55?\") or a '*' (\"5*\")")
	}
	if p[0] != '4' && p[0] != '5' && p[0] != '*' && p[0] != '?' {
		return fmt.Errorf("a failure reply starts with 4 or 5")
	}
	return nil
}

func checkEnhancedPattern(p string) error {
	if p == "" {
		return nil
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c >= '0' && c <= '9', c == '?', c == '*', c == '.':
		default:
			return fmt.Errorf("unexpected %q: want digits, '.', '?' and '*' as in \"5.7.*\"", c)
		}
	}
	if !strings.Contains(p, "*") && strings.Count(p, ".") != 2 {
		return fmt.Errorf("want class.subject.detail as in \"5.1.1\"")
	}
	return nil
}

// Classify qualifies a failure reply. code is the basic reply code (0 if
// none), enhanced the RFC 3463 code without the leading class separator
// ("5.1.1", "" if none), text the reply text with continuation lines joined
// by spaces and their codes removed. If enhanced is empty and the text starts
// with one (RFC 2034 §4), that one is used.
func (c *Classifier) Classify(code int, enhanced, text string) Verdict {
	enhanced = strings.TrimSpace(enhanced)
	if enhanced == "" {
		enhanced = leadingEnhanced(code, text)
	}
	var cs [3]byte
	codeStr := ""
	if code >= 100 && code <= 999 {
		cs = [3]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)}
		codeStr = string(cs[:])
	}
	var hitsBuf [8]uint64 // room for 512 branches without allocating
	var hits []uint64     // branches whose words occur in text; scanned on first need
	// Without a reply code (a text bounce, a DSN without a diagnostic
	// code), the enhanced code's class stands for it: "5*" matches 5.x.x.
	var class byte
	if codeStr == "" && len(enhanced) > 0 && (enhanced[0] == '4' || enhanced[0] == '5') {
		class = enhanced[0]
	}
	text = stripContinuationCodes(code, text)
	for i := range c.rules {
		r := &c.rules[i]
		if r.Code != "" && (codeStr == "" && !classMatches(r.Code, class) || codeStr != "" && !glob(r.Code, codeStr)) {
			continue
		}
		if r.Enhanced != "" && (enhanced == "" || !glob(r.Enhanced, enhanced)) {
			continue
		}
		if len(r.branches) > 0 {
			if hits == nil && c.ac != nil {
				hits = hitsBuf[:]
				if n := (c.nbranch + 63) / 64; n > len(hitsBuf) {
					hits = make([]uint64, n)
				}
				c.ac.scan(text, hits)
			}
			if !r.matchText(text, hits) {
				continue
			}
		}
		return Verdict{Reason: r.Reason, Class: r.Class, Rule: r.Name, Retry: r.Retry}
	}
	return defaultVerdict(code, enhanced, text)
}

func (r *compiled) matchText(text string, hits []uint64) bool {
	for i := range r.branches {
		b := &r.branches[i]
		if b.filtered && hits[b.id>>6]&(1<<(b.id&63)) == 0 {
			continue
		}
		if b.re == nil || b.re.MatchString(text) {
			return true
		}
	}
	return false
}

// Rules returns the effective rules in the order they are tried (for
// "penstock check").
func (c *Classifier) Rules() []Rule {
	out := make([]Rule, len(c.rules))
	for i, r := range c.rules {
		out[i] = r.Rule
	}
	return out
}

// glob matches s against p, where '*' stands for any run of characters and
// '?' for exactly one.
func glob(p, s string) bool {
	// Iterative matcher with one backtrack point: linear for patterns with a
	// single '*', which is all that codes need.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(p) && (p[px] == '?' || p[px] == s[sx]):
			px++
			sx++
		case px < len(p) && p[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// classMatches reports whether a code pattern accepts every code of class
// ('4' or '5'): "5*", "5??", "*".
func classMatches(p string, class byte) bool {
	if class == 0 || p == "" || (p[0] != class && p[0] != '*' && p[0] != '?') {
		return false
	}
	for i := 1; i < len(p); i++ {
		if p[i] != '*' && p[i] != '?' {
			return false
		}
	}
	return true
}

// stripContinuationCodes removes the reply code (and the enhanced code after
// it) that a multiline reply repeats on every line, as reports quote it:
// "550-5.2.1 The user is receiving mail at a rate that 550-5.2.1 prevents
// ..." (RFC 5321 §4.2.1). Only repetitions of the reply's own code go.
func stripContinuationCodes(code int, text string) string {
	if code < 400 || code > 599 {
		return text
	}
	var c [4]byte
	c[0], c[1], c[2], c[3] = byte('0'+code/100), byte('0'+code/10%10), byte('0'+code%10), '-'
	if !strings.Contains(text, string(c[:])) {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if strings.HasPrefix(text[i:], string(c[:3])) && i+3 < len(text) && (text[i+3] == '-' || text[i+3] == ' ') &&
			(i == 0 || text[i-1] == ' ') {
			j := i + 4
			if _, _, _, n, ok := parseEnhanced(text[j:]); ok && (j+n == len(text) || text[j+n] == ' ') {
				j += n
			}
			for j < len(text) && text[j] == ' ' {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(text[i])
		i++
	}
	return b.String()
}

// leadingEnhanced returns the enhanced status code at the start of text when
// its class agrees with the reply code, "" otherwise.
func leadingEnhanced(code int, text string) string {
	text = strings.TrimLeft(text, " ")
	cl, _, _, n, ok := parseEnhanced(text)
	if !ok || (n < len(text) && text[n] != ' ') {
		return ""
	}
	if code != 0 && cl != code/100 {
		return ""
	}
	return text[:n]
}

// parseEnhanced reads class.subject.detail (RFC 3463 §2: class is 2, 4 or 5;
// subject and detail are 1 to 3 digits) at the start of s and returns the
// parts and the length read.
func parseEnhanced(s string) (class, subject, detail, n int, ok bool) {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return 0, 0, 0, 0, false
	}
	class = int(s[0] - '0')
	i := 2
	num := func() (int, bool) {
		v, start := 0, i
		for i < len(s) && i-start < 3 && s[i] >= '0' && s[i] <= '9' {
			v = v*10 + int(s[i]-'0')
			i++
		}
		return v, i > start
	}
	var okS, okD bool
	if subject, okS = num(); !okS || i >= len(s) || s[i] != '.' {
		return 0, 0, 0, 0, false
	}
	i++
	if detail, okD = num(); !okD {
		return 0, 0, 0, 0, false
	}
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		return 0, 0, 0, 0, false // a fourth digit: not an enhanced code
	}
	return class, subject, detail, i, true
}
