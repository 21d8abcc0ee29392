package bounce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"syscall"
)

// Kinds of local errors for ClassifyLocal: failures with no SMTP reply to
// classify. KindOf names them from the error itself; OurSide says which are
// ours.
const (
	LocalDNSNXDomain = "dns-nxdomain" // the recipient domain does not exist
	LocalDNSNullMX   = "dns-nullmx"   // RFC 7505: the domain accepts no mail
	LocalDNSNoHost   = "dns-nohost"   // no MX and no address record (RFC 5321 §5.1)
	LocalDNSTemp     = "dns-temp"     // SERVFAIL, timeout: ask again later
	LocalConnect     = "connect"      // the connection failed for another reason
	LocalRefused     = "refused"      // ECONNREFUSED: the remote refused the connection
	LocalReset       = "reset"        // ECONNRESET, EPIPE, ECONNABORTED: the connection was dropped
	LocalUnreachable = "unreachable"  // EHOSTUNREACH, ENETUNREACH, ENETDOWN: no route from here
	LocalResources   = "resources"    // EMFILE, ENFILE, ENOBUFS, ENOMEM: we ran out of descriptors or buffers
	LocalTimeout     = "timeout"      // connect, command or data timeout
	LocalTLS         = "tls"          // the STARTTLS handshake failed
	LocalCertificate = "certificate"  // the remote's certificate failed verification (tls = "verify")
	LocalNetwork     = "network"      // any other network error
	LocalBadMessage  = "bad-message"  // the message could not be built, for good (message.Error)
)

// KindOf names the kind of a failure that has no SMTP reply, from its error
// chain (errors.Is and errors.As, never the text): our resources first,
// since running out of descriptors can surface inside any other error, then
// certificates and TLS, the remote's refusals, routes and timeouts.
// DNS failures are named by the resolver's own error type (package dns), so
// a bare *net.DNSError here is LocalDNSTemp.
func KindOf(err error) string {
	var (
		dnsErr   *net.DNSError
		netErr   net.Error
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		alert    tls.AlertError
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		return LocalResources
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &hostname):
		return LocalCertificate
	case errors.As(err, &record), errors.As(err, &alert):
		return LocalTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return LocalRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return LocalReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.ENETDOWN), errors.Is(err, syscall.EHOSTDOWN):
		return LocalUnreachable
	case errors.As(err, &dnsErr):
		return LocalDNSTemp
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return LocalTimeout
	}
	return LocalNetwork
}

// OurSide reports whether a kind of failure lies on our side — our
// resolver, our sockets, our network — rather than with the remote. A
// refusal or a reset by the peer, a timeout waiting for it, its TLS
// handshake or certificate, and its domain's DNS answers (NXDOMAIN, null
// MX) are the remote's; a resolver that fails, a route that is missing and
// descriptors or buffers that run out are ours, as is an error nothing more
// is known about. (When our network fails, errors rise at every site at
// once: flow control's local-problem view catches that, whatever the kind.)
func OurSide(kind string) bool {
	switch kind {
	case LocalDNSTemp, LocalUnreachable, LocalResources, LocalConnect, LocalNetwork:
		return true
	}
	return false
}

// ClassifyLocal classifies one of our own failures, named by kind (see
// KindOf). DNS answers that the domain cannot take mail are permanent
// (RFC 7505 §4, RFC 5321 §5.1); everything else is temporary, because a
// local problem must never bounce or quarantine mail (unknown kinds
// included: treat an unknown error as temporary). "unreachable" means we
// found no way to the destination (DNS trouble, no route); "not_connected"
// means we had an address but got no usable SMTP session.
func (c *Classifier) ClassifyLocal(kind string, err error) Verdict {
	v := func(r Reason, cl Class) Verdict { return Verdict{Reason: r, Class: cl, Rule: RuleLocal} }
	switch kind {
	case LocalBadMessage:
		// Hard for the recipient, yet about neither the address nor the
		// site: callers keep it out of the quarantine and flow control.
		return v(BadMessage, Hard)
	case LocalDNSNXDomain, LocalDNSNullMX, LocalDNSNoHost:
		return v(InvalidDomain, Hard)
	case LocalDNSTemp, LocalUnreachable:
		return v(Unreachable, Soft)
	case LocalConnect, LocalRefused, LocalReset, LocalResources, LocalTimeout, LocalTLS, LocalCertificate, LocalNetwork:
		if KindOf(err) == LocalUnreachable {
			return v(Unreachable, Soft)
		}
		return v(NotConnected, Soft)
	}
	return v(Unknown, Soft)
}
