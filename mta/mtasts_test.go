package mta_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlspolicy"
	"github.com/penstock-mta/penstock/tlsstatus"
)

// These tests set SSL_CERT_FILE (the system roots) to the simulated world's
// CA, so they cannot run in parallel; the CA is the same in every test, so
// the roots Go loads once per process trust it whichever test came first.

// outcomes records what the TLS reporting seam hears.
type outcomes struct {
	mu  sync.Mutex
	all []tlspolicy.Outcome
}

func (o *outcomes) Report(x tlspolicy.Outcome) {
	o.mu.Lock()
	o.all = append(o.all, x)
	o.mu.Unlock()
}

func (o *outcomes) has(result string, success bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, x := range o.all {
		if x.Result == result && x.Success == success {
			return true
		}
	}
	return false
}

func (o *outcomes) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return fmt.Sprintf("%+v", o.all)
}

// stsWorld is a world with one provider for domain behind mx, serving TLS
// with cert, and a policy host for domain on loopback HTTPS.
type stsWorld struct {
	w        *sim.World
	ca       *sim.CA
	p        *sim.Provider
	policy   *httptest.Server
	mu       sync.Mutex
	body     string
	fetches  int
	reported *outcomes
}

func newSTSWorld(t *testing.T, domain, mx string, beh sim.Behavior, policy string) *stsWorld {
	t.Helper()
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	path, err := ca.WriteFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", path)
	s := &stsWorld{w: newWorld(t), ca: ca, body: policy, reported: &outcomes{}}
	if beh.Certificate == nil && beh.STARTTLS {
		beh.Certificate = s.leaf(t, mx, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	}
	if s.p, err = s.w.AddProvider(beh, []string{domain}, mx); err != nil {
		t.Fatal(err)
	}
	s.policy = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body := s.body
		s.fetches++
		s.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts."+domain+":"+s.port() {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, body)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.policy.Listener.Close()
	s.policy.Listener = ln
	s.policy.TLS = &tls.Config{Certificates: []tls.Certificate{*s.leaf(t, "mta-sts."+domain, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))}}
	s.policy.StartTLS()
	t.Cleanup(s.policy.Close)
	s.w.DNS.SetA("mta-sts."+domain, "127.0.0.1")
	s.w.DNS.SetTXT("_mta-sts."+domain, "v=STSv1; id=20261207")
	return s
}

func (s *stsWorld) port() string {
	_, port, _ := net.SplitHostPort(s.policy.Listener.Addr().String())
	return port
}

