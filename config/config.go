package config

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/mxrule"
)

// TLS modes for [server] tls and [[mx_rule]] tls.
const (
	TLSDefault       = "default" // mx_rule only: take [server] tls
	TLSDisabled      = "disabled"
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, any certificate
	TLSRequired      = "required"      // STARTTLS or no delivery, any certificate
	TLSVerify        = "verify"        // STARTTLS with a verified certificate
)

// MX rule scopes: what a rule's quotas count over.
const (
	ScopePath   = "path"   // each source × remote MX IP
	ScopeSource = "source" // each source, across the site's MX IPs
	ScopeRule   = "rule"   // everything matching the rule, all sources and nodes
)

// Bounce classes.
const (
	ClassHard    = "hard"
	ClassSoft    = "soft"
	ClassIgnored = "ignored"
)

// Flow-control pattern actions.
const (
	ActionBackoff = "backoff"
	ActionSuspend = "suspend"
	ActionLimit   = "limit"
)

// Config is the whole of penstock.toml.
type Config struct {
	Server      Server       `toml:"server"`
	SMTP        SMTP         `toml:"smtp"`
	HTTP        HTTP         `toml:"http"`
	DNS         DNS          `toml:"dns"`
	Delivery    Delivery     `toml:"delivery"`
	Sources     []Source     `toml:"source,omitempty"`
	Pools       []Pool       `toml:"pool,omitempty"`
	MXRules     []MXRule     `toml:"mx_rule,omitempty"`
	Caps        []Cap        `toml:"cap,omitempty"`
	Tenants     []Tenant     `toml:"tenant,omitempty"`
	FlowControl FlowControl  `toml:"flow_control"`
	BounceRules []BounceRule `toml:"bounce_rule,omitempty"`
	Quarantine  Quarantine   `toml:"quarantine"`
	Bounce      BounceIn     `toml:"bounce"`
	Cluster     Cluster      `toml:"cluster"`
	DKIM        []DKIM       `toml:"dkim,omitempty"`
	DKIMDefault DKIMDefault  `toml:"dkim_default"`
	TLSRPT      TLSRPT       `toml:"tlsrpt"`
	Webhooks    []Webhook    `toml:"webhook,omitempty"`
	Streams     []Stream     `toml:"stream,omitempty"`
	Postgres    Postgres     `toml:"postgres"`
	MTASTS      MTASTS       `toml:"mta_sts"`
	DANE        DANE         `toml:"dane"`
	Warmups     []Warmup     `toml:"warmup,omitempty"`

	File string `toml:"-"` // path it was loaded from, "" for defaults

	lines *lineIndex // key path -> line in File, for Validate's messages
}

// Server is [server].
type Server struct {
	Hostname        string `toml:"hostname"`          // default: os.Hostname()
	SpoolDir        string `toml:"spool_dir"`         // default "./penstock-data"
	LogDir          string `toml:"log_dir"`           // default "./penstock-data/log"
	TLS             string `toml:"tls"`               // disabled|opportunistic|required|verify; default opportunistic
	UseShippedRules bool   `toml:"use_shipped_rules"` // default true: provider MX rules after the user's
}

// SMTP is [smtp], the injection listener.
type SMTP struct {
	Listen          string            `toml:"listen"`           // default 127.0.0.1:2525
	AllowedNetworks []string          `toml:"allowed_networks"` // CIDRs that may inject without AUTH
	MaxMessageSize  int64             `toml:"max_message_size"` // bytes, default 25 MiB
	MaxRecipients   int               `toml:"max_recipients"`   // per message, default 1000
	MaxConnections  int               `toml:"max_connections"`  // default 1000
	TLSCert         string            `toml:"tls_cert"`         // PEM file; with tls_key enables STARTTLS
	TLSKey          string            `toml:"tls_key"`
	Users           map[string]string `toml:"users"` // AUTH PLAIN user -> password

	// Defences against clients that hold slots or hammer the listener.
	MaxConnectionsPerClient  int      `toml:"max_connections_per_client"` // default 50; allowed_networks exempt
	ReservedConnectionsRatio float64  `toml:"reserved_connections_ratio"` // default 0.1 of max_connections, for allowed_networks (and loopback with users)
	IdleTimeout              Duration `toml:"idle_timeout"`               // wait for a command, default 5m
	StressIdleTimeout        Duration `toml:"stress_idle_timeout"`        // the same under stress, default 10s
	MaxErrors                int      `toml:"max_errors"`                 // error replies before 421 and close, default 20
}

