package mxrule

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

func TestMatchPattern(t *testing.T) {
	good := func(pattern, host string) {
		t.Helper()
		if !MatchPattern(pattern, host) {
			t.Errorf("MatchPattern(%q, %q) = false, want true", pattern, host)
		}
	}
	bad := func(pattern, host string) {
		t.Helper()
		if MatchPattern(pattern, host) {
			t.Errorf("MatchPattern(%q, %q) = true, want false", pattern, host)
		}
	}

	// The Google example from the design.
	good("*.google.com", "gmail-smtp-in.l.google.com")
	good("*.google.com", "alt1.gmail-smtp-in.l.google.com")
	good("*.google.com", "aspmx.l.google.com")
	bad("*.google.com", "google.com")
	bad("*.google.com", "google.com.evil.example")
	bad("*.google.com", "notgoogle.com")

	// '*' crosses dots, matches empty runs, anywhere.
	good("*", "mx.example.com")
	good("*", "")
	good("mx*.example.com", "mx.example.com")
	good("mx*.example.com", "mx1.a.b.example.com")
	good("*example*", "mx.example.com")
	good("a*b*c", "abc")
	good("a*b*c", "aXXbYYc")
	good("a*b*c", "abcbc")
	bad("a*b*c", "acb")
	good("**.example.com", "mx.example.com")
	good("*.*.example.com", "a.b.example.com")
	bad("*.*.example.com", "a.example.com")

	// '?' is exactly one character, dots included.
	good("mx?.example.com", "mx1.example.com")
	bad("mx?.example.com", "mx.example.com")
	bad("mx?.example.com", "mx12.example.com")
	good("mx??.example.com", "mx12.example.com")
	good("a?b", "a.b")
	good("mta?.am0.yahoodns.net", "mta5.am0.yahoodns.net")

	// Case-insensitive on both sides.
	good("*.Google.COM", "ASPMX.L.google.com")
	good("MX?.EXAMPLE.COM", "mx1.example.com")

	// One trailing dot ignored on either side.
	good("*.google.com", "aspmx.l.google.com.")
	good("*.google.com.", "aspmx.l.google.com")
	good("mx.example.com.", "mx.example.com.")

	// Literals and no match.
	good("mx.example.com", "mx.example.com")
	bad("mx.example.com", "mx.example.co")
	bad("mx.example.com", "mx.example.comm")
	bad("mx.example.com", "")
	bad("", "mx.example.com")
	good("", "")
}

func TestNewRefusesBadRules(t *testing.T) {
	bad := func(key string, r Rule) {
		t.Helper()
		_, err := New([]Rule{{Name: "ok", Patterns: []string{"*.ok.example"}}, r})
		var re *RuleError
		if !errors.As(err, &re) {
			t.Fatalf("New(%+v): err = %v, want *RuleError", r, err)
		}
		if re.Index != 1 || re.Key != key {
			t.Errorf("New(%+v): index %d key %q, want 1 %q (%v)", r, re.Index, re.Key, key, err)
		}
	}
	p := []string{"*.example.com"}
	bad("mx", Rule{Name: "r"})
	bad("mx", Rule{Name: "r", Patterns: []string{""}})
	bad("mx", Rule{Name: "r", Patterns: []string{"."}})
	bad("mx", Rule{Name: "r", Patterns: []string{"*.example.com", "mx_1.example.com"}})
	bad("mx", Rule{Name: "r", Patterns: []string{"mx example.com"}})
	bad("mx", Rule{Name: "r", Patterns: []string{"[a-z].example.com"}})
	bad("mx", Rule{Name: "r", Patterns: []string{"mx.exämple.com"}})
	bad("mx", Rule{Name: "r", Patterns: []string{"*.example.com/"}})
	bad("name", Rule{Patterns: p})
	bad("name", Rule{Name: "default", Patterns: p})
	bad("name", Rule{Name: "ok", Patterns: p})
	bad("scope", Rule{Name: "r", Patterns: p, Scope: Scope(7)})
	bad("max_connections", Rule{Name: "r", Patterns: p, MaxConnections: -1})
	bad("max_messages_per_connection", Rule{Name: "r", Patterns: p, MaxMessagesPerConnection: -1})
	bad("messages_per_hour", Rule{Name: "r", Patterns: p, MessagesPerHour: -5})
	bad("connect_timeout", Rule{Name: "r", Patterns: p, ConnectTimeout: -time.Second})
	bad("command_timeout", Rule{Name: "r", Patterns: p, CommandTimeout: -time.Second})
	bad("data_timeout", Rule{Name: "r", Patterns: p, DataTimeout: -time.Second})
	bad("tls", Rule{Name: "r", Patterns: p, TLS: "sometimes"})

	if err := ValidatePattern("*.EXAMPLE.com."); err != nil {
		t.Errorf("ValidatePattern: %v", err)
	}
	if err := ValidatePattern("mx!.example.com"); err == nil {
		t.Errorf("ValidatePattern accepted '!'")
	}
}

