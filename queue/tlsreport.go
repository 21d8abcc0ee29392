package queue

import (
	"errors"

	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// TLS outcomes for SMTP TLS reporting (RFC 8460). A failed STARTTLS or
// handshake is reported by dial for each MX address it tries; an open
// connection reports once per recipient domain it carries mail for: a
// success over TLS, or the reason it went in clear text. Until MTA-STS and
// DANE report their own outcomes, every result says no-policy-found.

// tlsFailed reports a connection attempt that failed in STARTTLS or its
// handshake.
func (q *Queue) tlsFailed(domain string, p path, t target, err error) {
	var se *smtpclient.Error
	if q.deps.TLSReport == nil || !errors.As(err, &se) || (se.Command != "STARTTLS" && se.Command != "TLS") {
		return
	}
	q.deps.TLSReport(tlsResult(domain, p, t, false, tlsrpt.Classify(err), tlsDetail(err)))
}

// tlsDetail is the cause of a TLS failure, without the queue's own
// annotations of the error.
func tlsDetail(err error) string {
	var se *smtpclient.Error
	if errors.As(err, &se) && se.Err != nil {
		return se.Command + ": " + se.Err.Error()
	}
	return err.Error()
}

// tlsSession reports an open connection's TLS outcome for domain, once per
// connection and domain (seen holds the domains reported).
func (q *Queue) tlsSession(domain string, p path, t target, c *smtpclient.Client, mode smtpclient.TLSMode, seen map[string]bool) {
	if q.deps.TLSReport == nil || mode == smtpclient.TLSDisabled || seen[domain] {
		return
	}
	seen[domain] = true
	switch terr := c.TLSError(); {
	case c.TLS():
		q.deps.TLSReport(tlsResult(domain, p, t, true, "", ""))
	case terr != nil:
		// Opportunistic: the handshake failed and the mail went in clear.
		q.deps.TLSReport(tlsResult(domain, p, t, false, tlsrpt.Classify(terr), tlsDetail(terr)))
	default:
		q.deps.TLSReport(tlsResult(domain, p, t, false, tlsrpt.StartTLSNotSupported, "STARTTLS not offered"))
	}
}

func tlsResult(domain string, p path, t target, ok bool, typ, detail string) tlsrpt.Result {
	r := tlsrpt.Result{PolicyDomain: domain, PolicyType: tlsrpt.PolicyNone, MXHost: t.host,
		Success: ok, FailureType: typ, Detail: detail}
	if t.ip.IsValid() {
		r.ReceivingIP = t.ip.String()
	}
	if p.src.IP.IsValid() {
		r.SendingIP = p.src.IP.String()
	}
	return r
}
