package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/flow"
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

// recordingFlow is a Flow that keeps what it is told.
type recordingFlow struct {
	mu     sync.Mutex
	events []flow.Event
}

func (f *recordingFlow) Check(string, time.Time) flow.Decision {
	return flow.Decision{State: flow.Normal}
}
func (f *recordingFlow) Peek(string, time.Time) flow.Decision {
	return flow.Decision{State: flow.Normal}
}
func (f *recordingFlow) Holds(string, time.Time) bool { return false }
func (f *recordingFlow) Record(ev flow.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
}
func (f *recordingFlow) Reset(string)                                       {}
func (f *recordingFlow) Sources(string, time.Time) []flow.SourceDecision    { return nil }
func (f *recordingFlow) SourcesAll(string, time.Time) []flow.SourceDecision { return nil }
func (f *recordingFlow) TakeProbe(string, string, time.Time) bool           { return true }
func (f *recordingFlow) Local() (bool, flow.LocalProblem)                   { return false, flow.LocalProblem{} }
func (f *recordingFlow) recorded() []flow.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]flow.Event(nil), f.events...)
}

// failingResolver fails every address lookup with err.
type failingResolver struct{ err error }

func (r failingResolver) LookupMX(context.Context, string) (dns.MXResult, error) {
	return dns.MXResult{}, r.err
}
func (r failingResolver) LookupIP(context.Context, string) ([]netip.Addr, error) { return nil, r.err }
func (r failingResolver) LookupTXT(context.Context, string) ([]string, error)    { return nil, r.err }

// TestDialOwnExhaustionNotTheSite: when the MX hosts' addresses cannot be
// looked up because we have no descriptor for the resolver's socket, the
// site is not blamed; when the lookups fail for the site's own reasons, it
// is.
func TestDialOwnExhaustionNotTheSite(t *testing.T) {
	emfile := &dns.Error{Domain: "mx.example.com", Kind: dns.Temporary,
		Err: fmt.Errorf("asking 127.0.0.1:53: %w", &net.OpError{Op: "dial", Net: "udp", Err: os.NewSyscallError("socket", syscall.EMFILE)})}
	servfail := &dns.Error{Domain: "mx.example.com", Kind: dns.Temporary, Err: errors.New("127.0.0.1:53 answered SERVFAIL")}
	for _, tc := range []struct {
		name    string
		err     error
		blamed  bool
		wantErr string
	}{
		{"EMFILE", emfile, false, bounce.LocalResources},
		{"SERVFAIL", servfail, true, bounce.LocalConnect},
	} {
		fl := &recordingFlow{}
		q := New(&Config{}, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Resolver: failingResolver{tc.err}, Flow: fl})
		s := newSite(q, "mx.example.com", []dns.MX{{Host: "mx.example.com", Pref: 10}})
		c, _, _, err := s.dial(path{}, limits{tlsMode: "disabled"}, "example.com")
		if c != nil || err == nil {
			t.Fatalf("%s: dial succeeded", tc.name)
		}
		if got := outcomeOf(err).Kind; got != tc.wantErr {
			t.Errorf("%s: kind %q, want %q", tc.name, got, tc.wantErr)
		}
		blamed := false
		for _, ev := range fl.recorded() {
			blamed = blamed || (ev.Site == s.key && ev.Err)
		}
		if blamed != tc.blamed {
			t.Errorf("%s: site blamed %v, want %v", tc.name, blamed, tc.blamed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		q.Close(ctx)
		cancel()
	}
}