func TestNewDefaultsAndCopies(t *testing.T) {
	in := []Rule{{Name: "only-conns", Patterns: []string{"*.Example.COM."}, MaxConnections: 3, MessagesPerHour: 0}}
	s, err := New(in)
	if err != nil {
		t.Fatal(err)
	}
	rules := s.Rules()
	if len(rules) != 2 {
		t.Fatalf("%d rules, want 2", len(rules))
	}
	r, def := rules[0], rules[1]
	want := Default()
	if r.MaxConnections != 3 || r.MaxMessagesPerConnection != want.MaxMessagesPerConnection ||
		r.MessagesPerHour != 0 || r.ConnectTimeout != want.ConnectTimeout ||
		r.CommandTimeout != want.CommandTimeout || r.DataTimeout != want.DataTimeout ||
		r.TLS != "default" || r.Scope != ScopeSource || r.Builtin {
		t.Errorf("defaults not filled as documented: %+v", *r)
	}
	if r.Patterns[0] != "*.example.com" {
		t.Errorf("pattern not normalized: %q", r.Patterns[0])
	}
	if in[0].Patterns[0] != "*.Example.COM." || in[0].TLS != "" {
		t.Errorf("New modified its input: %+v", in[0])
	}
	if def.Name != "default" || !def.Builtin || len(def.Patterns) != 1 || def.Patterns[0] != "*" {
		t.Errorf("catch-all: %+v", *def)
	}
	// The documented catch-all values.
	if def.MaxConnections != 10 || def.MaxMessagesPerConnection != 100 || def.MessagesPerHour != 0 ||
		def.ConnectTimeout != 30*time.Second || def.CommandTimeout != 5*time.Minute ||
		def.DataTimeout != 10*time.Minute || def.TLS != "default" || def.Scope != ScopeSource {
		t.Errorf("catch-all values differ from the package comment: %+v", *def)
	}
	// Rules returns a fresh slice.
	rules[0] = nil
	if s.Rules()[0] == nil {
		t.Errorf("Rules exposes the Set's own slice")
	}
	// Empty set: only the catch-all.
	empty, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := empty.Match([]string{"mx.anything.example"}); m.Rule.Name != "default" || m.Index != 0 {
		t.Errorf("empty set match: %+v", m)
	}
}