func (s *stsWorld) leaf(t *testing.T, name string, from, to time.Time) *tls.Certificate {
	t.Helper()
	c, err := s.ca.Leaf([]string{name}, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// harness starts the MTA; prep edits the configuration first.
func (s *stsWorld) harness(t *testing.T, prep ...func(*config.Config)) *harness {
	t.Helper()
	port, _ := strconv.Atoi(s.port())
	cfg := testConfig(t, s.w, t.TempDir())
	for _, f := range prep {
		f(cfg)
	}
	h := &harness{t: t, world: s.w, cfg: cfg, opts: mta.Options{MTASTSPort: port, TLSReport: s.reported}}
	h.start()
	return h
}

const enforcePolicy = "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n"

// Enforced MTA-STS with a valid certificate for the MX host: delivered
// over verified TLS, the policy in the log and in explain.
func TestMTASTSEnforceDelivers(t *testing.T) {
	s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts", STARTTLS: true}, enforcePolicy)
	h := s.harness(t)
	if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, s.p, 1, 15*time.Second)
	if st := s.p.Stats(); st.TLSConns == 0 {
		t.Fatal("delivered without TLS under an enforced policy")
	}
	waitFor(t, 5*time.Second, "delivery record", func() bool { return countType(h.records(), events.Delivery) == 1 })
	for _, r := range h.records() {
		if r.Type == events.Delivery && (!r.TLS || !strings.Contains(r.Detail, "tls policy sts enforce") || !strings.Contains(r.Site, "sts-enforce")) {
			t.Fatalf("delivery record does not show the policy: %+v", r)
		}
	}
	if !s.reported.has(tlspolicy.ResultSuccess, true) {
		t.Fatalf("no success reported: %s", s.reported)
	}
	var ex queue.Explanation
	h.api("GET", "/api/v1/explain?domain=sts.test", &ex)
	if ex.TLSPolicy == nil || ex.TLSPolicy.Source != "sts" || ex.TLSPolicy.Mode != "enforce" || ex.TLSPolicy.Expires.IsZero() {
		t.Fatalf("explain shows no policy: %+v", ex.TLSPolicy)
	}
}

// Enforced MTA-STS that cannot be met: never delivered (in clear or to an
// unverified host); the recipient waits with the MTA-STS status and why.
func TestMTASTSEnforceRefuses(t *testing.T) {
	past := time.Now().Add(-48 * time.Hour)
	for _, tc := range []struct {
		name   string
		beh    func(s *stsWorld) sim.Behavior
		policy string
		why    string // in the record's text
		result string
	}{
		{"wrong name", func(s *stsWorld) sim.Behavior {
			return sim.Behavior{Name: "sts", STARTTLS: true, Certificate: s.leaf(t, "other.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))}
		}, enforcePolicy, "certificate", tlspolicy.ResultCertHostMismatch},
		{"expired", func(s *stsWorld) sim.Behavior {
			return sim.Behavior{Name: "sts", STARTTLS: true, Certificate: s.leaf(t, "mx.sts.test", past, past.Add(time.Hour))}
		}, enforcePolicy, "expired", tlspolicy.ResultCertExpired},
		{"mx not in policy", func(s *stsWorld) sim.Behavior { return sim.Behavior{Name: "sts", STARTTLS: true} },
			"version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n", "mx patterns", tlspolicy.ResultValidationFailure},
		{"starttls stripped", func(s *stsWorld) sim.Behavior { return sim.Behavior{Name: "sts"} },
			enforcePolicy, "STARTTLS", tlspolicy.ResultSTARTTLSNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts"}, tc.policy)
			s.p.SetBehavior(tc.beh(s))
			h := s.harness(t)
			if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 15*time.Second, "a policy failure", func() bool { return countType(h.records(), events.TransientFailure) >= 2 })
			for _, r := range h.records() {
				if r.Type == events.TransientFailure && (!strings.HasPrefix(r.Status, queue.StatusMTASTS) || !strings.Contains(r.Text, tc.why)) {
					t.Fatalf("record does not say the policy holds it: %+v", r)
				}
			}
			var ex queue.Explanation
			waitFor(t, 5*time.Second, "explain status", func() bool {
				h.api("GET", "/api/v1/explain?address=a@sts.test", &ex)
				return len(ex.Recipients) == 1 && ex.Recipients[0].Status == queue.StatusMTASTS
			})
			if st := s.p.Stats(); st.Delivered != 0 {
				t.Fatalf("delivered despite the enforced policy: %+v", st)
			}
			if !s.reported.has(tc.result, false) {
				t.Fatalf("%s not reported: %s", tc.result, s.reported)
			}
		})
	}
}

// Testing mode: delivered even though the certificate does not verify; the
// failure is reported through the seam.
func TestMTASTSTestingReports(t *testing.T) {
	s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts"},
		"version: STSv1\nmode: testing\nmx: mx.sts.test\nmax_age: 86400\n")
	s.p.SetBehavior(sim.Behavior{Name: "sts", STARTTLS: true, Certificate: s.leaf(t, "wrong.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))})
	h := s.harness(t)
	if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, s.p, 1, 15*time.Second)
	if st := s.p.Stats(); st.TLSConns == 0 {
		t.Fatal("testing mode fell back to clear text")
	}
	if !s.reported.has(tlspolicy.ResultCertHostMismatch, false) || s.reported.has(tlspolicy.ResultSuccess, true) {
		t.Fatalf("want one host mismatch reported and no success: %s", s.reported)
	}
}

// A malformed policy file is no policy (RFC 8461 §3.3): delivered as
// without one, the failure reported.
func TestMTASTSMalformedPolicy(t *testing.T) {
	s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts"}, "version: STSv1\nmode: enforce\nmax_age: soon\n")
	h := s.harness(t)
	if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, s.p, 1, 15*time.Second)
	if !s.reported.has(tlspolicy.ResultSTSPolicyInvalid, false) {
		t.Fatalf("invalid policy not reported: %s", s.reported)
	}
}

// The policy host down: a cached policy still applies (and, after a
// restart, the one persisted in the spool); with none cached there is no
// policy and mail goes as without.
func TestMTASTSPolicyHostDown(t *testing.T) {
	t.Run("cached", func(t *testing.T) {
		s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts", STARTTLS: true}, enforcePolicy)
		h := s.harness(t)
		if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, s.p, 1, 15*time.Second)
		// Restart with the policy host gone and a new id in the TXT record
		// (a refetch is due), and an MX now without STARTTLS.
		h.stop()
		s.policy.Close()
		s.w.DNS.SetTXT("_mta-sts.sts.test", "v=STSv1; id=20261208")
		s.p.SetBehavior(sim.Behavior{Name: "sts"})
		h.start()
		if err := h.send("s@penstock.test", []string{"b@sts.test"}, message("s@penstock.test", "b@sts.test", "sts2", 300)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, "the cached policy to hold the mail", func() bool {
			for _, r := range h.records() {
				if r.Type == events.TransientFailure && r.Recipient == "b@sts.test" && strings.HasPrefix(r.Status, queue.StatusMTASTS) {
					return true
				}
			}
			return false
		})
		if st := s.p.Stats(); st.Delivered != 1 {
			t.Fatalf("delivered %d, want only the first", st.Delivered)
		}
		if !s.reported.has(tlspolicy.ResultSTSPolicyFetchError, false) {
			t.Fatalf("fetch error not reported: %s", s.reported)
		}
	})
	t.Run("none cached", func(t *testing.T) {
		s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts"}, enforcePolicy)
		s.policy.Close()
		h := s.harness(t)
		if err := h.send("s@penstock.test", []string{"a@sts.test"}, message("s@penstock.test", "a@sts.test", "sts", 300)); err != nil {
			t.Fatal(err)
		}
		waitDelivered(t, s.p, 1, 15*time.Second)
	})
}

