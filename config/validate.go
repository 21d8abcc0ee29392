package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/tenants"
)

// Validate checks every value and cross-reference and returns all problems
// found, joined, each an *Error naming file, line and key. It expects
// per-entry defaults to be filled (Parse does; see ApplyDefaults).
func (c *Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return joinProblems(ps)
	}
	return nil
}

// validator collects problems.
type validator struct {
	file  string
	idx   *lineIndex
	probs []*Error
}

// place is a table being validated: its key path and how people see it.
type place struct {
	path  string // "smtp", "mx_rule[2]"
	title string // "[smtp]", `[[mx_rule]] "yahoo"`
}

func table(name string) place { return place{name, "[" + name + "]"} }

// entry names the i-th element of an array of tables, by its name if any.
func entry(array string, i int, name string) place {
	p := place{path: fmt.Sprintf("%s[%d]", array, i)}
	if name != "" {
		p.title = fmt.Sprintf("[[%s]] %q", array, name)
	} else {
		p.title = fmt.Sprintf("[[%s]] #%d", array, i+1)
	}
	return p
}

// errf reports a problem with key (which may carry an element index,
// "allowed_networks[1]") in table at.
func (v *validator) errf(at place, key, format string, args ...any) {
	path := join(at.path, key)
	v.probs = append(v.probs, &Error{
		File: v.file,
		Line: v.idx.find(path),
		Key:  path,
		Msg:  at.title + " " + displayKey(key) + ": " + fmt.Sprintf(format, args...),
	})
}

// displayKey shows a relative key path: "sources[0].weight" -> "sources #1 weight".
func displayKey(key string) string {
	segs := strings.Split(key, ".")
	for i, s := range segs {
		segs[i] = displaySeg(s)
	}
	return strings.Join(segs, " ")
}

func elem(key string, i int) string { return fmt.Sprintf("%s[%d]", key, i) }

func (c *Config) problems() []*Error {
	v := &validator{file: c.File, idx: c.lines}
	v.server(&c.Server)
	v.smtp(&c.SMTP)
	v.http(&c.HTTP)
	v.dns(&c.DNS)
	v.sources(c.Sources)
	v.pools(c.Pools, c.Sources)
	v.delivery(&c.Delivery, c.Pools)
	v.mxRules(c.MXRules)
	v.caps(c)
	v.tenants(c.Tenants)
	v.flow(&c.FlowControl)
	v.bounceRules(c.BounceRules)
	v.quarantine(&c.Quarantine)
	v.bounceIn(&c.Bounce)
	v.cluster(&c.Cluster)
	v.dkim(c.DKIM, &c.DKIMDefault, c.Pools)
	v.tlsrpt(&c.TLSRPT)
	v.eventsOut(c.Webhooks, c.Streams, &c.Postgres)
	v.warmups(c.Warmups, c)
	return v.probs
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

// positive reports a duration that must be above zero.
func (v *validator) positive(at place, key string, d Duration) {
	if d <= 0 {
		v.errf(at, key, "must be a positive duration like \"5m\", not %q", d.String())
	}
}

// ratio reports a fraction that must be in (0, 1].
func (v *validator) ratio(at place, key string, f float64) {
	if !(f > 0 && f <= 1) {
		v.errf(at, key, "%v is outside (0, 1]: write a fraction like 0.5", f)
	}
}

func (v *validator) atLeast(at place, key string, n, min int) {
	if n < min {
		v.errf(at, key, "%d is below the minimum of %d", n, min)
	}
}

// hostname reports whether s is a DNS host name (RFC 1123 §2.1 letters,
// digits and hyphens in labels of 1 to 63 octets).
func hostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// listenAddr checks a host:port listen address; the port may be 0 (any).
func (v *validator) listenAddr(at place, key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.errf(at, key, "%q is not host:port, like \"127.0.0.1:2525\"", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.errf(at, key, "%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if host != "" && host != "localhost" && !hostname(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			v.errf(at, key, "%q: %q is neither an IP address nor a host name", addr, host)
		}
	}
}

// loopback reports whether a listen address only accepts local connections.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (v *validator) server(s *Server) {
	at := table("server")
	if !hostname(s.Hostname) {
		v.errf(at, "hostname", "%q is not a host name (letters, digits, '-' and '.')", s.Hostname)
	}
	if s.SpoolDir == "" {
		v.errf(at, "spool_dir", "must not be empty")
	}
	if !oneOf(s.TLS, TLSDisabled, TLSOpportunistic, TLSRequired, TLSVerify) {
		v.errf(at, "tls", "%q is not one of disabled, opportunistic, required, verify", s.TLS)
	}
}

