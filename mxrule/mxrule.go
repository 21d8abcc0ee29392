package mxrule

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"github.com/penstock-mta/penstock/quota"
	"strings"
	"time"
)

// Scope says what a rule's quotas count over (docs/ARCHITECTURE.md §3).
type Scope int

// The zero Scope is ScopeSource, the default, so a Rule built in code without
// a scope counts per source.
const (
	// ScopeSource counts per local source (IP and EHLO name), across the
	// site's MX addresses.
	ScopeSource Scope = iota
	// ScopePath counts per source × remote MX IP address.
	ScopePath
	// ScopeRule counts everything matching the rule: all sources, all nodes.
	ScopeRule
)

// ParseScope parses the config spelling of a scope. The empty string is the
// default, ScopeSource.
func ParseScope(s string) (Scope, error) {
	switch s {
	case "", "source":
		return ScopeSource, nil
	case "path":
		return ScopePath, nil
	case "rule":
		return ScopeRule, nil
	}
	return 0, fmt.Errorf("unknown scope %q: use path, source or rule", s)
}

// String returns the config spelling: "path", "source" or "rule".
func (s Scope) String() string {
	switch s {
	case ScopeSource:
		return "source"
	case ScopePath:
		return "path"
	case ScopeRule:
		return "rule"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// TLS modes a rule may name (README.md, [[mx_rule]]). "default" takes [server] tls.
var tlsModes = [...]string{TLSDefault, "disabled", "opportunistic", "required", "verify"}

const (
	// TLSDefault is the rule TLS mode that takes the server's ([server] tls).
	TLSDefault = "default"
	// DefaultServerTLS is the server's mode when it names none:
	// opportunistic STARTTLS (RFC 7435).
	DefaultServerTLS = "opportunistic"
)

// EffectiveTLS is the TLS mode in force for a rule whose tls is rule, on a
// server whose [server] tls is server: the one place "default" is resolved.
func EffectiveTLS(rule, server string) string {
	if rule != "" && rule != TLSDefault {
		return rule
	}
	if server != "" && server != TLSDefault {
		return server
	}
	return DefaultServerTLS
}

// Rule is one named set of limits. The field names follow the [[mx_rule]] keys.
type Rule struct {
	Name     string
	Patterns []string // the mx key: wildcard patterns on MX host names
	Scope    Scope

	MaxConnections           int
	MaxMessagesPerConnection int
	MessagesPerHour          int // 0 = unlimited
	// MaxConnectionRate limits connection opens: Rate.N per Rate.Per
	// (max_connection_rate "30/1m"); the zero value is unlimited.
	MaxConnectionRate quota.Rate
	MessagesPerDay    int // rolling 24 hours; 0 = unlimited

	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration

	TLS string // default | disabled | opportunistic | required | verify
	// NoChunking (chunking = false) sends every message after DATA, even to
	// a receiver that offers CHUNKING, where the body otherwise goes as
	// one BDAT chunk (RFC 3030): for a receiver whose BDAT is broken.
	NoChunking bool

	// Builtin marks the catch-all and the shipped provider rules, so that
	// `penstock check` and explain can tell them from the operator's own.
	Builtin bool
	// ReplacesShipped marks an operator's rule named like a shipped one:
	// it takes the shipped rule's place (the shipped one is dropped).
	ReplacesShipped bool
}

// DefaultName is the name of the built-in catch-all rule.
const DefaultName = "default"

// Default returns the built-in catch-all rule that New appends to every Set.
// Its values are documented in the package comment.
func Default() Rule {
	return Rule{
		Name:                     DefaultName,
		Patterns:                 []string{"*"},
		Scope:                    ScopeSource,
		MaxConnections:           10,
		MaxMessagesPerConnection: 100,
		MessagesPerHour:          0,
		ConnectTimeout:           30 * time.Second,
		// RFC 5321 §4.5.3.2.1-3: the greeting, MAIL and RCPT replies may take 5 minutes.
		CommandTimeout: 5 * time.Minute,
		// RFC 5321 §4.5.3.2.6: the reply to the final dot may take 10 minutes.
		DataTimeout: 10 * time.Minute,
		TLS:         TLSDefault,
		Builtin:     true,
	}
}

// RuleError is a rule that New refused. Index is the rule's position in the
// slice given to New and Key the config key at fault (for example "mx" or
// "max_connections"), so the config layer can name file, line and key.
type RuleError struct {
	Index int
	Name  string
	Key   string
	Err   error
}

func (e *RuleError) Error() string {
	name := e.Name
	if name == "" {
		name = "(unnamed)"
	}
	return fmt.Sprintf("mx rule #%d %q: %s: %v", e.Index+1, name, e.Key, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// Set is an ordered, immutable list of rules ending with the catch-all.
// It is safe for concurrent use.
type Set struct {
	rules []*Rule
	pats  [][]compiled // pats[i] are rules[i].Patterns, compiled
}

// compiled is a pattern with its literal ends pulled out, so most rules are
// rejected by a suffix compare before the glob runs: "*.google.com" needs
// the host to end in ".google.com".
type compiled struct {
	glob   string
	prefix string // literal characters before the first wildcard
	suffix string // literal characters after the last wildcard
	minLen int    // characters the host needs: all but the stars
}

func compile(p string) compiled {
	c := compiled{glob: p}
	first := strings.IndexAny(p, "*?")
	if first < 0 {
		c.prefix, c.minLen = p, len(p)
		return c
	}
	last := strings.LastIndexAny(p, "*?")
	c.prefix, c.suffix = p[:first], p[last+1:]
	c.minLen = len(p) - strings.Count(p, "*")
	return c
}

func (c *compiled) matches(h string) bool {
	if len(h) < c.minLen || !hasPrefixFold(h, c.prefix) || !hasSuffixFold(h, c.suffix) {
		return false
	}
	if len(c.prefix) == len(c.glob) {
		return len(h) == len(c.glob) // a literal: the prefix compare was all of it
	}
	return match(c.glob, h)
}

// hasPrefixFold and hasSuffixFold compare ASCII case-insensitively; lit is
// already lower-case.
func hasPrefixFold(s, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		if lower(s[i]) != lit[i] {
			return false
		}
	}
	return true
}

func hasSuffixFold(s, lit string) bool {
	if len(s) < len(lit) {
		return false
	}
	off := len(s) - len(lit)
	for i := 0; i < len(lit); i++ {
		if lower(s[off+i]) != lit[i] {
			return false
		}
	}
	return true
}

// New validates rules, fills zero limits and timeouts from the catch-all,
// and returns a Set of copies of them followed by the catch-all rule
// "default". The caller's slice is not modified or retained.
func New(rules []Rule) (*Set, error) {
	def := Default()
	s := &Set{rules: make([]*Rule, 0, len(rules)+1), pats: make([][]compiled, 0, len(rules)+1)}
	seen := make(map[string]int, len(rules))
	for i := range rules {
		r, err := normalize(rules[i], def)
		if err != nil {
			key, e := err.key, err.err
			return nil, &RuleError{Index: i, Name: rules[i].Name, Key: key, Err: e}
		}
		if j, dup := seen[r.Name]; dup {
			return nil, &RuleError{Index: i, Name: r.Name, Key: "name",
				Err: fmt.Errorf("duplicate rule name, also used by rule #%d", j+1)}
		}
		seen[r.Name] = i
		s.rules = append(s.rules, r)
	}
	s.rules = append(s.rules, &def)
	for _, r := range s.rules {
		cs := make([]compiled, len(r.Patterns))
		for i, p := range r.Patterns {
			cs[i] = compile(p)
		}
		s.pats = append(s.pats, cs)
	}
	return s, nil
}

type keyErr struct {
	key string
	err error
}

func normalize(in Rule, def Rule) (*Rule, *keyErr) {
	r := in
	r.Name = strings.TrimSpace(r.Name)
	switch {
	case r.Name == "":
		return nil, &keyErr{"name", errors.New("a rule needs a name")}
	case strings.EqualFold(r.Name, DefaultName):
		return nil, &keyErr{"name", errors.New(`"default" is reserved for the built-in catch-all; ` +
			`to change the limits for all other hosts, add your own last rule with mx = "*"`)}
	}
	if len(r.Patterns) == 0 {
		return nil, &keyErr{"mx", errors.New("a rule needs at least one MX host pattern")}
	}
	pats := make([]string, len(r.Patterns))
	for i, p := range r.Patterns {
		n, err := normalizePattern(p)
		if err != nil {
			return nil, &keyErr{"mx", err}
		}
		pats[i] = n
	}
	r.Patterns = pats

	switch r.Scope {
	case ScopeSource, ScopePath, ScopeRule:
	default:
		return nil, &keyErr{"scope", fmt.Errorf("unknown scope %d", int(r.Scope))}
	}
	if r.MaxConnections < 0 {
		return nil, &keyErr{"max_connections", fmt.Errorf("%d is negative", r.MaxConnections)}
	}
	if r.MaxConnections == 0 {
		r.MaxConnections = def.MaxConnections
	}
	if r.MaxMessagesPerConnection < 0 {
		return nil, &keyErr{"max_messages_per_connection", fmt.Errorf("%d is negative", r.MaxMessagesPerConnection)}
	}
	if r.MaxMessagesPerConnection == 0 {
		r.MaxMessagesPerConnection = def.MaxMessagesPerConnection
	}
	if r.MessagesPerHour < 0 {
		return nil, &keyErr{"messages_per_hour", fmt.Errorf("%d is negative (0 means unlimited)", r.MessagesPerHour)}
	}
	if r.MessagesPerDay < 0 {
		return nil, &keyErr{"messages_per_day", fmt.Errorf("%d is negative (0 means unlimited)", r.MessagesPerDay)}
	}
	if c := r.MaxConnectionRate; c.N < 0 || c.Per < 0 || (c.N > 0) != (c.Per > 0) {
		return nil, &keyErr{"max_connection_rate", fmt.Errorf("%s: give a count and a period of at least 1 each", c)}
	}
	for _, t := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"connect_timeout", &r.ConnectTimeout, def.ConnectTimeout},
		{"command_timeout", &r.CommandTimeout, def.CommandTimeout},
		{"data_timeout", &r.DataTimeout, def.DataTimeout},
	} {
		if *t.v < 0 {
			return nil, &keyErr{t.key, fmt.Errorf("%v is negative", *t.v)}
		}
		if *t.v == 0 {
			*t.v = t.def
		}
	}
	if r.TLS == "" {
		r.TLS = def.TLS
	}
	if !validTLS(r.TLS) {
		return nil, &keyErr{"tls", fmt.Errorf("unknown mode %q: use one of %s", r.TLS, strings.Join(tlsModes[:], ", "))}
	}
	return &r, nil
}

func validTLS(s string) bool {
	for _, m := range tlsModes {
		if s == m {
			return true
		}
	}
	return false
}

// ValidatePattern reports whether p is an acceptable MX host pattern:
// non-empty, made only of letters, digits, '-', '.', '*' and '?'.
func ValidatePattern(p string) error {
	_, err := normalizePattern(p)
	return err
}

// normalizePattern validates p and returns it lower-cased, without its
// trailing dot and with runs of '*' collapsed (they mean the same and a
// single star keeps the matcher's work small).
func normalizePattern(p string) (string, error) {
	t := strings.TrimSuffix(p, ".")
	if t == "" {
		return "", fmt.Errorf("empty pattern %q", p)
	}
	var b strings.Builder
	b.Grow(len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + ('a' - 'A'))
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '?':
			b.WriteByte(c)
		case c == '*':
			if i > 0 && t[i-1] == '*' {
				continue
			}
			b.WriteByte(c)
		default:
			return "", fmt.Errorf("pattern %q: character %q at offset %d is not allowed "+
				"(use letters, digits, '-', '.', and the wildcards '*' and '?')", p, rune(c), i)
		}
	}
	return b.String(), nil
}