// HTTP is [http], the API and dashboard listener.
type HTTP struct {
	Listen string `toml:"listen"` // default 127.0.0.1:8025
	Token  string `toml:"token"`  // bearer token; required off loopback
	// MetricsToken is the bearer token for /metrics; default: Token.
	MetricsToken string `toml:"metrics_token"`
	// MetricsOpen serves /metrics without a token (a scraper on a private
	// network); default false.
	MetricsOpen bool `toml:"metrics_open"`
	// MaxConnections caps concurrent HTTP connections (each one a file
	// descriptor); more wait to be accepted. Default 512.
	MaxConnections int `toml:"max_connections"`
	// IdleTimeout closes a keep-alive connection with no request for this
	// long. Default 1m.
	IdleTimeout Duration `toml:"idle_timeout"`
}

// DNS is [dns].
type DNS struct {
	Nameservers []string `toml:"nameservers"` // "ip" or "ip:port"; empty = system resolver
	Timeout     Duration `toml:"timeout"`     // default 5s
	// Canaries are names that must always resolve ("." = the root zone's
	// NS; others: their MX). An NXDOMAIN is believed only while one of
	// them resolves; if they all fail the resolver is at fault and mail
	// waits instead of bouncing. Default: ".", gmail.com, outlook.com,
	// yahoo.com; [] = off.
	Canaries []string `toml:"canaries"`
	// DNSSEC trusts the AD bit of the nameservers' answers (DANE needs
	// DNSSEC-secure MX and TLSA answers). Set it only when the nameservers
	// are validating resolvers reached over a trusted path. Default false.
	DNSSEC bool `toml:"dnssec"`
}

// MTASTS is [mta_sts]: MTA-STS (RFC 8461) for outbound delivery.
type MTASTS struct {
	Enabled bool `toml:"enabled"` // default true
}

// DANE is [dane]: DANE for SMTP (RFC 7672); effective only with [dns] dnssec.
type DANE struct {
	Enabled bool `toml:"enabled"` // default true
}

// Delivery is [delivery].
type Delivery struct {
	Port        int        `toml:"port"`         // remote SMTP port, default 25
	Retry       []Duration `toml:"retry"`        // waits between attempts; the last repeats
	Validity    Duration   `toml:"validity"`     // give up and bounce after this, default 5d
	DefaultPool string     `toml:"default_pool"` // pool for mail that names none
	DSN         bool       `toml:"dsn"`          // send an RFC 3464 report to the sender of SMTP-injected mail that finally fails; default true
	// TLSFailureMemory: after a failed STARTTLS handshake, opportunistic
	// mail goes to that MX address in clear text for this long; 0 = never
	// remembered. Default 1h.
	TLSFailureMemory Duration `toml:"tls_failure_memory"`
}

// Source is one [[source]]: a local IP that mail leaves from.
type Source struct {
	Name string `toml:"name"`
	IP   string `toml:"ip"`
	EHLO string `toml:"ehlo"` // default: [server] hostname
}

// Pool is one [[pool]]: a weighted set of sources.
type Pool struct {
	Name    string       `toml:"name"`
	Sources []PoolSource `toml:"sources,omitempty"`
	// DKIMDomain signs this pool's mail whose From domain has no key of its
	// own (a third-party signature); default: [dkim_default] domain.
	DKIMDomain string `toml:"dkim_domain"`
}

// PoolSource is one member of a pool.
type PoolSource struct {
	Source string `toml:"source"` // a [[source]] name
	Weight int    `toml:"weight"` // default (and 0) = 1
}