// networks checks a list of networks in CIDR form, each normalised by
// ParsePrefix, and refuses any network, or the list as a whole, that holds
// every IPv4 or every IPv6 address in any spelling (0.0.0.0/0, ::/0,
// ::ffff:0.0.0.0/96, 0.0.0.0/1 with 128.0.0.0/1): open says why that is
// refused.
func (v *validator) networks(at place, key string, list []string, open string) {
	var all []netip.Prefix
	for i, n := range list {
		p, err := ParsePrefix(n)
		if err != nil {
			if a, err := netip.ParseAddr(n); err == nil {
				v.errf(at, elem(key, i), "%q is an address, not a network: write \"%s/%d\"", n, a, a.BitLen())
			} else {
				v.errf(at, elem(key, i), "%q is not a network in CIDR form, like \"10.0.0.0/8\"", n)
			}
			continue
		}
		// No open relay (docs/ARCHITECTURE.md §5, invariant 4).
		if CoversAll([]netip.Prefix{p}) {
			v.errf(at, elem(key, i), "%q (%s) %s", n, p, open)
			continue
		}
		all = append(all, p)
	}
	if len(all) > 1 && CoversAll(all) {
		v.errf(at, key, "%q together hold every address: that %s", list, open)
	}
}

func (v *validator) smtp(s *SMTP) {
	at := table("smtp")
	v.listenAddr(at, "listen", s.Listen)
	v.networks(at, "allowed_networks", s.AllowedNetworks, "lets anyone inject mail (an open relay): list your own networks, or use [smtp.users] for AUTH")
	if s.MaxMessageSize < 1 {
		v.errf(at, "max_message_size", "%d: must be a positive number of bytes", s.MaxMessageSize)
	}
	v.atLeast(at, "max_recipients", s.MaxRecipients, 1)
	v.atLeast(at, "max_connections", s.MaxConnections, 1)
	v.atLeast(at, "max_connections_per_client", s.MaxConnectionsPerClient, 1)
	if !(s.ReservedConnectionsRatio >= 0 && s.ReservedConnectionsRatio <= 0.9) {
		v.errf(at, "reserved_connections_ratio", "%v is outside [0, 0.9]: write a fraction of max_connections like 0.1 (0 reserves none)", s.ReservedConnectionsRatio)
	}
	v.positive(at, "idle_timeout", s.IdleTimeout)
	v.positive(at, "stress_idle_timeout", s.StressIdleTimeout)
	if s.StressIdleTimeout > s.IdleTimeout && s.IdleTimeout > 0 {
		v.errf(at, "stress_idle_timeout", "%s is longer than idle_timeout %s: under stress the wait is meant to be shorter", s.StressIdleTimeout, s.IdleTimeout)
	}
	v.atLeast(at, "max_errors", s.MaxErrors, 1)
	switch {
	case s.TLSCert != "" && s.TLSKey == "":
		v.errf(at, "tls_cert", "tls_key is missing: set both tls_cert and tls_key, or neither")
	case s.TLSCert == "" && s.TLSKey != "":
		v.errf(at, "tls_key", "tls_cert is missing: set both tls_cert and tls_key, or neither")
	}
	for user, pass := range s.Users {
		if user == "" {
			v.errf(at, "users", "a user name is empty")
		} else if pass == "" {
			v.errf(at, "users."+user, "user %q has an empty password", user)
		}
	}
}

