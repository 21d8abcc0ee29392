// Package tlspolicy holds what the queue and the policy packages (mtasts,
// dane) share about transport security to receivers: the Policy that
// applies to one recipient domain, the Provider that finds it, and the
// Reporter seam through which every TLS outcome is told (RFC 8460 result
// types), for TLSRPT reports.
//
// Algorithm. The queue asks its Provider for a domain's Policy when it
// resolves the domain's MX hosts. The Policy's Class goes into the site key,
// so that domains behind the same MX hosts but with different policies never
// share a connection that would violate one of them. At dial time the policy
// decides which MX hosts may be used (MTA-STS mx patterns, RFC 8461 §4.1)
// and how TLS is checked; after each attempt the queue calls Reporter.Report
// with the outcome. The package owns no I/O and no state.
package tlspolicy

import (
	"context"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/dns"
)

// Policy sources (RFC 8460 §4.3 policy-type, "no-policy-found" for none).
const (
	SourceNone = "none"
	SourceSTS  = "sts"
	SourceDANE = "dane"
)

// MTA-STS modes (RFC 8461 §3.2).
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
	ModeNone    = "none"
)

// RFC 8460 §4.3 result types reported through Reporter.
const (
	ResultSuccess              = "success"
	ResultSTARTTLSNotSupported = "starttls-not-supported"
	ResultCertHostMismatch     = "certificate-host-mismatch"
	ResultCertExpired          = "certificate-expired"
	ResultCertNotTrusted       = "certificate-not-trusted"
	ResultValidationFailure    = "validation-failure"
	ResultTLSAInvalid          = "tlsa-invalid"
	ResultDNSSECInvalid        = "dnssec-invalid"
	ResultSTSPolicyFetchError  = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid     = "sts-policy-invalid"
	ResultSTSWebPKIInvalid     = "sts-webpki-invalid"
)

// Policy is the transport security policy of one recipient domain.
type Policy struct {
	Domain string
	Source string // SourceNone, SourceSTS or SourceDANE
	// Mode is the MTA-STS mode (ModeEnforce, ModeTesting, ModeNone); for
	// DANE it is ModeEnforce; for no policy ModeNone.
	Mode string
	// MX is the MTA-STS policy's mx patterns ("mx.example.com",
	// "*.example.net").
	MX []string
	// ID is the policy id from the _mta-sts TXT record.
	ID string
	// Expires is when the cached policy's max_age runs out.
	Expires time.Time
	// TLSA is, for DANE, the usable TLSA records of each MX host that has
	// some; a host without an entry gets the MX rule's TLS.
	TLSA map[string][]dns.TLSA
	// TLSAError is, for DANE, the MX hosts whose TLSA lookup failed: they
	// must not be used (RFC 7672 §2.2).
	TLSAError map[string]string
	// Note says where the policy came from or why there is none ("cached
	// policy applies: policy host unreachable: ...").
	Note string
}

// Enforced reports whether TLS failures must defer delivery.
func (p Policy) Enforced() bool { return p.Mode == ModeEnforce && p.Source != SourceNone }

// Class is the policy's part of the site key: "none", "sts-testing",
// "sts-enforce:<mx patterns>" or "dane". Enforced MTA-STS carries its
// patterns, because which MX hosts a connection may reach depends on them.
func (p Policy) Class() string {
	switch {
	case p.Source == SourceDANE:
		return "dane"
	case p.Source == SourceSTS && p.Mode == ModeEnforce:
		return "sts-enforce:" + strings.Join(p.MX, ",")
	case p.Source == SourceSTS && p.Mode == ModeTesting:
		return "sts-testing:" + strings.Join(p.MX, ",")
	}
	return "none"
}

// MatchMX reports whether host (an MX host name) matches one of the
// policy's mx patterns: equal, or "*." followed by the host's parent domain
// (a wildcard matches exactly one leftmost label, RFC 8461 §4.1).
func (p Policy) MatchMX(host string) bool {
	return MatchMX(p.MX, host)
}

// MatchMX is Policy.MatchMX on a list of patterns.
func MatchMX(patterns []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range patterns {
		pat = strings.ToLower(pat)
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			_, parent, found := strings.Cut(host, ".")
			if found && parent == rest {
				return true
			}
			continue
		}
		if pat == host {
			return true
		}
	}
	return false
}

// Provider finds the policy of a recipient domain. It never fails: a policy
// it cannot find is a Policy with Source SourceNone and a Note.
type Provider interface {
	Policy(ctx context.Context, domain string) Policy
}

// Outcome is one TLS negotiation's result, for TLSRPT (RFC 8460 §4.3).
type Outcome struct {
	Domain     string // the policy domain (the recipient domain)
	PolicyType string // SourceSTS, SourceDANE, or SourceNone ("no-policy-found")
	Result     string // ResultSuccess or a failure result type
	MXHost     string // receiving MX host name
	MXIP       string // its address, when known
	Detail     string // human-readable failure reason
	Success    bool
}

// Reporter receives every TLS outcome. Report must not block for long.
type Reporter interface {
	Report(Outcome)
}

// Nop is the default Reporter: it drops every outcome.
type Nop struct{}

// Report implements Reporter.
func (Nop) Report(Outcome) {}

// Tee is a Reporter that hands every outcome to each of its reporters in
// turn; nil ones are skipped.
type Tee []Reporter

// Report implements Reporter.
func (t Tee) Report(o Outcome) {
	for _, r := range t {
		if r != nil {
			r.Report(o)
		}
	}
}