// MXRule is one [[mx_rule]]. Unset (zero) max_connections,
// max_messages_per_connection, timeouts and tls take the built-in catch-all
// rule's values, which package mxrule owns (mxrule.Default);
// messages_per_hour 0 means unlimited.
type MXRule struct {
	Name                     string   `toml:"name"`
	MX                       Patterns `toml:"mx"`
	Scope                    string   `toml:"scope"` // path|source|rule, default source
	MaxConnections           int      `toml:"max_connections"`
	MaxMessagesPerConnection int      `toml:"max_messages_per_connection"`
	MessagesPerHour          int      `toml:"messages_per_hour"`
	MaxConnectionRate        string   `toml:"max_connection_rate"` // "N/period", e.g. "30/1m"; "" = unlimited
	MessagesPerDay           int      `toml:"messages_per_day"`    // rolling 24 hours; 0 = unlimited
	ConnectTimeout           Duration `toml:"connect_timeout"`     // default 30s
	CommandTimeout           Duration `toml:"command_timeout"`     // default 5m
	DataTimeout              Duration `toml:"data_timeout"`        // default 10m
	TLS                      string   `toml:"tls"`                 // default|disabled|opportunistic|required|verify
	Chunking                 *bool    `toml:"chunking"`            // default true: BDAT to receivers offering CHUNKING

	Line int `toml:"-"` // line of the [[mx_rule]] header, 0 if not from a file
}

// Cap is one [[cap]]: a limit across MX rules, checked in addition to the
// matched rule's own. It applies to a connection when every selector it
// sets matches: the source's name, the matched rule's name (one or a list,
// a provider group) and an MX host of the site (wildcards). It counts once
// for everything it applies to, on every node of a cluster.
type Cap struct {
	Name              string   `toml:"name"`
	Source            Patterns `toml:"source"` // [[source]] names; one or a list
	Rule              Patterns `toml:"rule"`   // [[mx_rule]] names (or shipped ones); one or a list
	MX                Patterns `toml:"mx"`     // MX host wildcards; one or a list
	MaxConnections    int      `toml:"max_connections"`
	MessagesPerHour   int      `toml:"messages_per_hour"`
	MaxConnectionRate string   `toml:"max_connection_rate"` // "N/period"

	Line int `toml:"-"` // line of the [[cap]] header, 0 if not from a file
}

// Tenant is one [[tenant]]: a customer's messages_per_hour, counted
// across every site, and its weight in the fair share of a site's sending
// when several tenants' mail competes for it. A tenant without a table
// has no quota and weight 1.
type Tenant struct {
	Name            string `toml:"name"`
	MessagesPerHour int    `toml:"messages_per_hour"` // 0 = unlimited
	Weight          int    `toml:"weight"`            // default (and 0) = 1
}

// FlowControl is [flow_control]: when a destination's error ratio over
// Window reaches ErrorRatio (with at least MinAttempts attempts), it backs
// off; at SuspendRatio it is suspended.
type FlowControl struct {
	Enabled           bool          `toml:"enabled"`            // default true
	Window            Duration      `toml:"window"`             // default 5m
	MinAttempts       int           `toml:"min_attempts"`       // default 20
	ErrorRatio        float64       `toml:"error_ratio"`        // default 0.3
	ConnectionsFactor float64       `toml:"connections_factor"` // default 0.5
	RateFactor        float64       `toml:"rate_factor"`        // default 0.5
	SuspendRatio      float64       `toml:"suspend_ratio"`      // default 0.6
	SuspendFor        Duration      `toml:"suspend_for"`        // default 5m
	MaxSuspend        Duration      `toml:"max_suspend"`        // default 2h
	ProbeInterval     Duration      `toml:"probe_interval"`     // default 1m
	RecoverAfter      Duration      `toml:"recover_after"`      // default 5m
	StepInterval      Duration      `toml:"step_interval"`      // default 1m
	LocalSiteRatio    float64       `toml:"local_site_ratio"`   // default 0.5
	LocalMinSites     int           `toml:"local_min_sites"`    // default 4
	Patterns          []FlowPattern `toml:"pattern,omitempty"`
}