func (v *validator) http(h *HTTP) {
	at := table("http")
	v.listenAddr(at, "listen", h.Listen)
	// The API injects mail: off loopback without a token it would be an
	// open relay (docs/ARCHITECTURE.md §5, invariant 4).
	if h.Token == "" && !loopback(h.Listen) {
		v.errf(at, "token", "must be set when listen (%q) is not a loopback address", h.Listen)
	}
	if h.MetricsOpen && h.MetricsToken != "" {
		v.errf(at, "metrics_open", "true with metrics_token set: /metrics is either open or behind metrics_token, not both")
	}
	v.atLeast(at, "max_connections", h.MaxConnections, 1)
	v.positive(at, "idle_timeout", h.IdleTimeout)
}

func (v *validator) dns(d *DNS) {
	at := table("dns")
	for i, ns := range d.Nameservers {
		if _, err := netip.ParseAddr(ns); err == nil {
			continue
		}
		if ap, err := netip.ParseAddrPort(ns); err == nil && ap.Port() != 0 {
			continue
		}
		v.errf(at, elem("nameservers", i), "%q is not \"ip\" or \"ip:port\" (IPv6 with a port: \"[::1]:53\")", ns)
	}
	v.positive(at, "timeout", d.Timeout)
	for i, c := range d.Canaries {
		if c == "." {
			continue
		}
		if c == "" || strings.ContainsAny(c, " \t/@:") || strings.HasPrefix(c, ".") || !strings.Contains(strings.TrimSuffix(c, "."), ".") {
			v.errf(at, elem("canaries", i), "%q is not a domain name that must exist (or \".\" for the root zone)", c)
		}
	}
}

func (v *validator) delivery(d *Delivery, pools []Pool) {
	at := table("delivery")
	if d.Port < 1 || d.Port > 65535 {
		v.errf(at, "port", "%d is not a port from 1 to 65535", d.Port)
	}
	if len(d.Retry) == 0 {
		v.errf(at, "retry", "the retry list is empty: give at least one wait, like [\"5m\", \"1h\"]")
	}
	for i, r := range d.Retry {
		v.positive(at, elem("retry", i), r)
	}
	v.positive(at, "validity", d.Validity)
	if d.TLSFailureMemory < 0 {
		v.errf(at, "tls_failure_memory", "must be a duration like \"1h\", or \"0s\" to never remember, not %q", d.TLSFailureMemory.String())
	}
	if d.DefaultPool != "" {
		found := false
		for _, p := range pools {
			found = found || p.Name == d.DefaultPool
		}
		if !found {
			v.errf(at, "default_pool", "no [[pool]] is named %q", d.DefaultPool)
		}
	}
}

// name checks that entry i of an array of tables has a name, unique there.
func (v *validator) name(at place, i int, name string, seen map[string]int, kind string) {
	if name == "" {
		v.errf(at, "name", "every [[%s]] needs a name", kind)
		return
	}
	if first, dup := seen[name]; dup {
		v.errf(at, "name", "duplicate name %q (also [[%s]] #%d)", name, kind, first+1)
		return
	}
	seen[name] = i
}

func (v *validator) sources(ss []Source) {
	seen := map[string]int{}
	for i, s := range ss {
		at := entry("source", i, s.Name)
		v.name(at, i, s.Name, seen, "source")
		if _, err := netip.ParseAddr(s.IP); err != nil {
			v.errf(at, "ip", "%q is not an IP address", s.IP)
		}
		if !hostname(s.EHLO) && !addressLiteral(s.EHLO) {
			v.errf(at, "ehlo", "%q is not a host name or an address literal like \"[192.0.2.1]\"", s.EHLO)
		}
	}
}

// addressLiteral reports whether s is an RFC 5321 §4.1.3 address literal.
func addressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	_, err := netip.ParseAddr(strings.TrimPrefix(s[1:len(s)-1], "IPv6:"))
	return err == nil
}

func (v *validator) pools(ps []Pool, sources []Source) {
	known := map[string]bool{}
	for _, s := range sources {
		known[s.Name] = true
	}
	seen := map[string]int{}
	for i, p := range ps {
		at := entry("pool", i, p.Name)
		v.name(at, i, p.Name, seen, "pool")
		if len(p.Sources) == 0 {
			v.errf(at, "sources", "a pool needs at least one source, like sources = [{source = \"ip1\"}]")
		}
		member := map[string]bool{}
		for j, ps := range p.Sources {
			key := elem("sources", j)
			switch {
			case !known[ps.Source]:
				v.errf(at, key+".source", "no [[source]] is named %q", ps.Source)
			case member[ps.Source]:
				v.errf(at, key+".source", "source %q is listed twice", ps.Source)
			}
			member[ps.Source] = true
			if ps.Weight < 1 {
				v.errf(at, key+".weight", "%d: a weight must be at least 1", ps.Weight)
			}
		}
	}
}

