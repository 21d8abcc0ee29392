// Package tlsstatus keeps what the dashboard and the API show about
// transport security to receivers: the policy last applied to each
// recipient domain (DANE, MTA-STS, or the MX rule's tls) and the last TLS
// outcome with each MX host (version, cipher, whether the certificate
// verified, the policy, the failure).
//
// Algorithm. The queue writes one entry per domain and per MX host at
// every connection, replacing the previous one. The tables are bounded:
// each keeps its entries in a list, most recently recorded first, so when
// one is full the entry recorded longest ago is dropped in constant time
// (a campaign to 100,000 domains overflows the table at every new domain
// after the first 10,000). Readers get copies sorted by name. The Board
// holds no I/O and is safe for concurrent use.
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
	mu      sync.Mutex
	domains *table[DomainPolicy]
	hosts   *table[HostOutcome]
}

// New returns an empty Board of at most max entries per table (0:
// DefaultMax).
func New(max int) *Board {
	if max <= 0 {
		max = DefaultMax
	}
	return &Board{domains: newTable[DomainPolicy](max), hosts: newTable[HostOutcome](max)}
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
	b.domains.put(d.Domain, d)
}

// SetHost records h, replacing what was known of h.Host.
func (b *Board) SetHost(h HostOutcome) {
	if b == nil {
		return
	}
	h.Host = strings.ToLower(strings.TrimSuffix(h.Host, "."))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hosts.put(h.Host, h)
}

// table is a map of at most max entries that drops the one recorded
// longest ago to make room: the entries form a ring through a sentinel,
// most recently recorded next to it on one side, least on the other.
type table[V any] struct {
	max   int
	byKey map[string]*entry[V]
	ring  entry[V] // sentinel: ring.next is the newest, ring.prev the oldest
}

type entry[V any] struct {
	key        string
	v          V
	prev, next *entry[V]
}

func newTable[V any](max int) *table[V] {
	t := &table[V]{max: max, byKey: map[string]*entry[V]{}}
	t.ring.prev, t.ring.next = &t.ring, &t.ring
	return t
}

// put stores v under k as the newest entry, first dropping the oldest
// when the table is full and k is new.
func (t *table[V]) put(k string, v V) {
	e := t.byKey[k]
	switch {
	case e != nil:
		e.unlink()
	case len(t.byKey) >= t.max:
		e = t.ring.prev
		e.unlink()
		delete(t.byKey, e.key)
		e.key = k // reused for the new key
		t.byKey[k] = e
	default:
		e = &entry[V]{key: k}
		t.byKey[k] = e
	}
	e.v = v
	e.prev, e.next = &t.ring, t.ring.next
	t.ring.next.prev = e
	t.ring.next = e
}

func (e *entry[V]) unlink() {
	e.prev.next = e.next
	e.next.prev = e.prev
}

// values returns the entries' values, in no order.
func (t *table[V]) values() []V {
	out := make([]V, 0, len(t.byKey))
	for _, e := range t.byKey {
		out = append(out, e.v)
	}
	return out
}

// Domains returns the domains' policies, sorted by domain.
func (b *Board) Domains() []DomainPolicy {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	out := b.domains.values()
	b.mu.Unlock()
	for i := range out {
		out[i].MX = slices.Clone(out[i].MX)
	}
	slices.SortFunc(out, func(x, y DomainPolicy) int { return strings.Compare(x.Domain, y.Domain) })
	return out
}

// Hosts returns the MX hosts' last outcomes, sorted by host.
func (b *Board) Hosts() []HostOutcome {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	out := b.hosts.values()
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y HostOutcome) int { return strings.Compare(x.Host, y.Host) })
	return out
}