// Match is the outcome of Set.Match.
type Match struct {
	Rule    *Rule
	Host    string // the MX host that matched, as given; "" when the site had none
	Pattern string // the rule's pattern that matched (normalized)
	Index   int    // the rule's position in Rules()
}

// Match returns the first rule, in order, any of whose patterns matches any of
// mxHosts. Rules are tried in order and, within a rule, hosts in the order
// given (callers pass them in MX preference order, so Host names the most
// preferred match). With no hosts at all it returns the catch-all.
func (s *Set) Match(mxHosts []string) Match {
	for i, cs := range s.pats {
		for j := range cs {
			for _, h := range mxHosts {
				if cs[j].matches(trimDot(h)) {
					return Match{Rule: s.rules[i], Host: h, Pattern: cs[j].glob, Index: i}
				}
			}
		}
	}
	last := len(s.rules) - 1
	return Match{Rule: s.rules[last], Pattern: "*", Index: last}
}

// Rules returns the rules in match order, the catch-all last. The rules are
// shared: callers must not modify them.
func (s *Set) Rules() []*Rule {
	return append([]*Rule(nil), s.rules...)
}

// MatchPattern reports whether host matches pattern: '*' matches any run of
// characters including dots, '?' exactly one character; ASCII case is ignored
// and so is one trailing dot on either side. Characters outside the pattern
// alphabet simply never match a host character other than themselves; New is
// where patterns are validated.
func MatchPattern(pattern, host string) bool {
	return match(trimDot(pattern), trimDot(host))
}

func trimDot(s string) string {
	if n := len(s); n > 0 && s[n-1] == '.' {
		return s[:n-1]
	}
	return s
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// match is the iterative glob. On a mismatch it returns to the last '*' and
// lets that star swallow one more host character; earlier stars never need to
// be revisited, because whatever a later star can skip, it can skip from any
// earlier resume point too. That bounds the work to O(len(p) × len(h)).
func match(p, h string) bool {
	pi, hi := 0, 0
	star, resume := -1, 0
	for hi < len(h) {
		if pi < len(p) {
			switch c := p[pi]; {
			case c == '*':
				star, resume = pi, hi
				pi++
				continue
			case c == '?' || lower(c) == lower(h[hi]):
				pi++
				hi++
				continue
			}
		}
		if star < 0 {
			return false
		}
		resume++
		pi, hi = star+1, resume
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

//go:embed providers.toml
var shipped []byte

// ShippedTOML returns a copy of the embedded providers.toml: [[mx_rule]]
// tables for the large mailbox providers, each with the public guidance (or
// the lack of it) behind its values.
func ShippedTOML() []byte {
	return bytes.Clone(shipped)
}
