package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/smtpclient"
)

// TestOutcomeKinds: a failure without a reply keeps its error chain from
// the client to the classifier, so its kind and reason come from what
// happened (errors.Is/As), not from words in its text. A dial that failed
// with EHOSTUNREACH was reported not_connected when the chain was dropped.
func TestOutcomeKinds(t *testing.T) {
	cl, err := bounce.New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	q := &Queue{deps: Deps{Bounce: cl}}
	dial := func(call string, e error) error {
		return &smtpclient.Error{Command: "connect", Local: true,
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError(call, e)}}
	}
	at := func(cmd string, e error) error { return &smtpclient.Error{Command: cmd, Local: true, Err: e} }
	for _, tc := range []struct {
		name   string
		err    error
		kind   string
		reason bounce.Reason
	}{
		{"unreachable host", dial("connect", syscall.EHOSTUNREACH), bounce.LocalUnreachable, bounce.Unreachable},
		{"unreachable net", dial("connect", syscall.ENETUNREACH), bounce.LocalUnreachable, bounce.Unreachable},
		{"refused", dial("connect", syscall.ECONNREFUSED), bounce.LocalRefused, bounce.NotConnected},
		{"EMFILE", dial("socket", syscall.EMFILE), bounce.LocalResources, bounce.NotConnected},
		{"connect timeout", at("connect", fmt.Errorf("dial: %w", context.DeadlineExceeded)), bounce.LocalTimeout, bounce.NotConnected},
		{"read timeout", at("RCPT", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), bounce.LocalTimeout, bounce.NotConnected},
		{"reset", at("DATA", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), bounce.LocalReset, bounce.NotConnected},
		{"handshake dropped", at("STARTTLS", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}), bounce.LocalTLS, bounce.NotConnected},
		{"certificate", at("STARTTLS", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), bounce.LocalCertificate, bounce.NotConnected},
		{"other connect", at("connect", errors.New("odd")), bounce.LocalConnect, bounce.NotConnected},
		{"dns temporary", &dns.Error{Domain: "example.com", Kind: dns.Temporary, Err: errors.New("SERVFAIL")}, bounce.LocalDNSTemp, bounce.Unreachable},
		{"dns nxdomain", &dns.Error{Domain: "example.com", Kind: dns.NXDomain, Err: errors.New("NXDOMAIN")}, bounce.LocalDNSNXDomain, bounce.InvalidDomain},
	} {
		o := outcomeOf(tc.err)
		q.classify(&o)
		if o.Kind != tc.kind || o.Verdict.Reason != tc.reason || !o.Local {
			t.Errorf("%s: kind %q reason %s local %v, want %q %s local", tc.name, o.Kind, o.Verdict.Reason, o.Local, tc.kind, tc.reason)
		}
		if !errors.Is(o.Err, tc.err) {
			t.Errorf("%s: the outcome lost the error chain", tc.name)
		}
	}
	// A reply is the remote's, with no local kind.
	o := outcomeOf(&smtpclient.Error{Command: "RCPT", Reply: smtpclient.Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}, Permanent: true})
	q.classify(&o)
	if o.Local || o.Kind != "" || o.Verdict.Reason != bounce.UserUnknown || o.siteError() {
		t.Errorf("550 5.1.1: %+v", o)
	}
	if e := outcomeOf(dial("socket", syscall.EMFILE)); e.siteError() {
		t.Error("EMFILE counts against the site")
	}
}