// validPattern reports whether p is an MX wildcard: letters, digits, '-',
// '.', '*' (any run) and '?' (one character).
func validPattern(p string) bool {
	if p == "" {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-.*?", r)) {
			return false
		}
	}
	return true
}

func (v *validator) mxRules(rules []MXRule) {
	seen := map[string]int{}
	catchAll := -1
	for i := range rules {
		r := &rules[i]
		at := entry("mx_rule", i, r.Name)
		v.name(at, i, r.Name, seen, "mx_rule")
		if len(r.MX) == 0 {
			v.errf(at, "mx", "missing: give an MX host wildcard like \"*.google.com\" or a list of them")
		}
		for j, p := range r.MX {
			key := "mx"
			if len(r.MX) > 1 {
				key = elem("mx", j)
			}
			if !validPattern(p) {
				v.errf(at, key, "%q is not an MX wildcard: use letters, digits, '-', '.', '*' and '?'", p)
			}
		}
		if catchAll >= 0 {
			v.errf(at, "mx", "this rule can never match: rule %q before it matches every MX host (\"*\"); move the catch-all last", rules[catchAll].Name)
		}
		for _, p := range r.MX {
			if p == "*" && catchAll < 0 {
				catchAll = i
			}
		}
		if !oneOf(r.Scope, ScopePath, ScopeSource, ScopeRule) {
			v.errf(at, "scope", "%q is not one of path, source, rule", r.Scope)
		}
		if r.MaxConnections < 0 {
			v.errf(at, "max_connections", "%d is negative (0 means no limit)", r.MaxConnections)
		}
		if r.MaxMessagesPerConnection < 0 {
			v.errf(at, "max_messages_per_connection", "%d is negative (0 means no limit)", r.MaxMessagesPerConnection)
		}
		if r.MessagesPerHour < 0 {
			v.errf(at, "messages_per_hour", "%d is negative (0 means no limit)", r.MessagesPerHour)
		}
		if r.MessagesPerDay < 0 {
			v.errf(at, "messages_per_day", "%d is negative (0 means no limit)", r.MessagesPerDay)
		}
		if r.MaxConnectionRate != "" {
			if _, _, err := ParseRate(r.MaxConnectionRate); err != nil {
				v.errf(at, "max_connection_rate", "%v", err)
			}
		}
		v.positive(at, "connect_timeout", r.ConnectTimeout)
		v.positive(at, "command_timeout", r.CommandTimeout)
		v.positive(at, "data_timeout", r.DataTimeout)
		if !oneOf(r.TLS, TLSDefault, TLSDisabled, TLSOpportunistic, TLSRequired, TLSVerify) {
			v.errf(at, "tls", "%q is not one of default, disabled, opportunistic, required, verify", r.TLS)
		}
	}
}

