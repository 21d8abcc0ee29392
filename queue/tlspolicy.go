package queue

// This file applies a recipient domain's transport security policy
// (package tlspolicy: MTA-STS, DANE) when a session connects: which MX
// hosts may be used, how TLS is checked, and what each outcome reports.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/dane"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/tlspolicy"
	"github.com/penstock-mta/penstock/tlsstatus"
)

// StatusMTASTS is the status of recipients waiting because their domain's
// enforced MTA-STS policy could not be met (no MX host matches the policy,
// STARTTLS missing, a certificate that does not verify).
const StatusMTASTS = "Messages queued (MTA-STS policy)"

// StatusDANE is the status of recipients waiting because their domain's
// DANE policy (RFC 7672) could not be met: a certificate that matches no
// TLSA record, STARTTLS missing on a host with TLSA records, or TLSA
// lookups that failed (bogus, SERVFAIL) for every MX host.
const StatusDANE = "Messages queued (DANE policy)"

// PolicyView is a domain's transport security policy, for explain.
type PolicyView struct {
	Source  string    `json:"source"` // sts, dane or none
	Mode    string    `json:"mode"`
	MX      []string  `json:"mx,omitempty"`
	ID      string    `json:"id,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
	Note    string    `json:"note,omitempty"`
}

func viewOf(p tlspolicy.Policy) *PolicyView {
	if p.Source == "" {
		return nil
	}
	return &PolicyView{Source: p.Source, Mode: p.Mode, MX: p.MX, ID: p.ID, Expires: p.Expires, Note: p.Note}
}

// policyError is a delivery attempt refused by an enforced policy: the
// recipients wait with StatusMTASTS or StatusDANE and the reason.
type policyError struct {
	source string // tlspolicy.SourceSTS or SourceDANE
	result string // RFC 8460 result type
	err    error
}

func (e *policyError) Error() string {
	if e.source == tlspolicy.SourceDANE {
		return "DANE: " + e.err.Error()
	}
	return "MTA-STS policy: " + e.err.Error()
}
func (e *policyError) Unwrap() error { return e.err }

// status is the waiting recipients' status text.
func (e *policyError) status() string {
	if e.source == tlspolicy.SourceDANE {
		return StatusDANE
	}
	return StatusMTASTS
}

// policyOf is the site's policy; the zero Policy means none.
func (s *site) policyOf() tlspolicy.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.policy
}

// policyTargets drops the MX hosts an enforced MTA-STS policy does not list
// (RFC 8461 §4.1); in testing mode the mismatch is only reported.
func (s *site) policyTargets(pol tlspolicy.Policy, domain string, targets []target) ([]target, error) {
	if pol.Source == tlspolicy.SourceDANE {
		return s.daneTargets(pol, domain, targets)
	}
	if pol.Source != tlspolicy.SourceSTS || pol.Mode == tlspolicy.ModeNone {
		return targets, nil
	}
	var kept []target
	var refused []string
	for _, t := range targets {
		if pol.MatchMX(t.host) {
			kept = append(kept, t)
			continue
		}
		if len(refused) == 0 || refused[len(refused)-1] != t.host {
			refused = append(refused, t.host)
		}
	}
	for _, h := range refused {
		s.q.reportTLS(tlspolicy.Outcome{Domain: domain, PolicyType: tlspolicy.SourceSTS, Result: tlspolicy.ResultValidationFailure,
			MXHost: h, Detail: fmt.Sprintf("MX host %s does not match the policy's mx patterns %s", h, strings.Join(pol.MX, ", "))})
	}
	if pol.Mode != tlspolicy.ModeEnforce {
		return targets, nil
	}
	if len(kept) == 0 {
		return nil, &policyError{source: tlspolicy.SourceSTS, result: tlspolicy.ResultValidationFailure,
			err: fmt.Errorf("no MX host of %s matches the policy's mx patterns %s (MX: %s)", domain, strings.Join(pol.MX, ", "), strings.Join(refused, ", "))}
	}
	return kept, nil
}

// policyOptions sets the TLS mode and checks of a connection to t. Enforced
// MTA-STS requires STARTTLS and a certificate valid for the MX host name
// (RFC 8461 §4.2), whatever the MX rule says; testing mode delivers as the
// rule says and only reports what verification would have found.
// The returned flag is set when a testing-mode check failed (and was
// reported), so that the connection is not also reported a success.
func (s *site) policyOptions(pol tlspolicy.Policy, domain string, t target, opts *smtpclient.Options) *bool {
	failed := new(bool)
	if recs := pol.TLSA[t.host]; pol.Source == tlspolicy.SourceDANE && len(recs) > 0 {
		// RFC 7672 §2.2: TLS is mandatory and the certificate is checked
		// against the TLSA records only (not the WebPKI): InsecureSkipVerify
		// with a VerifyConnection that does the DANE check.
		opts.TLS = smtpclient.TLSRequired
		opts.ServerName = t.host
		opts.VerifyAuthenticates = true
		now := s.q.now
		opts.TLSConfig = &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
			return dane.Verify(recs, cs, t.host, now())
		}}
		return failed
	}
	if pol.Source != tlspolicy.SourceSTS {
		return failed
	}
	switch pol.Mode {
	case tlspolicy.ModeEnforce:
		opts.TLS = smtpclient.TLSVerify
		opts.ServerName = t.host
	case tlspolicy.ModeTesting:
		// A rule that disables TLS (a receiver whose TLS is broken) or
		// already verifies is left alone: testing mode only observes.
		if opts.TLS == smtpclient.TLSDisabled || opts.TLS == smtpclient.TLSVerify {
			return failed
		}
		q := s.q
		opts.TLSConfig = &tls.Config{VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyPKIX(cs, t.host, q.now()); err != nil {
				*failed = true
				q.reportTLS(tlspolicy.Outcome{Domain: domain, PolicyType: tlspolicy.SourceSTS, Result: resultOf(err),
					MXHost: t.host, MXIP: t.ip.String(), Detail: err.Error()})
			}
			// Testing mode: report, never refuse (RFC 8461 §5).
			return nil
		}}
	}
	return failed
}

// verifyPKIX checks the peer's chain against the system roots for host.
func verifyPKIX(cs tls.ConnectionState, host string, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter, CurrentTime: now})
	return err
}

// resultOf names a TLS failure with an RFC 8460 §4.3 result type.
func resultOf(err error) string {
	if errors.Is(err, dane.ErrNoMatch) {
		return tlspolicy.ResultValidationFailure
	}
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	var ue x509.UnknownAuthorityError
	switch {
	case errors.Is(err, smtpclient.ErrNoSTARTTLS):
		return tlspolicy.ResultSTARTTLSNotSupported
	case errors.As(err, &he):
		return tlspolicy.ResultCertHostMismatch
	case errors.As(err, &ie) && ie.Reason == x509.Expired:
		return tlspolicy.ResultCertExpired
	case errors.As(err, &ue):
		return tlspolicy.ResultCertNotTrusted
	}
	return tlspolicy.ResultValidationFailure
}

// policyDial reports a connection's TLS outcome and, under an enforced
// policy, turns a TLS failure into a policyError.
func (s *site) policyDial(pol tlspolicy.Policy, domain string, t target, c *smtpclient.Client, err error, failed bool) error {
	ptype := pol.Source
	if ptype == "" {
		ptype = tlspolicy.SourceNone
	}
	o := tlspolicy.Outcome{Domain: domain, PolicyType: ptype, MXHost: t.host, MXIP: t.ip.String()}
	if err == nil {
		switch {
		case failed:
		case c.TLS():
			o.Result, o.Success = tlspolicy.ResultSuccess, true
			s.q.reportTLS(o)
		case c.TLSError() != nil:
			o.Result, o.Detail = resultOf(c.TLSError()), c.TLSError().Error()
			s.q.reportTLS(o)
		default:
			// In clear text: the server offered no STARTTLS (a failure to
			// report, with or without a policy), or we did not try it.
			if _, offered := c.Extension("STARTTLS"); !offered {
				o.Result, o.Detail = tlspolicy.ResultSTARTTLSNotSupported, "STARTTLS not offered"
				s.q.reportTLS(o)
			}
		}
		return nil
	}
	var se *smtpclient.Error
	if !errors.As(err, &se) || (se.Command != "STARTTLS" && se.Command != "TLS") {
		return err
	}
	o.Result, o.Detail = resultOf(err), err.Error()
	s.q.reportTLS(o)
	if pol.Enforced() && (pol.Source == tlspolicy.SourceSTS || len(pol.TLSA[t.host]) > 0) {
		return &policyError{source: pol.Source, result: o.Result, err: err}
	}
	return err
}

func (q *Queue) reportTLS(o tlspolicy.Outcome) {
	if q.deps.TLSReport != nil {
		q.deps.TLSReport.Report(o)
	}
}

// policyNote is the policy's note in the delivery log's detail.
func policyNote(p tlspolicy.Policy) string {
	if p.Source == "" || p.Source == tlspolicy.SourceNone {
		return ""
	}
	return "tls policy " + p.Source + " " + p.Mode
}

// policyName is the policy an attempt was made under, for the delivery
// log: the domain's ("dane enforce", "sts testing"), else the MX rule's
// tls ("rule opportunistic"); "" when neither is known.
func policyName(p tlspolicy.Policy, ruleTLS string) string {
	if p.Source == tlspolicy.SourceDANE || p.Source == tlspolicy.SourceSTS {
		return p.Source + " " + p.Mode
	}
	if ruleTLS == "" {
		return ""
	}
	return tlsstatus.SourceRule + " " + ruleTLS
}

// setPolicyErr records why the site's last attempt failed its enforced
// policy (shown in the recipients' status), or clears it.
func (s *site) setPolicyErr(err error) {
	var pe *policyError
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.policyErr = nil
	case errors.As(err, &pe):
		s.policyErr = pe
	}
}

// daneTargets drops the MX hosts whose TLSA lookup failed: RFC 7672 §2.2
// says such a host must not be used, rather than used without DANE.
func (s *site) daneTargets(pol tlspolicy.Policy, domain string, targets []target) ([]target, error) {
	var kept []target
	var why []string
	for _, t := range targets {
		if e, bad := pol.TLSAError[t.host]; bad {
			why = append(why, e)
			continue
		}
		kept = append(kept, t)
	}
	if len(kept) == 0 {
		s.q.reportTLS(tlspolicy.Outcome{Domain: domain, PolicyType: tlspolicy.SourceDANE, Result: tlspolicy.ResultDNSSECInvalid,
			Detail: strings.Join(why, "; ")})
		return nil, &policyError{source: tlspolicy.SourceDANE, result: tlspolicy.ResultDNSSECInvalid,
			err: fmt.Errorf("the TLSA lookups of every MX host of %s failed: %s", domain, strings.Join(why, "; "))}
	}
	return kept, nil
}

// verifiedBy names the policy that authenticated the connection c to t,
// for REQUIRETLS (RFC 8689 §4.2.1): SourceDANE when t's TLSA records
// matched; SourceSTS when the domain's MTA-STS policy lists t and the
// certificate verified for t's name (a testing-mode policy counts as
// enforced here, RFC 8689 §4.2.1 step 2); "" otherwise. failed is
// policyOptions' flag: a testing-mode check that failed.
func verifiedBy(pol tlspolicy.Policy, t target, c *smtpclient.Client, failed bool) string {
	if c == nil || !c.Verified() {
		return ""
	}
	switch {
	case pol.Source == tlspolicy.SourceDANE && len(pol.TLSA[t.host]) > 0:
		return tlspolicy.SourceDANE
	case pol.Source == tlspolicy.SourceSTS && (pol.Mode == tlspolicy.ModeEnforce || pol.Mode == tlspolicy.ModeTesting) &&
		pol.MatchMX(t.host) && !failed:
		return tlspolicy.SourceSTS
	}
	return ""
}

// requireTLSRefused is the permanent failure of a REQUIRETLS message over
// a connection no policy authenticated: it bounces with 5.7.10.
func requireTLSRefused(domain, host string) error {
	return &smtpclient.Error{Command: "MAIL", Local: true, Permanent: true,
		Err: fmt.Errorf("%w: no DANE or MTA-STS policy of %s authenticated %s", smtpclient.ErrRequireTLS, domain, host)}
}

// recordTLS tells Deps.TLSStatus the policy applied to domain (the MX
// rule's mode when none) and, when the connection to t got as far as TLS,
// its outcome; a connection that failed before (refused, timed out) says
// nothing about TLS and leaves the host's last outcome alone.
func (s *site) recordTLS(pol tlspolicy.Policy, domain string, mode smtpclient.TLSMode, t target, c *smtpclient.Client, err error) {
	b := s.q.deps.TLSStatus
	if b == nil {
		return
	}
	now := s.q.now()
	d := tlsstatus.DomainPolicy{Domain: domain, Source: pol.Source, Mode: pol.Mode, MX: pol.MX, Expires: pol.Expires, Note: pol.Note, Seen: now}
	if pol.Source == "" || pol.Source == tlspolicy.SourceNone {
		d = tlsstatus.DomainPolicy{Domain: domain, Source: tlsstatus.SourceRule, Mode: mode.String(), Note: pol.Note, Seen: now}
	}
	b.SetDomain(d)
	if t.host == "" {
		return
	}
	h := tlsstatus.HostOutcome{Host: t.host, Domain: domain, Time: now, Policy: d.Source + " " + d.Mode}
	if t.ip.IsValid() {
		h.IP = t.ip.String()
	}
	var se *smtpclient.Error
	var pe *policyError
	switch {
	case errors.As(err, &pe) || (errors.As(err, &se) && (se.Command == "STARTTLS" || se.Command == "TLS")):
		h.Failure = err.Error()
	case err != nil:
		return
	case c.TLS():
		cs := c.TLSConnectionState()
		h.TLS, h.Verified = true, c.Verified()
		h.Version = strings.ReplaceAll(tls.VersionName(cs.Version), " ", "")
		h.Cipher = tls.CipherSuiteName(cs.CipherSuite)
	case c.TLSError() != nil:
		h.Failure = "delivered in clear text: " + c.TLSError().Error()
	default:
		if _, offered := c.Extension("STARTTLS"); !offered {
			h.Failure = "STARTTLS not offered"
		} else {
			h.Failure = "TLS not tried (tls = disabled, or a recent handshake failure is remembered)"
		}
	}
	b.SetHost(h)
}
