package bounce

import (
	"errors"
	"syscall"
)

// Kinds of local errors for ClassifyLocal: failures of ours, with no SMTP
// reply to classify.
const (
	LocalDNSNXDomain = "dns-nxdomain" // the recipient domain does not exist
	LocalDNSNullMX   = "dns-nullmx"   // RFC 7505: the domain accepts no mail
	LocalDNSNoHost   = "dns-nohost"   // no MX and no address record (RFC 5321 §5.1)
	LocalDNSTemp     = "dns-temp"     // SERVFAIL, timeout: ask again later
	LocalConnect     = "connect"      // connection refused or reset at connect
	LocalTimeout     = "timeout"      // connect, command or data timeout
	LocalTLS         = "tls"          // STARTTLS or certificate failure under a TLS policy
	LocalNetwork     = "network"      // any other network error
	LocalBadMessage  = "bad-message"  // the message could not be built, for good (message.Error)
)

// ClassifyLocal classifies one of our own failures, named by kind. DNS
// answers that the domain cannot take mail are permanent (RFC 7505 §4,
// RFC 5321 §5.1); everything else is temporary, because a local problem must
// never bounce or quarantine mail (unknown kinds included: treat an unknown
// error as temporary). "unreachable" means we found no way to the
// destination (DNS trouble, no route); "not_connected" means we had an
// address but got no usable SMTP session.
func (c *Classifier) ClassifyLocal(kind string, err error) Verdict {
	v := func(r Reason, cl Class) Verdict { return Verdict{Reason: r, Class: cl, Rule: RuleLocal} }
	switch kind {
	case LocalBadMessage:
		// Hard for the recipient, yet about neither the address nor the
		// site: callers keep it out of the quarantine and flow control.
		return v(BadMessage, Hard)
	case LocalDNSNXDomain, LocalDNSNullMX, LocalDNSNoHost:
		return v(InvalidDomain, Hard)
	case LocalDNSTemp:
		return v(Unreachable, Soft)
	case LocalConnect, LocalTimeout, LocalTLS, LocalNetwork:
		if errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
			return v(Unreachable, Soft)
		}
		return v(NotConnected, Soft)
	}
	return v(Unknown, Soft)
}