// caps checks the [[cap]] entries: a name, at least one selector and one
// limit, and selectors that name sources and rules that exist (a cap whose
// rule is misspelt would silently limit nothing).
func (v *validator) caps(c *Config) {
	sources := map[string]bool{}
	for _, s := range c.Sources {
		sources[s.Name] = true
	}
	rules := ruleNames(c)
	seen := map[string]int{}
	for i := range c.Caps {
		cp := &c.Caps[i]
		at := entry("cap", i, cp.Name)
		v.name(at, i, cp.Name, seen, "cap")
		if len(cp.Source)+len(cp.Rule)+len(cp.MX) == 0 {
			v.errf(at, "name", "a cap needs a selector: source, rule or mx (a cap over everything is a smaller catch-all rule)")
		}
		listKey := func(key string, n, j int) string {
			if n > 1 {
				return elem(key, j)
			}
			return key
		}
		for j, s := range cp.Source {
			if !sources[s] {
				v.errf(at, listKey("source", len(cp.Source), j), "no [[source]] is named %q", s)
			}
		}
		for j, r := range cp.Rule {
			if !rules[r] {
				v.errf(at, listKey("rule", len(cp.Rule), j), "no [[mx_rule]] (nor shipped rule) is named %q", r)
			}
		}
		for j, p := range cp.MX {
			if !validPattern(p) {
				v.errf(at, listKey("mx", len(cp.MX), j), "%q is not an MX wildcard: use letters, digits, '-', '.', '*' and '?'", p)
			}
		}
		if cp.MaxConnections < 0 {
			v.errf(at, "max_connections", "%d is negative (leave it out for no limit)", cp.MaxConnections)
		}
		if cp.MessagesPerHour < 0 {
			v.errf(at, "messages_per_hour", "%d is negative (leave it out for no limit)", cp.MessagesPerHour)
		}
		if cp.MaxConnectionRate != "" {
			if _, _, err := ParseRate(cp.MaxConnectionRate); err != nil {
				v.errf(at, "max_connection_rate", "%v", err)
			}
		}
		if cp.MaxConnections == 0 && cp.MessagesPerHour == 0 && cp.MaxConnectionRate == "" {
			v.errf(at, "max_connections", "a cap needs at least one of max_connections, messages_per_hour, max_connection_rate")
		}
	}
}

func (v *validator) tenants(ts []Tenant) {
	seen := map[string]int{}
	for i, t := range ts {
		at := entry("tenant", i, t.Name)
		v.name(at, i, t.Name, seen, "tenant")
		if err := tenants.Check(t.Name); err != nil {
			v.errf(at, "name", "%v", err)
		}
		if t.MessagesPerHour < 0 {
			v.errf(at, "messages_per_hour", "%d is negative (leave it out for no limit)", t.MessagesPerHour)
		}
		if t.Weight < 1 || t.Weight > 1000 {
			v.errf(at, "weight", "%d is outside 1 to 1000", t.Weight)
		}
	}
}

func (v *validator) flow(f *FlowControl) {
	at := table("flow_control")
	v.positive(at, "window", f.Window)
	v.atLeast(at, "min_attempts", f.MinAttempts, 1)
	v.ratio(at, "error_ratio", f.ErrorRatio)
	v.ratio(at, "connections_factor", f.ConnectionsFactor)
	v.ratio(at, "rate_factor", f.RateFactor)
	v.ratio(at, "suspend_ratio", f.SuspendRatio)
	if f.SuspendRatio < f.ErrorRatio {
		v.errf(at, "suspend_ratio", "%v is below error_ratio (%v): suspension is the stronger reaction and must need at least as many errors", f.SuspendRatio, f.ErrorRatio)
	}
	v.positive(at, "suspend_for", f.SuspendFor)
	v.positive(at, "max_suspend", f.MaxSuspend)
	if f.MaxSuspend < f.SuspendFor {
		v.errf(at, "max_suspend", "%s is shorter than suspend_for (%s)", f.MaxSuspend, f.SuspendFor)
	}
	v.positive(at, "probe_interval", f.ProbeInterval)
	v.positive(at, "recover_after", f.RecoverAfter)
	v.positive(at, "step_interval", f.StepInterval)
	v.ratio(at, "local_site_ratio", f.LocalSiteRatio)
	v.atLeast(at, "local_min_sites", f.LocalMinSites, 1)
	for i, p := range f.Patterns {
		pat := place{path: fmt.Sprintf("flow_control.pattern[%d]", i), title: fmt.Sprintf("[[flow_control.pattern]] #%d", i+1)}
		if p.Match == "" {
			v.errf(pat, "match", "missing: give a regular expression on the reply text")
		} else if _, err := regexp.Compile(p.Match); err != nil {
			v.errf(pat, "match", "bad regular expression: %v", err)
		}
		if !oneOf(p.Action, ActionBackoff, ActionSuspend, ActionLimit) {
			v.errf(pat, "action", "%q is not one of backoff, suspend, limit", p.Action)
		}
		v.patternLimits(pat, p)
		v.positive(pat, "duration", p.Duration)
		if p.Threshold != "" {
			if _, _, err := ParseThreshold(p.Threshold); err != nil {
				v.errf(pat, "threshold", "%v", err)
			}
		}
	}
}