// Two domains behind the same MX host, one with an enforced policy the
// host cannot meet (its certificate names another host), one without a
// policy: they are different sites, so the one without is delivered at once
// and the enforced one waits; neither policy leaks into the other's
// connections.
func TestMTASTSPolicyClassSplitsSites(t *testing.T) {
	s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts"}, enforcePolicy)
	s.p.SetBehavior(sim.Behavior{Name: "sts", STARTTLS: true, Certificate: s.leaf(t, "other.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))})
	s.w.DNS.SetMX("plain.test", sim.MXRecord{Pref: 10, Host: "mx.sts.test"})
	h := s.harness(t)
	for _, to := range []string{"a@sts.test", "b@plain.test"} {
		if err := h.send("s@penstock.test", []string{to}, message("s@penstock.test", to, "split", 300)); err != nil {
			t.Fatal(err)
		}
	}
	waitDelivered(t, s.p, 1, 15*time.Second)
	waitFor(t, 15*time.Second, "the delivery and the enforced domain held", func() bool {
		recs := h.records()
		return countType(recs, events.Delivery) == 1 && countType(recs, events.TransientFailure) >= 1
	})
	sites := map[string]string{}
	for _, r := range h.records() {
		if r.Type == events.Delivery || r.Type == events.TransientFailure {
			sites[r.Recipient] = r.Site
			if r.Type == events.Delivery && r.Recipient != "b@plain.test" {
				t.Fatalf("delivered %s despite its enforced policy", r.Recipient)
			}
		}
	}
	if sites["b@plain.test"] != "mx.sts.test" || sites["a@sts.test"] != "mx.sts.test|sts-enforce:mx.sts.test" {
		t.Fatalf("sites %v", sites)
	}
}

// TestREQUIRETLSMTASTS: a REQUIRETLS message (RFC 8689) leaves over TLS
// verified under the domain's MTA-STS policy, enforced or in testing mode
// (treated as enforced for such messages, §4.2.1); in testing mode with a
// certificate that does not verify for the MX it bounces with 5.7.10 and
// the provider never sees it.
func TestREQUIRETLSMTASTS(t *testing.T) {
	testingPolicy := "version: STSv1\nmode: testing\nmx: mx.sts.test\nmax_age: 86400\n"
	for _, tc := range []struct {
		name, policy string
		wrongName    bool
	}{
		{"enforce", enforcePolicy, false},
		{"testing", testingPolicy, false},
		{"testing, certificate for another name", testingPolicy, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts", STARTTLS: true, REQUIRETLS: true}, tc.policy)
			if tc.wrongName {
				s.p.SetBehavior(sim.Behavior{Name: "sts", STARTTLS: true, REQUIRETLS: true,
					Certificate: s.leaf(t, "wrong.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))})
			}
			var clientTLS *tls.Config
			h := s.harness(t, func(cfg *config.Config) { clientTLS = injectionTLS(t, cfg) })
			sendTLS(t, h, clientTLS, "a@sts.test", true)
			if tc.wrongName {
				waitFor(t, 15*time.Second, "the bounce", func() bool { return countType(h.records(), events.Bounce) == 1 })
				for _, r := range h.records() {
					if r.Type == events.Bounce && r.EnhancedCode != "5.7.10" {
						t.Fatalf("bounce record: %+v", r)
					}
				}
				if st := s.p.Stats(); st.Delivered != 0 || st.RequireTLSMail != 0 {
					t.Fatalf("sent over a certificate the policy does not accept: %+v", st)
				}
				return
			}
			waitDelivered(t, s.p, 1, 15*time.Second)
			if st := s.p.Stats(); st.RequireTLSMail != 1 || st.TLSConns == 0 {
				t.Fatalf("REQUIRETLS in %d MAIL, %d TLS connections", st.RequireTLSMail, st.TLSConns)
			}
		})
	}
}

// TestTLSStatusAPI: after real deliveries, GET /api/v1/tls (the dashboard's
// transport security panel) shows each domain's policy in force (MTA-STS
// enforce with its expiry; the MX rule's tls for a domain without one) and
// each MX host's last TLS outcome; the delivery log names the policy.
func TestTLSStatusAPI(t *testing.T) {
	s := newSTSWorld(t, "sts.test", "mx.sts.test", sim.Behavior{Name: "sts", STARTTLS: true}, enforcePolicy)
	plain, err := s.w.AddProvider(sim.Behavior{Name: "plain"}, []string{"plain.test"}, "mx.plain.test")
	if err != nil {
		t.Fatal(err)
	}
	h := s.harness(t)
	for _, to := range []string{"a@sts.test", "b@plain.test"} {
		if err := h.send("s@penstock.test", []string{to}, message("s@penstock.test", to, "tls", 300)); err != nil {
			t.Fatal(err)
		}
	}
	waitDelivered(t, s.p, 1, 15*time.Second)
	waitDelivered(t, plain, 1, 15*time.Second)
	waitFor(t, 5*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == 2 })
	for _, r := range h.records() {
		want := map[string]string{"a@sts.test": "sts enforce", "b@plain.test": "rule opportunistic"}[r.Recipient]
		if r.Type == events.Delivery && r.TLSPolicy != want {
			t.Errorf("delivery record of %s: tls_policy %q, want %q", r.Recipient, r.TLSPolicy, want)
		}
	}

	var v api.TLSStatusView
	if code := h.api("GET", "/api/v1/tls", &v); code != 200 {
		t.Fatalf("GET /api/v1/tls: %d", code)
	}
	domains := map[string]tlsstatus.DomainPolicy{}
	for _, d := range v.Domains {
		domains[d.Domain] = d
	}
	if d := domains["sts.test"]; d.Source != "sts" || d.Mode != "enforce" || d.Expires.Before(time.Now()) || len(d.MX) != 1 || d.MX[0] != "mx.sts.test" {
		t.Errorf("sts.test: %+v", d)
	}
	if d := domains["plain.test"]; d.Source != "rule" || d.Mode != "opportunistic" {
		t.Errorf("plain.test: %+v", d)
	}
	hosts := map[string]tlsstatus.HostOutcome{}
	for _, x := range v.Hosts {
		hosts[x.Host] = x
	}
	if x := hosts["mx.sts.test"]; !x.TLS || !strings.HasPrefix(x.Version, "TLS1.") || x.Cipher == "" || !x.Verified ||
		x.Policy != "sts enforce" || x.Failure != "" || x.Time.IsZero() || x.Domain != "sts.test" {
		t.Errorf("mx.sts.test: %+v", x)
	}
	if x := hosts["mx.plain.test"]; x.TLS || x.Verified || x.Policy != "rule opportunistic" || x.Failure != "STARTTLS not offered" {
		t.Errorf("mx.plain.test: %+v", x)
	}
}
