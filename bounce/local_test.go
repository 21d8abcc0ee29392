package bounce

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
)

// TestKindOf: every kind of failure without a reply, built the way the
// standard library reports it and wrapped the way smtpclient wraps it,
// gets its kind from the error chain, its side (ours or the remote's) and
// its reason.
func TestKindOf(t *testing.T) {
	dial := func(call string, e error) error {
		return fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError(call, e)})
	}
	read := func(e error) error {
		return fmt.Errorf("RCPT: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", e)})
	}
	cases := []struct {
		name    string
		err     error
		kind    string
		ourSide bool
		reason  Reason
	}{
		{"refused", dial("connect", syscall.ECONNREFUSED), LocalRefused, false, NotConnected},
		{"reset", read(syscall.ECONNRESET), LocalReset, false, NotConnected},
		{"broken pipe", read(syscall.EPIPE), LocalReset, false, NotConnected},
		{"read timeout", read(os.ErrDeadlineExceeded), LocalTimeout, false, NotConnected},
		{"connect timeout", fmt.Errorf("connect: %w", &net.OpError{Op: "dial", Err: context.DeadlineExceeded}), LocalTimeout, false, NotConnected},
		{"unreachable host", dial("connect", syscall.EHOSTUNREACH), LocalUnreachable, true, Unreachable},
		{"unreachable net", dial("connect", syscall.ENETUNREACH), LocalUnreachable, true, Unreachable},
		{"EMFILE", dial("socket", syscall.EMFILE), LocalResources, true, NotConnected},
		{"ENFILE", dial("socket", syscall.ENFILE), LocalResources, true, NotConnected},
		{"ENOBUFS", dial("connect", syscall.ENOBUFS), LocalResources, true, NotConnected},
		{"ENOMEM", dial("socket", syscall.ENOMEM), LocalResources, true, NotConnected},
		{"EMFILE on read", read(syscall.EMFILE), LocalResources, true, NotConnected},
		{"DNS failure", &net.DNSError{Err: "server misbehaving", Name: "mx.example.com", IsTemporary: true}, LocalDNSTemp, true, Unreachable},
		{"TLS handshake", fmt.Errorf("STARTTLS: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), LocalTLS, false, NotConnected},
		{"TLS alert", fmt.Errorf("STARTTLS: %w", tls.AlertError(40)), LocalTLS, false, NotConnected},
		{"unknown authority", fmt.Errorf("STARTTLS: %w", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), LocalCertificate, false, NotConnected},
		{"wrong host name", x509.HostnameError{Host: "mx.example.com", Certificate: &x509.Certificate{}}, LocalCertificate, false, NotConnected},
		{"expired", x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}, LocalCertificate, false, NotConnected},
		{"other", errors.New("something odd"), LocalNetwork, true, NotConnected},
	}
	c, _ := New(nil, true)
	for _, tc := range cases {
		if got := KindOf(tc.err); got != tc.kind {
			t.Errorf("%s: KindOf(%v) = %q, want %q", tc.name, tc.err, got, tc.kind)
		}
		if got := OurSide(tc.kind); got != tc.ourSide {
			t.Errorf("%s: OurSide(%q) = %v, want %v", tc.name, tc.kind, got, tc.ourSide)
		}
		if v := c.ClassifyLocal(tc.kind, tc.err); v.Reason != tc.reason || v.Class != Soft {
			t.Errorf("%s: ClassifyLocal = %s/%s, want %s/soft", tc.name, v.Reason, v.Class, tc.reason)
		}
	}
	for _, k := range []string{LocalDNSNXDomain, LocalDNSNullMX, LocalDNSNoHost} {
		if OurSide(k) {
			t.Errorf("OurSide(%q): the domain's own answer is not ours", k)
		}
	}
}

// TestKindOfRealRefusal: a real refused connection on loopback.
func TestKindOfRealRefusal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = net.Dial("tcp", addr)
	if err == nil {
		t.Skip("the closed port answered")
	}
	if k := KindOf(err); k != LocalRefused {
		t.Errorf("KindOf(%v) = %q, want %q", err, k, LocalRefused)
	}
}

func TestRecipientLevel(t *testing.T) {
	for r, want := range map[Reason]bool{
		UserUnknown: true, InvalidDomain: true, MailboxFull: true, AccountDisabled: true,
		Unreachable: false, Refused: false, NotConnected: false, ErrorIgnored: false, Unknown: false,
	} {
		if r.RecipientLevel() != want {
			t.Errorf("%s.RecipientLevel() = %v, want %v", r, !want, want)
		}
	}
}
