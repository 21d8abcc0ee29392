package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"github.com/penstock-mta/penstock/internal/testkv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// fakeDNS answers TXT for _mta-sts names and 127.0.0.1 for every host.
type fakeDNS struct {
	mu  sync.Mutex
	txt map[string][]string
}

func (f *fakeDNS) set(name string, txt ...string) {
	f.mu.Lock()
	f.txt[name] = txt
	f.mu.Unlock()
}

func (f *fakeDNS) LookupMX(ctx context.Context, d string) (dns.MXResult, error) {
	return dns.MXResult{}, &dns.Error{Domain: d, Kind: dns.NoHost}
}
func (f *fakeDNS) LookupIP(ctx context.Context, h string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}
func (f *fakeDNS) LookupTXT(ctx context.Context, n string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.txt[n]; ok {
		return t, nil
	}
	return nil, &dns.Error{Domain: n, Kind: dns.NXDomain}
}

type reports struct {
	mu  sync.Mutex
	got []string
}

func (r *reports) Report(o tlspolicy.Outcome) {
	r.mu.Lock()
	r.got = append(r.got, o.Result)
	r.mu.Unlock()
}

type fixture struct {
	dns     *fakeDNS
	kv      *testkv.KV
	srv     *httptest.Server
	ca      *sim.CA
	mu      sync.Mutex
	handler http.HandlerFunc
	fetches int
	now     time.Time
	rep     *reports
}

func newFixture(t *testing.T) *fixture {
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dns: &fakeDNS{txt: map[string][]string{}}, kv: testkv.New(), ca: ca,
		now: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), rep: &reports{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		h := f.handler
		f.fetches++
		f.mu.Unlock()
		h(w, r)
	}))
	f.srv.Listener.Close()
	if f.srv.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Leaf([]string{"mta-sts.example.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.serve("version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n")
	f.dns.set("_mta-sts.example.test", "v=STSv1; id=1")
	return f
}

func (f *fixture) serve(body string) {
	f.mu.Lock()
	f.handler = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }
	f.mu.Unlock()
}

func (f *fixture) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

func (f *fixture) resolver(t *testing.T) *Resolver {
	_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	r, err := New(Options{DNS: f.dns, KV: f.kv, Port: p, RootCAs: f.ca.Pool(), FetchTimeout: 5 * time.Second,
		Reporter: f.rep, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolverCacheAndRefresh(t *testing.T) {
	f := newFixture(t)
	r := f.resolver(t)
	ctx := context.Background()
	p := r.Policy(ctx, "Example.test.")
	if p.Source != tlspolicy.SourceSTS || p.Mode != "enforce" || !p.MatchMX("mx.example.test") || p.Expires != f.now.Add(24*time.Hour) {
		t.Fatalf("policy %+v", p)
	}
	r.Policy(ctx, "example.test")
	if f.count() != 1 {
		t.Fatalf("%d fetches, want 1 (cached)", f.count())
	}
	// A new id refetches.
	f.serve("version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n")
	f.dns.set("_mta-sts.example.test", "v=STSv1; id=2")
	if p := r.Policy(ctx, "example.test"); p.Mode != "testing" || f.count() != 2 {
		t.Fatalf("after id change: %+v, %d fetches", p, f.count())
	}
	// Near expiry: refreshed proactively though the id is the same.
	f.now = f.now.Add(20 * time.Hour)
	r.Policy(ctx, "example.test")
	if f.count() != 3 {
		t.Fatalf("%d fetches, want a proactive refresh", f.count())
	}
	// Restart: the persisted policy applies with the policy host down.
	f.srv.Close()
	f.dns.set("_mta-sts.example.test", "v=STSv1; id=3")
	r2 := f.resolver(t)
	if p := r2.Policy(ctx, "example.test"); p.Source != tlspolicy.SourceSTS || p.Mode != "testing" || !strings.Contains(p.Note, "cached") {
		t.Fatalf("after restart with the host down: %+v", p)
	}
	// Once it expires: no policy.
	f.now = f.now.Add(48 * time.Hour)
	if p := r2.Policy(ctx, "example.test"); p.Source != tlspolicy.SourceNone {
		t.Fatalf("expired policy still applies: %+v", p)
	}
}

func TestResolverRefusesBadFetches(t *testing.T) {
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		result  string
	}{
		{"redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://mta-sts.example.test/other", http.StatusFound)
		}, tlspolicy.ResultSTSPolicyFetchError},
		{"404", http.NotFound, tlspolicy.ResultSTSPolicyFetchError},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 1\n"+strings.Repeat("x: y\n", MaxPolicySize/5+1))
		}, tlspolicy.ResultSTSPolicyInvalid},
		{"garbage", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>hello</html>") }, tlspolicy.ResultSTSPolicyInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.mu.Lock()
			f.handler = tc.handler
			f.mu.Unlock()
			p := f.resolver(t).Policy(context.Background(), "example.test")
			if p.Source != tlspolicy.SourceNone || p.Note == "" {
				t.Fatalf("policy %+v", p)
			}
			if len(f.rep.got) != 1 || f.rep.got[0] != tc.result {
				t.Fatalf("reported %v, want %s", f.rep.got, tc.result)
			}
			// The failure is remembered: no new fetch for a while.
			r := f.resolver(t)
			r.Policy(context.Background(), "example.test")
			n := f.count()
			r.Policy(context.Background(), "example.test")
			if f.count() != n {
				t.Fatalf("fetched again right after a failure")
			}
		})
	}
	t.Run("untrusted certificate", func(t *testing.T) {
		f := newFixture(t)
		_, port, _ := net.SplitHostPort(f.srv.Listener.Addr().String())
		p, _ := strconv.Atoi(port)
		r, err := New(Options{DNS: f.dns, Port: p, RootCAs: x509.NewCertPool(), Reporter: f.rep, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if pol := r.Policy(context.Background(), "example.test"); pol.Source != tlspolicy.SourceNone {
			t.Fatalf("policy from an untrusted host: %+v", pol)
		}
		if fmt.Sprint(f.rep.got) != "["+tlspolicy.ResultSTSWebPKIInvalid+"]" {
			t.Fatalf("reported %v", f.rep.got)
		}
	})
}

func TestMatchMX(t *testing.T) {
	pats := []string{"mx.example.com", "*.example.net"}
	for host, want := range map[string]bool{
		"mx.example.com": true, "MX.Example.com.": true, "a.example.net": true,
		"example.net": false, "a.b.example.net": false, "mx2.example.com": false,
	} {
		if tlspolicy.MatchMX(pats, host) != want {
			t.Errorf("%s: want %v", host, want)
		}
	}
}