// patternLimits checks the caps of a [[flow_control.pattern]]: at least
// one with action "limit", none with another action, each at least 1.
func (v *validator) patternLimits(pat place, p FlowPattern) {
	set := 0
	for _, c := range []struct {
		key string
		n   int
	}{{"max_connections", p.MaxConnections}, {"max_messages_per_connection", p.MaxMessagesPerConnection}, {"messages_per_hour", p.MessagesPerHour}} {
		if c.n < 0 {
			v.errf(pat, c.key, "%d is negative: a limit is at least 1", c.n)
		}
		if c.n != 0 {
			set++
			if p.Action != ActionLimit {
				v.errf(pat, c.key, "only a pattern with action = \"limit\" sets limits (this one is %q)", p.Action)
			}
		}
	}
	if p.MaxConnectionRate != "" {
		set++
		if _, _, err := ParseRate(p.MaxConnectionRate); err != nil {
			v.errf(pat, "max_connection_rate", "%v", err)
		} else if p.Action != ActionLimit {
			v.errf(pat, "max_connection_rate", "only a pattern with action = \"limit\" sets limits (this one is %q)", p.Action)
		}
	}
	if p.Action == ActionLimit && set == 0 {
		v.errf(pat, "action", "limit needs at least one of max_connections, max_messages_per_connection, messages_per_hour, max_connection_rate")
	}
}

var (
	// A reply code glob: "550", "5*", "4?1", "*".
	codeGlob = regexp.MustCompile(`^(?:[245*?][0-9*?]{0,2})$`)
	// An enhanced status code glob (RFC 3463 class.subject.detail): "5.1.1",
	// "5.7.*", "4.*".
	enhancedPart = regexp.MustCompile(`^(?:[0-9]{1,3}|\*)$`)
)

func validCode(s string) bool {
	return codeGlob.MatchString(s) && (len(s) == 3 || strings.HasSuffix(s, "*"))
}

func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 3 || (len(parts) < 3 && parts[len(parts)-1] != "*") {
		return false
	}
	if !oneOf(parts[0], "2", "4", "5", "*") {
		return false
	}
	for _, p := range parts[1:] {
		if !enhancedPart.MatchString(p) {
			return false
		}
	}
	return true
}

func (v *validator) bounceRules(rules []BounceRule) {
	seen := map[string]int{}
	for i, r := range rules {
		at := entry("bounce_rule", i, r.Name)
		v.name(at, i, r.Name, seen, "bounce_rule")
		if r.Code == "" && r.Enhanced == "" && r.Match == "" {
			v.errf(at, "match", "the rule matches every reply: give code, enhanced or match")
		}
		if r.Code != "" && !validCode(r.Code) {
			v.errf(at, "code", "%q is not a reply code or glob, like \"550\" or \"5*\"", r.Code)
		}
		if r.Enhanced != "" && !validEnhanced(r.Enhanced) {
			v.errf(at, "enhanced", "%q is not an enhanced status code or glob, like \"5.1.1\" or \"5.7.*\"", r.Enhanced)
		}
		if r.Match != "" {
			if _, err := regexp.Compile(r.Match); err != nil {
				v.errf(at, "match", "bad regular expression: %v", err)
			}
		}
		if !oneOf(r.Class, ClassHard, ClassSoft, ClassIgnored) {
			v.errf(at, "class", "%q is not one of hard, soft, ignored", r.Class)
		}
		if r.Retry < 0 {
			v.errf(at, "retry", "%s is negative", r.Retry)
		} else if r.Retry > 0 && r.Class == ClassHard {
			v.errf(at, "retry", "a hard bounce is never retried: remove retry or make the class soft")
		}
	}
}

func (v *validator) quarantine(q *Quarantine) {
	at := table("quarantine")
	v.atLeast(at, "max_errors", q.MaxErrors, 1)
	v.positive(at, "significant_error_delay", q.SignificantErrorDelay)
	v.positive(at, "reset_after", q.ResetAfter)
}