// FlowPattern is one [[flow_control.pattern]]: a reply text that triggers an
// action at once (or after Threshold matches).
type FlowPattern struct {
	Match     string   `toml:"match"`     // regexp on the reply text
	Action    string   `toml:"action"`    // backoff|suspend|limit
	Duration  Duration `toml:"duration"`  // default: [flow_control] suspend_for
	Threshold string   `toml:"threshold"` // optional "N/duration", e.g. "3/5m"
	// action = "limit": the caps (at least one), for duration, then easing
	// back halfway each step_interval.
	MaxConnections           int    `toml:"max_connections"`
	MaxMessagesPerConnection int    `toml:"max_messages_per_connection"`
	MessagesPerHour          int    `toml:"messages_per_hour"`
	MaxConnectionRate        string `toml:"max_connection_rate"`
}

// BounceRule is one [[bounce_rule]].
type BounceRule struct {
	Name     string   `toml:"name"`
	Code     string   `toml:"code"`     // "550", "5*", "" = any
	Enhanced string   `toml:"enhanced"` // "5.1.1", "5.7.*", "" = any
	Match    string   `toml:"match"`    // regexp on the reply text
	Reason   string   `toml:"reason"`   // default: name
	Class    string   `toml:"class"`    // hard|soft|ignored
	Retry    Duration `toml:"retry"`    // optional wait before the next attempt
}

// Quarantine is [quarantine].
type Quarantine struct {
	MaxErrors             int      `toml:"max_errors"`              // default 5
	SignificantErrorDelay Duration `toml:"significant_error_delay"` // default 1d
	ResetAfter            Duration `toml:"reset_after"`             // default 10d
	CaseSensitiveLocal    bool     `toml:"case_sensitive_local"`    // default true
}

// TLSRPT is [tlsrpt]: daily SMTP TLS reports (RFC 8460) to the domains
// that ask for them. Outcomes are always counted; reports are opt-in.
type TLSRPT struct {
	Enabled      bool   `toml:"enabled"`      // default false
	Organization string `toml:"organization"` // organization-name; default [server] hostname
	Contact      string `toml:"contact"`      // contact-info; default postmaster@<hostname>
	SendAt       string `toml:"send_at"`      // "HH:MM" UTC; default "00:30"
}

