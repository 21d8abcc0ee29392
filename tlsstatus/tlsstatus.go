// Package tlsstatus keeps what the dashboard and the API show about
// transport security to receivers: the policy last applied to each
// recipient domain (DANE, MTA-STS, or the MX rule's tls) and the last TLS
// outcome with each MX host (version, cipher, whether the certificate
// verified, the policy, the failure).
//
// Algorithm. The queue writes one entry per domain and per MX host at
// every connection, replacing the previous one. The tables are bounded:
// when one is full, the entry seen longest ago is dropped (a scan, rare
// and over at most Max entries). Readers get copies sorted by name. The
// Board holds no I/O and is safe for concurrent use.
package tlsstatus

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Policy sources shown besides tlspolicy's: the MX rule's tls applies.
const SourceRule = "rule"

// DomainPolicy is the transport security policy last applied to a recipient
// domain.
type DomainPolicy struct {
	Domain string `json:"domain"`
	// Source is "dane", "sts" (MTA-STS) or "rule" (no policy: the matched
	// MX rule's tls).
	Source string `json:"source"`
	// Mode is the policy's mode (enforce, testing, none) or, for "rule",
	// the rule's tls (disabled, opportunistic, required, verify).
	Mode string   `json:"mode"`
	MX   []string `json:"mx,omitempty"` // MTA-STS mx patterns
	// Expires is when the policy must be looked up again: the MTA-STS
	// max_age, or the TLSA answers' TTL; zero for "rule".
	Expires time.Time `json:"expires,omitzero"`
	Note    string    `json:"note,omitempty"`
	Seen    time.Time `json:"seen"` // when a connection last applied it
}

// HostOutcome is the last TLS outcome of a connection to an MX host.
type HostOutcome struct {
	Host   string    `json:"host"`
	IP     string    `json:"ip,omitempty"`
	Domain string    `json:"domain"` // the recipient domain the connection was for
	Time   time.Time `json:"time"`
	TLS    bool      `json:"tls"` // the session was encrypted
	// Version and Cipher are the negotiated TLS version ("TLS1.3") and
	// cipher suite, when TLS.
	Version  string `json:"version,omitempty"`
	Cipher   string `json:"cipher,omitempty"`
	Verified bool   `json:"verified"` // the certificate verified (WebPKI for the MX name, or DANE)
	Policy   string `json:"policy"`   // the policy in force: "dane enforce", "sts testing", "rule opportunistic"
	// Failure is why TLS failed or was not used ("" when it succeeded).
	Failure string `json:"failure,omitempty"`
}

// DefaultMax bounds each table when New is given 0.
const DefaultMax = 10000

// Board is the two tables.
type Board struct {
	max     int
	mu      sync.Mutex
	domains map[string]DomainPolicy
	hosts   map[string]HostOutcome
}

// New returns an empty Board of at most max entries per table (0:
// DefaultMax).
func New(max int) *Board {
	if max <= 0 {
		max = DefaultMax
	}
	return &Board{max: max, domains: map[string]DomainPolicy{}, hosts: map[string]HostOutcome{}}
}

// SetDomain records d, replacing what was known of d.Domain.
func (b *Board) SetDomain(d DomainPolicy) {
	if b == nil {
		return
	}
	d.Domain = strings.ToLower(d.Domain)
	d.MX = slices.Clone(d.MX)
	b.mu.Lock()
	defer b.mu.Unlock()
	put(b.domains, d.Domain, d, b.max, func(d DomainPolicy) time.Time { return d.Seen })
}

// SetHost records h, replacing what was known of h.Host.
func (b *Board) SetHost(h HostOutcome) {
	if b == nil {
		return
	}
	h.Host = strings.ToLower(strings.TrimSuffix(h.Host, "."))
	b.mu.Lock()
	defer b.mu.Unlock()
	put(b.hosts, h.Host, h, b.max, func(h HostOutcome) time.Time { return h.Time })
}

// put stores v under k, first dropping the oldest entry when the table is
// full and k is new.
func put[V any](m map[string]V, k string, v V, max int, at func(V) time.Time) {
	if _, ok := m[k]; !ok && len(m) >= max {
		oldest, first := "", true
		var t time.Time
		for key, x := range m {
			if first || at(x).Before(t) {
				oldest, t, first = key, at(x), false
			}
		}
		delete(m, oldest)
	}
	m[k] = v
}

// Domains returns the domains' policies, sorted by domain.
func (b *Board) Domains() []DomainPolicy {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	out := make([]DomainPolicy, 0, len(b.domains))
	for _, d := range b.domains {
		d.MX = slices.Clone(d.MX)
		out = append(out, d)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y DomainPolicy) int { return strings.Compare(x.Domain, y.Domain) })
	return out
}

// Hosts returns the MX hosts' last outcomes, sorted by host.
func (b *Board) Hosts() []HostOutcome {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	out := make([]HostOutcome, 0, len(b.hosts))
	for _, h := range b.hosts {
		out = append(out, h)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y HostOutcome) int { return strings.Compare(x.Host, y.Host) })
	return out
}