func (v *validator) tlsrpt(t *TLSRPT) {
	at := table("tlsrpt")
	if _, err := t.SendAtOffset(); err != nil {
		v.errf(at, "send_at", "%v", err)
	}
	if strings.ContainsAny(t.Organization, "\r\n") {
		v.errf(at, "organization", "must be one line")
	}
	if strings.ContainsAny(t.Contact, "\r\n") {
		v.errf(at, "contact", "must be one line")
	}
}

func (v *validator) bounceIn(b *BounceIn) {
	at := table("bounce")
	if b.Listen != "" {
		v.listenAddr(at, "listen", b.Listen)
		if b.Domain == "" {
			v.errf(at, "domain", "must be set when listen is: it is the domain of VERP return paths")
		}
	}
	if b.Domain != "" && !hostname(b.Domain) {
		v.errf(at, "domain", "%q is not a domain name", b.Domain)
	}
	for i, s := range b.TrustedReporters {
		key := elem("trusted_reporters", i)
		if strings.Contains(s, "/") {
			if _, err := trustedNet(s); err != nil {
				if strings.Contains(err.Error(), "covers") {
					v.errf(at, key, "%q %v: list the feedback loop's own networks", s, err)
				} else {
					v.errf(at, key, "%q is not a network in CIDR form, like \"192.0.2.0/24\"", s)
				}
			}
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			v.errf(at, key, "%q is an address, not a network: write \"%s/%d\"", s, a.Unmap(), a.Unmap().BitLen())
			continue
		}
		if !hostname(s) || !strings.Contains(strings.Trim(s, "."), ".") {
			v.errf(at, key, "%q is neither a network in CIDR form nor a domain name (a DKIM signing domain such as \"fbl.example.com\")", s)
		}
	}
	// The parser refuses more than 10 MiB; real reports carry at most the
	// first part of the returned message (Postfix 50 kB, Exim 100 kB).
	if b.MaxReportSize < 1024 || b.MaxReportSize > 10<<20 {
		v.errf(at, "max_report_size", "%d: must be between 1024 and 10485760 bytes", b.MaxReportSize)
	}
	v.atLeast(at, "reports_per_minute", b.ReportsPerMinute, 1)
	if b.UnparsedMaxBytes < 0 {
		v.errf(at, "unparsed_max_bytes", "%d: must be 0 (keep none) or a positive number of bytes", b.UnparsedMaxBytes)
	}
	v.atLeast(at, "unparsed_max_files", b.UnparsedMaxFiles, 0)
	if b.UnparsedMinFree < 0 {
		v.errf(at, "unparsed_min_free", "%d: must be 0 or a positive number of bytes", b.UnparsedMinFree)
	}
}

func (v *validator) cluster(c *Cluster) {
	at := table("cluster")
	if c.Redis != "" {
		u, err := url.Parse(c.Redis)
		// Messages show the URL redacted: it may hold a password.
		switch {
		case err != nil:
			v.errf(at, "redis", "not a URL like \"redis://127.0.0.1:6379/0\"")
		case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
			v.errf(at, "redis", "%q: scheme must be redis, rediss or unix", u.Redacted())
		case u.Scheme != "unix" && u.Host == "":
			v.errf(at, "redis", "%q has no host, like \"redis://127.0.0.1:6379/0\"", u.Redacted())
		}
	}
	if c.Node == "" {
		v.errf(at, "node", "must not be empty")
	}
	v.positive(at, "lease_ttl", c.LeaseTTL)
}

// ruleNames are the names a [[cap]] or a [[warmup]] may give as rule: the
// operator's rules, the shipped ones in force, and the catch-all.
func ruleNames(c *Config) map[string]bool {
	rules := map[string]bool{mxrule.DefaultName: true}
	for _, r := range c.MXRules {
		rules[r.Name] = true
	}
	if c.Server.UseShippedRules {
		if shipped, err := DecodeMXRules("mxrule/providers.toml", mxrule.ShippedTOML()); err == nil {
			for _, r := range shipped {
				rules[r.Name] = true
			}
		}
	}
	return rules
}