// SendAtOffset is send_at as a duration after midnight UTC.
func (t TLSRPT) SendAtOffset() (time.Duration, error) {
	h, m, ok := strings.Cut(t.SendAt, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, fmt.Errorf("%q is not a UTC time like \"00:30\"", t.SendAt)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

// BounceIn is [bounce], the listener for asynchronous bounces.
type BounceIn struct {
	Listen string `toml:"listen"` // empty = disabled
	Domain string `toml:"domain"` // domain of VERP return paths
	// TrustedReporters are feedback-loop senders whose reports may act
	// without a VERP address: networks in CIDR form, and domains whose DKIM
	// signature on the report verifies. Default none.
	TrustedReporters []string `toml:"trusted_reporters"`
	MaxReportSize    int64    `toml:"max_report_size"`    // bytes; larger reports get 552; default 1 MiB
	ReportsPerMinute int      `toml:"reports_per_minute"` // per client /24 (IPv4) or /64 (IPv6), then 450; default 120
	UnparsedMaxBytes int64    `toml:"unparsed_max_bytes"` // kept unreadable reports, oldest dropped first; default 100 MiB
	UnparsedMaxFiles int      `toml:"unparsed_max_files"` // default 1000
	UnparsedMinFree  int64    `toml:"unparsed_min_free"`  // bytes the filesystem keeps free, else nothing is kept; default 1 GiB
}

// Trusted splits TrustedReporters into networks (v4-mapped IPv6 prefixes
// normalised to IPv4) and lowercased domains. Entries that are neither are
// left out: Validate reports them.
func (b *BounceIn) Trusted() (nets []netip.Prefix, domains []string) {
	for _, s := range b.TrustedReporters {
		if p, err := trustedNet(s); err == nil {
			nets = append(nets, p)
		} else if hostname(s) {
			domains = append(domains, strings.ToLower(strings.TrimSuffix(s, ".")))
		}
	}
	return nets, domains
}

// trustedNet parses a CIDR entry of trusted_reporters, normalised like
// every network of the configuration (ParsePrefix), and refuses one that
// covers every IPv4 or IPv6 address: trust must name the feedback loop,
// not the Internet.
func trustedNet(s string) (netip.Prefix, error) {
	p, err := ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if CoversAll([]netip.Prefix{p}) {
		fam := "IPv6"
		if p.Addr().Is4() {
			fam = "IPv4"
		}
		return p, fmt.Errorf("covers every %s address", fam)
	}
	return p, nil
}

// Cluster is [cluster].
type Cluster struct {
	Redis    string   `toml:"redis"`     // redis://host:port/db; empty = single node
	Node     string   `toml:"node"`      // default: os.Hostname()
	LeaseTTL Duration `toml:"lease_ttl"` // default 15s
}

// Default returns a Config holding every key with its default value.
func Default() *Config {
	host, err := os.Hostname()
	if err != nil || !hostname(host) {
		// Defaults must validate: a machine name that is not a DNS name
		// (say "build_box") cannot be an EHLO name either.
		host = "localhost"
	}
	return &Config{
		Server: Server{
			Hostname:        host,
			SpoolDir:        "./penstock-data",
			LogDir:          "./penstock-data/log",
			TLS:             mxrule.DefaultServerTLS,
			UseShippedRules: true,
		},
		SMTP: SMTP{
			Listen:          "127.0.0.1:2525",
			AllowedNetworks: []string{"127.0.0.0/8", "::1/128"},
			MaxMessageSize:  25 << 20,
			MaxRecipients:   1000,
			MaxConnections:  1000,

			MaxConnectionsPerClient:  50,
			ReservedConnectionsRatio: 0.1,
			IdleTimeout:              Duration(5 * time.Minute),
			StressIdleTimeout:        Duration(10 * time.Second),
			MaxErrors:                20,
		},
		HTTP: HTTP{Listen: "127.0.0.1:8025", MaxConnections: 512, IdleTimeout: Duration(time.Minute)},
		// An empty list rather than nil, so that the effective config's
		// nameservers = [] reads back equal.
		DNS: DNS{Nameservers: []string{}, Timeout: Duration(5 * time.Second),
			Canaries: []string{".", "gmail.com", "outlook.com", "yahoo.com"}},
		MTASTS: MTASTS{Enabled: true},
		DANE:   DANE{Enabled: true},
		Delivery: Delivery{
			Port: 25,
			Retry: []Duration{
				Duration(5 * time.Minute), Duration(10 * time.Minute), Duration(20 * time.Minute),
				Duration(40 * time.Minute), Duration(time.Hour),
			},
			Validity: Duration(5 * day),
			DSN:      true,

			TLSFailureMemory: Duration(time.Hour),
		},
		FlowControl: FlowControl{
			Enabled:           true,
			Window:            Duration(5 * time.Minute),
			MinAttempts:       20,
			ErrorRatio:        0.3,
			ConnectionsFactor: 0.5,
			RateFactor:        0.5,
			SuspendRatio:      0.6,
			SuspendFor:        Duration(5 * time.Minute),
			MaxSuspend:        Duration(2 * time.Hour),
			ProbeInterval:     Duration(time.Minute),
			RecoverAfter:      Duration(5 * time.Minute),
			StepInterval:      Duration(time.Minute),
			LocalSiteRatio:    0.5,
			LocalMinSites:     4,
		},
		Quarantine: Quarantine{
			MaxErrors:             5,
			SignificantErrorDelay: Duration(day),
			ResetAfter:            Duration(10 * day),
			CaseSensitiveLocal:    true,
		},
		Bounce: BounceIn{
			TrustedReporters: []string{},
			MaxReportSize:    1 << 20,
			ReportsPerMinute: 120,
			UnparsedMaxBytes: 100 << 20,
			UnparsedMaxFiles: 1000,
			UnparsedMinFree:  1 << 30,
		},
		Cluster:     Cluster{Node: host, LeaseTTL: Duration(15 * time.Second)},
		DKIMDefault: DKIMDefault{KeepExisting: true},
		TLSRPT:      TLSRPT{SendAt: "00:30"},
		Postgres:    Postgres{Schema: "penstock", BatchSize: 1000},
	}
}

// Load reads the file at path and returns the validated config, or every
// problem found, each naming path, line and key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data (named name in messages) strictly over Default(), fills
// per-entry defaults and validates. On error the returned Config is nil.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.File = name
	idx, probs, ok := decodeStrict(name, data, c)
	c.lines = idx
	if ok {
		c.ApplyDefaults()
		probs = append(probs, c.problems()...)
	}
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	return c, nil
}

// ApplyDefaults fills the per-entry defaults of the arrays of tables (and
// normalises MX patterns to lower case). Parse calls it; call it after
// building a Config in code. It is idempotent.
func (c *Config) ApplyDefaults() {
	for i := range c.Sources {
		if c.Sources[i].EHLO == "" {
			c.Sources[i].EHLO = c.Server.Hostname
		}
	}
	for i := range c.Pools {
		for j := range c.Pools[i].Sources {
			if c.Pools[i].Sources[j].Weight == 0 {
				c.Pools[i].Sources[j].Weight = 1
			}
		}
	}
	for i := range c.MXRules {
		c.MXRules[i].ApplyDefaults()
		if c.lines != nil && c.MXRules[i].Line == 0 {
			c.MXRules[i].Line = c.lines.lines[fmt.Sprintf("mx_rule[%d]", i)]
		}
	}
	for i := range c.Caps {
		for j, p := range c.Caps[i].MX {
			c.Caps[i].MX[j] = strings.ToLower(p)
		}
		if c.lines != nil && c.Caps[i].Line == 0 {
			c.Caps[i].Line = c.lines.lines[fmt.Sprintf("cap[%d]", i)]
		}
	}
	for i := range c.Tenants {
		if c.Tenants[i].Weight == 0 {
			c.Tenants[i].Weight = 1
		}
	}
	for i := range c.FlowControl.Patterns {
		if c.FlowControl.Patterns[i].Duration == 0 {
			c.FlowControl.Patterns[i].Duration = c.FlowControl.SuspendFor
		}
	}
	for i := range c.BounceRules {
		if c.BounceRules[i].Reason == "" {
			c.BounceRules[i].Reason = c.BounceRules[i].Name
		}
	}
	for i := range c.DKIM {
		c.DKIM[i].ApplyDefaults()
	}
	c.eventsOutDefaults()
}

// ApplyDefaults fills the rule's unset keys with the values in force,
// taken from the catch-all rule that package mxrule owns (scope "source",
// max_connections 10, max_messages_per_connection 100, the RFC 5321
// timeouts, tls "default"), so that the effective configuration shows them;
// and lower-cases its MX patterns, since host names compare
// case-insensitively. Negative values are left for Validate to refuse.
func (r *MXRule) ApplyDefaults() {
	def := mxrule.Default()
	if r.Scope == "" {
		r.Scope = def.Scope.String()
	}
	if r.TLS == "" {
		r.TLS = def.TLS
	}
	if r.MaxConnections == 0 {
		r.MaxConnections = def.MaxConnections
	}
	if r.MaxMessagesPerConnection == 0 {
		r.MaxMessagesPerConnection = def.MaxMessagesPerConnection
	}
	if r.ConnectTimeout == 0 {
		r.ConnectTimeout = Duration(def.ConnectTimeout)
	}
	if r.CommandTimeout == 0 {
		r.CommandTimeout = Duration(def.CommandTimeout)
	}
	if r.DataTimeout == 0 {
		r.DataTimeout = Duration(def.DataTimeout)
	}
	for i, p := range r.MX {
		r.MX[i] = strings.ToLower(p)
	}
}

// mxRuleFile is the shape of a file holding only [[mx_rule]] tables.
type mxRuleFile struct {
	MXRules []MXRule `toml:"mx_rule,omitempty"`
}

// DecodeMXRules decodes a file that holds only [[mx_rule]] tables (the
// provider rule set package mxrule embeds), as strictly as Parse, fills rule
// defaults and validates the rules on their own.
func DecodeMXRules(name string, data []byte) ([]MXRule, error) {
	var f mxRuleFile
	idx, probs, ok := decodeStrict(name, data, &f)
	if ok {
		for i := range f.MXRules {
			f.MXRules[i].ApplyDefaults()
			f.MXRules[i].Line = idx.lines[fmt.Sprintf("mx_rule[%d]", i)]
		}
		v := &validator{file: name, idx: idx}
		v.mxRules(f.MXRules)
		probs = append(probs, v.probs...)
	}
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	return f.MXRules, nil
}
