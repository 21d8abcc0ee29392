package dns

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // lowercased ASCII, no trailing dot
	Pref uint16
}

// MXResult is a domain's MX hosts in the order to try them.
type MXResult struct {
	Hosts []MX
	// Implicit is true when the domain has no MX records and Hosts is the
	// domain itself (RFC 5321 §5.1).
	Implicit bool
	// TTL is how long the answer stays valid: the smallest TTL of the records
	// it was built from.
	TTL time.Duration
	// AD is the reply's Authenticated Data bit (RFC 4035 §3.2.3): the
	// resolver says it validated the answer with DNSSEC. It means something
	// only from a validating resolver reached over a trusted path ([dns]
	// dnssec); callers decide whether to trust it.
	AD bool
}

// Resolver looks up where mail for a domain goes.
type Resolver interface {
	// LookupMX returns domain's MX hosts sorted by preference, equal
	// preferences shuffled. Errors are *Error.
	LookupMX(ctx context.Context, domain string) (MXResult, error)
	// LookupIP returns host's IPv4 addresses, then its IPv6 addresses.
	// Errors are *Error.
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	// LookupTXT returns name's TXT records, each record's strings joined
	// (RFC 7208 §3.3, RFC 6376 §3.6.2.2). Names may hold underscores
	// ("sel._domainkey.example.com"). A name without TXT records is an
	// *Error of Kind NoHost; other errors are *Error too.
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Kind classifies a lookup failure.
type Kind int

const (
	// Temporary: SERVFAIL, REFUSED, timeout, network error, a malformed or
	// hostile reply. Try again later. The zero Kind, so an unclassified
	// failure is never taken for a permanent one.
	Temporary Kind = iota
	// NXDomain: the name does not exist (RFC 1035 §4.1.1 rcode 3).
	NXDomain
	// NullMX: the domain publishes a null MX and accepts no mail (RFC 7505).
	NullMX
	// NoHost: the domain exists but has no MX and no A/AAAA (RFC 5321 §5.1),
	// or a host has no address.
	NoHost
	// Invalid: the name is not a valid domain name (RFC 1035 §2.3.4); no
	// query was sent.
	Invalid
)

func (k Kind) String() string {
	switch k {
	case Temporary:
		return "temporary"
	case NXDomain:
		return "nxdomain"
	case NullMX:
		return "null-mx"
	case NoHost:
		return "no-host"
	case Invalid:
		return "invalid"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failed lookup.
type Error struct {
	Domain string // the name looked up, as given
	Kind   Kind
	Rcode  int   // the reply's rcode (RFC 1035 §4.1.1), or -1 when no usable reply came
	Err    error // the cause, for Temporary errors; may be nil

	qtype string        // "MX", "A/AAAA"
	ttl   time.Duration // how long a permanent error may be cached (RFC 2308 §5); 0 = unknown
}

// Permanent reports whether retrying cannot help: the mail should bounce.
func (e *Error) Permanent() bool {
	switch e.Kind {
	case NXDomain, NullMX, NoHost, Invalid:
		return true
	}
	return false
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	switch e.Kind {
	case NXDomain:
		return fmt.Sprintf("dns: %q does not exist (NXDOMAIN)", e.Domain)
	case NullMX:
		return fmt.Sprintf("dns: %q publishes a null MX (RFC 7505): it accepts no mail", e.Domain)
	case NoHost:
		if e.qtype == "MX" {
			return fmt.Sprintf("dns: %q has no MX and no A/AAAA records: no host accepts its mail", e.Domain)
		}
		if e.qtype == "TXT" {
			return fmt.Sprintf("dns: %q has no TXT records", e.Domain)
		}
		return fmt.Sprintf("dns: host %q has no A/AAAA records", e.Domain)
	case Invalid:
		return fmt.Sprintf("dns: %q is not a valid domain name: %v", e.Domain, e.Err)
	}
	if e.qtype == "TXT" || e.qtype == "TLSA" {
		// Nobody retries a TXT or TLSA lookup on its own: say only what failed.
		return fmt.Sprintf("dns: %s lookup for %q failed: %v", e.qtype, e.Domain, e.Err)
	}
	what := e.qtype
	if what == "" {
		what = "DNS"
	}
	return fmt.Sprintf("dns: %s lookup for %q failed, will retry: %v", what, e.Domain, e.Err)
}

// SiteKey names the site served by hosts: their host names lowercased,
// without trailing dot, sorted, deduplicated and joined with ",". Domains with
// the same MX hosts get the same key, whatever the preferences.
func SiteKey(hosts []MX) string {
	names := make([]string, 0, len(hosts))
	for _, h := range hosts {
		n := strings.TrimSuffix(strings.ToLower(h.Host), ".")
		if n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return strings.Join(slices.Compact(names), ",")
}

// sortMX orders hosts by preference and shuffles each run of equal preference:
// RFC 5321 §5.1 says senders must try lower preferences first and should
// spread load randomly among equal ones.
func sortMX(hosts []MX) {
	slices.SortStableFunc(hosts, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	shuffleEqualPrefs(hosts)
}

// shuffleEqualPrefs shuffles each run of equal preference in hosts, which is
// already sorted by preference.
func shuffleEqualPrefs(hosts []MX) {
	for i := 0; i < len(hosts); {
		j := i + 1
		for j < len(hosts) && hosts[j].Pref == hosts[i].Pref {
			j++
		}
		run := hosts[i:j]
		rand.Shuffle(len(run), func(a, b int) { run[a], run[b] = run[b], run[a] })
		i = j
	}
}
