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
	"container/list"
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
// longest ago to make room: a map of key to list element, the list most
// recently recorded first (container/list, as the resolver's cache keeps
// its LRU). A dropped entry's element and entry are reused for the new key.
type table[V any] struct {
	max   int
	byKey map[string]*list.Element // of *entry[V]
	order *list.List               // most recently recorded first
}

type entry[V any] struct {
	key string
	v   V
}

func newTable[V any](max int) *table[V] {
	return &table[V]{max: max, byKey: map[string]*list.Element{}, order: list.New()}
}

// put stores v under k as the newest entry, first dropping the oldest
// when the table is full and k is new.
func (t *table[V]) put(k string, v V) {
	el := t.byKey[k]
	switch {
	case el != nil:
	case len(t.byKey) >= t.max:
		el = t.order.Back()
		e := el.Value.(*entry[V])
		delete(t.byKey, e.key)
		e.key = k
		t.byKey[k] = el
	default:
		el = t.order.PushFront(&entry[V]{key: k})
		t.byKey[k] = el
	}
	el.Value.(*entry[V]).v = v
	t.order.MoveToFront(el)
}

// values returns the entries' values, in no order.
func (t *table[V]) values() []V {
	out := make([]V, 0, len(t.byKey))
	for _, el := range t.byKey {
		out = append(out, el.Value.(*entry[V]).v)
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