func TestSetMatch(t *testing.T) {
	s, err := New([]Rule{
		{Name: "special-google", Patterns: []string{"alt?.aspmx.l.google.com"}},
		{Name: "google", Patterns: []string{"google.com", "*.google.com", "*.googlemail.com"}},
		{Name: "broad", Patterns: []string{"*.com"}},
		{Name: "yahoo", Patterns: []string{"*.yahoodns.net"}},
		{Name: "mx-numbered", Patterns: []string{"mx??.*"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		hosts   []string
		rule    string
		host    string
		pattern string
		index   int
	}{
		// First rule in order wins, even when a later host also matches it.
		{[]string{"aspmx.l.google.com", "alt1.aspmx.l.google.com"}, "special-google", "alt1.aspmx.l.google.com", "alt?.aspmx.l.google.com", 0},
		{[]string{"gmail-smtp-in.l.google.com"}, "google", "gmail-smtp-in.l.google.com", "*.google.com", 1},
		{[]string{"google.com"}, "google", "google.com", "google.com", 1},
		{[]string{"aspmx2.googlemail.com."}, "google", "aspmx2.googlemail.com.", "*.googlemail.com", 1},
		// "google" precedes "broad" although both match.
		{[]string{"ASPMX.L.GOOGLE.COM"}, "google", "ASPMX.L.GOOGLE.COM", "*.google.com", 1},
		{[]string{"mx.example.com"}, "broad", "mx.example.com", "*.com", 2},
		// Within a rule, hosts are tried in the order given.
		{[]string{"mta6.am0.yahoodns.net", "mta5.am0.yahoodns.net"}, "yahoo", "mta6.am0.yahoodns.net", "*.yahoodns.net", 3},
		{[]string{"mx01.example.org"}, "mx-numbered", "mx01.example.org", "mx??.*", 4},
		// Catch-all.
		{[]string{"mail.example.org"}, "default", "mail.example.org", "*", 5},
		{nil, "default", "", "*", 5},
		// A host matching an earlier rule beats an earlier host matching a later rule.
		{[]string{"mail.example.org", "mx.example.com"}, "broad", "mx.example.com", "*.com", 2},
	}
	for _, tt := range tests {
		m := s.Match(tt.hosts)
		if m.Rule == nil || m.Rule.Name != tt.rule || m.Host != tt.host || m.Pattern != tt.pattern || m.Index != tt.index {
			t.Errorf("Match(%q) = {%v %q %q %d}, want {%s %q %q %d}", tt.hosts, ruleName(m.Rule), m.Host, m.Pattern, m.Index,
				tt.rule, tt.host, tt.pattern, tt.index)
		}
		if m.Rule != s.Rules()[m.Index] {
			t.Errorf("Match(%q): Index %d does not point at Rule", tt.hosts, m.Index)
		}
	}
}

func ruleName(r *Rule) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name
}

func TestScope(t *testing.T) {
	for _, s := range []Scope{ScopeSource, ScopePath, ScopeRule} {
		got, err := ParseScope(s.String())
		if err != nil || got != s {
			t.Errorf("ParseScope(%q) = %v, %v", s.String(), got, err)
		}
	}
	if s, err := ParseScope(""); err != nil || s != ScopeSource {
		t.Errorf(`ParseScope("") = %v, %v; want source`, s, err)
	}
	if _, err := ParseScope("site"); err == nil {
		t.Errorf("ParseScope accepted an unknown scope")
	}
	if Scope(9).String() != "Scope(9)" {
		t.Errorf("unknown scope String: %s", Scope(9))
	}
}

// providerRule mirrors config.MXRule's TOML keys, for decoding the shipped
// file without importing config.
type providerRule struct {
	Name                     string   `toml:"name"`
	MX                       []string `toml:"mx"`
	Scope                    string   `toml:"scope"`
	MaxConnections           int      `toml:"max_connections"`
	MaxMessagesPerConnection int      `toml:"max_messages_per_connection"`
	MessagesPerHour          int      `toml:"messages_per_hour"`
	ConnectTimeout           duration `toml:"connect_timeout"`
	CommandTimeout           duration `toml:"command_timeout"`
	DataTimeout              duration `toml:"data_timeout"`
	TLS                      string   `toml:"tls"`
}

type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = duration(v)
	return err
}

func shippedRules(t testing.TB) []Rule {
	t.Helper()
	var f struct {
		MXRule []providerRule `toml:"mx_rule"`
	}
	dec := toml.NewDecoder(bytes.NewReader(ShippedTOML()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			t.Fatalf("providers.toml: %s", sm.String())
		}
		t.Fatalf("providers.toml: %v", err)
	}
	var out []Rule
	for _, p := range f.MXRule {
		sc, err := ParseScope(p.Scope)
		if err != nil {
			t.Fatalf("providers.toml rule %q: %v", p.Name, err)
		}
		out = append(out, Rule{
			Name: p.Name, Patterns: p.MX, Scope: sc,
			MaxConnections: p.MaxConnections, MaxMessagesPerConnection: p.MaxMessagesPerConnection,
			MessagesPerHour: p.MessagesPerHour,
			ConnectTimeout:  time.Duration(p.ConnectTimeout), CommandTimeout: time.Duration(p.CommandTimeout),
			DataTimeout: time.Duration(p.DataTimeout), TLS: p.TLS, Builtin: true,
		})
	}
	return out
}

func TestShippedProviders(t *testing.T) {
	rules := shippedRules(t)
	if len(rules) < 15 {
		t.Fatalf("only %d shipped rules", len(rules))
	}
	// Every key is written out explicitly in the shipped file, so that what an
	// operator reads there is what runs; check nothing relies on defaulting.
	for _, r := range rules {
		if r.MaxConnections <= 0 || r.MaxMessagesPerConnection <= 0 || r.ConnectTimeout <= 0 ||
			r.CommandTimeout <= 0 || r.DataTimeout <= 0 || r.TLS == "" || r.MessagesPerHour < 0 {
			t.Errorf("shipped rule %q leaves a value to defaults: %+v", r.Name, r)
		}
		if r.TLS != "default" && r.TLS != "opportunistic" {
			t.Errorf("shipped rule %q: tls %q", r.Name, r.TLS)
		}
		for _, p := range r.Patterns {
			if err := ValidatePattern(p); err != nil {
				t.Errorf("shipped rule %q: %v", r.Name, err)
			}
		}
	}
	s, err := New(rules)
	if err != nil {
		t.Fatalf("New(shipped): %v", err)
	}
	// Each name appears once, with a comment right above its table.
	text := string(ShippedTOML())
	for _, r := range rules {
		i := strings.Index(text, fmt.Sprintf("name = %q", r.Name))
		head := text[:i]
		head = strings.TrimSuffix(head, "[[mx_rule]]\n")
		if !strings.HasSuffix(head, "\n") || !strings.HasPrefix(lastLine(head), "#") {
			t.Errorf("shipped rule %q has no comment citing its source", r.Name)
		}
	}

	tests := []struct{ host, rule string }{
		{"gmail-smtp-in.l.google.com", "google"},
		{"alt4.gmail-smtp-in.l.google.com", "google"},
		{"aspmx.l.google.com", "google"},
		{"smtp.google.com", "google"},
		{"aspmx2.googlemail.com", "google"},
		{"hotmail-com.olc.protection.outlook.com", "microsoft-consumer"},
		{"outlook-com.olc.protection.outlook.com", "microsoft-consumer"},
		{"example-com.mail.protection.outlook.com", "microsoft-365"},
		{"example-com.o-v1.mx.microsoft", "microsoft-365"},
		{"mta5.am0.yahoodns.net", "yahoo"},
		{"mta7.am0.yahoodns.net.", "yahoo"},
		{"mx-aol.mail.gm0.yahoodns.net", "yahoo"},
		{"mx01.mail.icloud.com", "apple-icloud"},
		{"mx02.mail.icloud.com", "apple-icloud"},
		{"mx00.gmx.net", "gmx-webde"},
		{"mx00.emig.gmx.net", "gmx-webde"},
		{"mx01.gmx.com", "gmx-webde"},
		{"mx-ha03.web.de", "gmx-webde"},
		{"smtp-in.orange.fr", "orange"},
		{"mx1a1.comcast.net", "comcast"},
		{"mx2c1.comcast.net", "comcast"},
		{"mx.yandex.ru", "yandex"},
		{"mx.yandex.net", "yandex"},
		{"mxs.mail.ru", "mailru"},
		{"emx.mail.ru", "mailru"},
		{"smtp-in.laposte.net", "laposte"},
		{"mx2.sfr.fr", "sfr"},
		{"mx1.free.fr", "free"},
		{"mx00.t-online.de", "t-online"},
		{"smtp-in.libero.it", "libero"},
		{"mx.zoho.com", "zoho"},
		{"mx2.zoho.eu", "zoho"},
		{"mx.zoho.com.au", "zoho"},
		{"mail.protonmail.ch", "proton"},
		{"mailsec.protonmail.ch", "proton"},
		// Not providers: the catch-all.
		{"google.com", "default"},
		{"mx.example.com", "default"},
		{"protection.outlook.com", "default"},
		{"mail.icloud.com", "default"},
	}
	for _, tt := range tests {
		if m := s.Match([]string{tt.host}); m.Rule.Name != tt.rule {
			t.Errorf("%s matched %q (pattern %q), want %q", tt.host, m.Rule.Name, m.Pattern, tt.rule)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSuffix(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func TestShippedTOMLIsACopy(t *testing.T) {
	a := ShippedTOML()
	a[0] = 'X'
	if ShippedTOML()[0] == 'X' {
		t.Errorf("ShippedTOML returns the embedded bytes themselves")
	}
}

// refMatch is the obviously correct recursive glob, memoized so the fuzzer
// cannot make it exponential.
func refMatch(p, h string) bool {
	p, h = trimDot(p), trimDot(h)
	memo := make(map[[2]int]bool)
	var rec func(i, j int) bool
	rec = func(i, j int) bool {
		k := [2]int{i, j}
		if v, ok := memo[k]; ok {
			return v
		}
		var v bool
		switch {
		case i == len(p):
			v = j == len(h)
		case p[i] == '*':
			v = rec(i+1, j) || (j < len(h) && rec(i, j+1))
		case j == len(h):
			v = false
		case p[i] == '?':
			v = rec(i+1, j+1)
		default:
			v = asciiFold(p[i]) == asciiFold(h[j]) && rec(i+1, j+1)
		}
		memo[k] = v
		return v
	}
	return rec(0, 0)
}

func asciiFold(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c | 0x20
	}
	return c
}

func FuzzMatchPattern(f *testing.F) {
	seeds := [][2]string{
		{"*.google.com", "gmail-smtp-in.l.google.com"},
		{"*.google.com", "google.com"},
		{"a*b*c", "abcbc"},
		{"*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaa"},
		{"mx?.example.com.", "MX1.EXAMPLE.COM"},
		{"**", ""},
		{"?", "."},
		{"*.", "a."},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		if len(pattern) > 64 || len(host) > 128 {
			t.Skip()
		}
		got, want := MatchPattern(pattern, host), refMatch(pattern, host)
		if got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, reference says %v", pattern, host, got, want)
		}
		// A validated, normalized pattern matches the same hosts.
		// and so does its compiled form, which Set.Match uses.
		if n, err := normalizePattern(pattern); err == nil {
			if match(n, trimDot(host)) != want {
				t.Fatalf("normalized %q -> %q changes the result for %q", pattern, n, host)
			}
			c := compile(n)
			if c.matches(trimDot(host)) != want {
				t.Fatalf("compiled %q (%+v) says %v for %q, reference %v", pattern, c, !want, host, want)
			}
		}
	})
}

// A bounded random sweep over a tiny alphabet, where wildcards, dots and case
// collide most, checks both matcher paths against the reference on every run
// (the fuzzer explores further with -fuzz).
func TestMatchAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	gen := func(alphabet string, max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for i := 0; i < 50000; i++ {
		p, h := gen("ab.*?A", 8), gen("abB.", 10)
		want := refMatch(p, h)
		if got := MatchPattern(p, h); got != want {
			t.Fatalf("MatchPattern(%q, %q) = %v, reference %v", p, h, got, want)
		}
		if n, err := normalizePattern(p); err == nil {
			if c := compile(n); c.matches(trimDot(h)) != want {
				t.Fatalf("compiled %q for %q = %v, reference %v", p, h, !want, want)
			}
		}
	}
}

// The matcher stays polynomial on the classic exponential-backtracking input.
func TestMatchPatternNoBlowup(t *testing.T) {
	p := strings.Repeat("*a", 30) + "*b"
	h := strings.Repeat("a", 4000)
	done := make(chan bool, 1)
	go func() { done <- MatchPattern(p, h) }()
	select {
	case v := <-done:
		if v {
			t.Errorf("matched without a 'b'")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MatchPattern took over 10s: backtracking blew up")
	}
}

func BenchmarkMatch(b *testing.B) {
	var rules []Rule
	for i := 0; i < 34; i++ {
		rules = append(rules, Rule{Name: fmt.Sprintf("r%d", i), Patterns: []string{fmt.Sprintf("*.provider%d.example", i)}})
	}
	shipped := shippedRules(b)
	for i := range shipped {
		shipped[i].Name = "shipped-" + shipped[i].Name
	}
	rules = append(rules, shipped...)
	s, err := New(rules[:50])
	if err != nil {
		b.Fatal(err)
	}
	cases := map[string][]string{
		"first":    {"mx.provider0.example"},
		"shipped":  {"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net", "mta7.am0.yahoodns.net"},
		"catchall": {"mx1.mail.example.org", "mx2.mail.example.org"},
	}
	for name, hosts := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.Match(hosts)
			}
		})
	}
}

func TestEffectiveTLS(t *testing.T) {
	for _, tc := range []struct{ rule, server, want string }{
		{"", "", "opportunistic"},
		{"default", "", "opportunistic"},
		{"default", "default", "opportunistic"},
		{"default", "verify", "verify"},
		{"", "required", "required"},
		{"disabled", "verify", "disabled"},
		{"verify", "opportunistic", "verify"},
	} {
		if got := EffectiveTLS(tc.rule, tc.server); got != tc.want {
			t.Errorf("EffectiveTLS(%q, %q) = %q, want %q", tc.rule, tc.server, got, tc.want)
		}
	}
	if Default().TLS != TLSDefault {
		t.Errorf("the catch-all's tls is %q", Default().TLS)
	}
}
