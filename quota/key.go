package quota

import (
	"fmt"
	"strings"
)

// Scope is what a quota counts over (an MX rule's scope).
type Scope string

const (
	ScopeRule   Scope = "rule" // everything matching the rule, all sources and nodes
	ScopeSource Scope = "src"  // one source, across the site's MX addresses
	ScopePath   Scope = "path" // one source × one MX address
	ScopeCap    Scope = "cap"  // a [[cap]]: everything it selects, across rules
)

// Key names one quota: what it counts (connections or the message rate),
// the scope, the MX rule and the scope's parts. Its string form is the key
// under which a Store counts, and, after a prefix, the Redis key:
//
//	conn|rule|<rule>
//	conn|src|<rule>|<site>|<source IP>
//	conn|path|<rule>|<source IP>|<MX IP, or "none">
//	conn|cap|<cap name>
//
// and "rate|..." for the message rate of the same scope, "open|..." for its
// connection-open rate and "day|..." for its daily quota. A rule name may
// hold '|' (the other parts cannot: a site is MX host names joined by ',',
// the rest are addresses), so ParseKey reads the fixed parts from the ends.
// The zero Key is no key.
type Key struct {
	kind   Kind
	scope  Scope
	rule   string
	site   string // ScopeSource
	source string // ScopeSource, ScopePath
	mx     string // ScopePath
}

// RuleKey is the connection key of a rule with scope "rule".
func RuleKey(rule string) Key { return Key{kind: KindConn, scope: ScopeRule, rule: rule} }

// SourceKey is the connection key of a rule with scope "source" for one
// site (its MX host set, dns.SiteKey) and one source IP ("" for the address
// the kernel chooses).
func SourceKey(rule, site, source string) Key {
	return Key{kind: KindConn, scope: ScopeSource, rule: rule, site: site, source: source}
}

// PathKey is the connection key of a rule with scope "path" for one source
// IP and one MX IP ("none" when no address resolved).
func PathKey(rule, source, mx string) Key {
	return Key{kind: KindConn, scope: ScopePath, rule: rule, source: source, mx: mx}
}

// CapKey is the connection key of a [[cap]]: one count for all it selects.
// Its name is in Rule (a cap is not a rule: Governs never holds for it).
func CapKey(name string) Key { return Key{kind: KindConn, scope: ScopeCap, rule: name} }

// Rate is the message-rate key of the same scope.
func (k Key) Rate() Key { k.kind = KindRate; return k }

// Opens is the connection-open-rate key of the same scope.
func (k Key) Opens() Key { k.kind = KindOpen; return k }

// Day is the daily-quota key of the same scope.
func (k Key) Day() Key { k.kind = KindDay; return k }

func (k Key) Kind() Kind     { return k.kind }
func (k Key) Scope() Scope   { return k.scope }
func (k Key) Rule() string   { return k.rule }
func (k Key) Site() string   { return k.site }   // ScopeSource only
func (k Key) Source() string { return k.source } // ScopeSource and ScopePath
func (k Key) MX() string     { return k.mx }     // ScopePath only
func (k Key) IsZero() bool   { return k == Key{} }

func (k Key) String() string {
	switch k.scope {
	case ScopeRule:
		return string(k.kind) + "|rule|" + k.rule
	case ScopeCap:
		return string(k.kind) + "|cap|" + k.rule
	case ScopeSource:
		return string(k.kind) + "|src|" + k.rule + "|" + k.site + "|" + k.source
	case ScopePath:
		return string(k.kind) + "|path|" + k.rule + "|" + k.source + "|" + k.mx
	}
	return ""
}

// Governs reports whether the quota belongs to rule as applied to site:
// the rule's own key, its path keys, or its source keys for that site.
func (k Key) Governs(rule, site string) bool {
	return k.scope != ScopeCap && k.rule == rule && (k.scope != ScopeSource || k.site == site)
}

// ParseKey reads a key's string form back.
func ParseKey(s string) (Key, error) {
	bad := func() (Key, error) { return Key{}, fmt.Errorf("quota: %q is not a quota key", s) }
	kind, rest, ok := strings.Cut(s, "|")
	if !ok || (Kind(kind) != KindConn && Kind(kind) != KindRate && Kind(kind) != KindOpen && Kind(kind) != KindDay) {
		return bad()
	}
	scope, rest, ok := strings.Cut(rest, "|")
	if !ok || rest == "" {
		return bad()
	}
	k := Key{kind: Kind(kind), scope: Scope(scope)}
	// last2 splits off the two fixed parts at the end.
	last2 := func(s string) (string, string, string, bool) {
		i := strings.LastIndexByte(s, '|')
		if i < 0 {
			return "", "", "", false
		}
		j := strings.LastIndexByte(s[:i], '|')
		if j <= 0 {
			return "", "", "", false
		}
		return s[:j], s[j+1 : i], s[i+1:], true
	}
	switch k.scope {
	case ScopeRule, ScopeCap:
		k.rule = rest
	case ScopeSource:
		if k.rule, k.site, k.source, ok = last2(rest); !ok {
			return bad()
		}
	case ScopePath:
		if k.rule, k.source, k.mx, ok = last2(rest); !ok {
			return bad()
		}
	default:
		return bad()
	}
	return k, nil
}

// LeasePattern is the Redis key pattern of every connection-lease set that
// a Redis Store with this prefix keeps (for SCAN).
func LeasePattern(prefix string) string { return prefix + "lease:*" }

// LeaseKey reads the quota key back from the Redis key of a lease set.
func LeaseKey(prefix, redisKey string) (Key, error) {
	s, ok := strings.CutPrefix(redisKey, prefix+"lease:")
	if !ok {
		return Key{}, fmt.Errorf("quota: %q is not a lease set under %q", redisKey, prefix)
	}
	return ParseKey(s)
}

// LeaseNode is the node that holds a lease, from the lease set's member.
func LeaseNode(member string) string {
	if j := strings.LastIndex(member, "#"); j >= 0 {
		return member[:j]
	}
	return member
}

// Revocable is a Lease that can lose its validity (a cluster lease Redis
// could not renew within its TTL may belong to another node now): its
// holder stops using the connection at the next message boundary.
type Revocable interface {
	Lease
	Valid() bool
}

// Degrader is a Store that can fall back to a local share of its quotas
// (the Redis store when Redis is unreachable).
type Degrader interface {
	Degraded() bool
}
