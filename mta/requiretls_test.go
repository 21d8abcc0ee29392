package mta_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/sim"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	t    *testing.T
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	tmpl.Subject.CommonName = "Penstock test CA"
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, key: key, cert: cert, pool: pool}
}

// leaf issues a server certificate for names.
func (ca *testCA) leaf(names ...string) (tls.Certificate, []byte, []byte) {
	ca.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ca.t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, keyPEM
}

// injectionTLS gives the injection listener a certificate from a CA made
// for the test, so that a client can send REQUIRETLS over STARTTLS; it
// returns the client's TLS configuration.
func injectionTLS(t *testing.T, cfg *config.Config) *tls.Config {
	t.Helper()
	ca := newTestCA(t)
	_, certPEM, keyPEM := ca.leaf("penstock.test")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = certFile, keyFile
	return &tls.Config{ServerName: "penstock.test", RootCAs: ca.pool}
}

// sendTLS injects one message over STARTTLS, with REQUIRETLS when asked;
// its subject is "secret-subject-" and the recipient.
func sendTLS(t *testing.T, h *harness, clientTLS *tls.Config, to string, requireTLS bool) {
	t.Helper()
	c, err := gosmtp.DialStartTLS(h.m.SMTPAddr(), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("sender@senders.test", &gosmtp.MailOptions{RequireTLS: requireTLS}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatal(err)
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write([]byte(message("sender@senders.test", to, "secret-subject-"+to, 256)))
	if err := wc.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// TestREQUIRETLS: a message injected over STARTTLS with REQUIRETLS (RFC
// 8689) leaves only over TLS authenticated by a DANE or MTA-STS policy of
// the recipient domain (§4.2.1). With no policy it bounces with 5.7.10,
// and the DSN carries none of the message, whatever the provider offers:
// a certificate valid for its MX name and REQUIRETLS (before the fix this
// one was delivered), a valid certificate without REQUIRETLS, or a
// certificate that does not verify. Without REQUIRETLS mail is delivered
// as usual.
func TestREQUIRETLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	w := newWorld(t)
	mxCert, _, _ := ca.leaf("mx.rtls.test", "mx.nortls.test", "mx.plainrtls.test")
	valid, err := w.AddProvider(sim.Behavior{Name: "rtls", STARTTLS: true, REQUIRETLS: true, Certificate: &mxCert}, []string{"rtls.test"}, "mx.rtls.test")
	if err != nil {
		t.Fatal(err)
	}
	noREQ, _ := w.AddProvider(sim.Behavior{Name: "nortls", STARTTLS: true, Certificate: &mxCert}, []string{"nortls.test"}, "mx.nortls.test")
	// A certificate from elsewhere (the simulator's self-signed one), with
	// REQUIRETLS advertised.
	selfSigned, _ := w.AddProvider(sim.Behavior{Name: "selfsigned", STARTTLS: true, REQUIRETLS: true}, []string{"selfsigned.test"}, "mx.selfsigned.test")
	var mu sync.Mutex
	var dsns []string
	senders, _ := w.AddProvider(sim.Behavior{Name: "senders", BodyHook: func(_ string, _ []string, body []byte) {
		mu.Lock()
		dsns = append(dsns, string(body))
		mu.Unlock()
	}}, []string{"senders.test"}, "mx.senders.test")

	cfg := testConfig(t, w, t.TempDir())
	clientTLS := injectionTLS(t, cfg)
	cfg.Delivery.DSN = true
	// The providers' certificates verify against the roots: publicly
	// valid, but no policy says so.
	h := &harness{t: t, world: w, cfg: cfg, opts: mta.Options{TLSRoots: ca.pool}}
	h.start()

	sendTLS(t, h, clientTLS, "a@rtls.test", true)
	sendTLS(t, h, clientTLS, "b@nortls.test", true)
	sendTLS(t, h, clientTLS, "c@selfsigned.test", true)
	sendTLS(t, h, clientTLS, "d@nortls.test", false) // without REQUIRETLS: delivered as usual

	waitDelivered(t, noREQ, 1, 10*time.Second)
	waitDelivered(t, senders, 3, 15*time.Second) // the three DSNs
	if st := noREQ.Stats(); st.Delivered != 1 || st.RcptSeen["b@nortls.test"] != 0 {
		t.Fatalf("nortls provider got the REQUIRETLS message: %+v", st.RcptSeen)
	}
	for _, p := range []*sim.Provider{valid, selfSigned} {
		if st := p.Stats(); st.Delivered != 0 || st.RequireTLSMail != 0 {
			t.Fatalf("REQUIRETLS message sent without a policy: %+v", st)
		}
	}
	waitFor(t, 5*time.Second, "the bounce records", func() bool { return countType(h.records(), events.Bounce) == 3 })
	for _, r := range h.records() {
		if r.Type == events.Bounce && (r.EnhancedCode != "5.7.10" || !strings.Contains(r.Text, "REQUIRETLS")) {
			t.Fatalf("bounce record: %+v", r)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rcpt := range []string{"a@rtls.test", "b@nortls.test", "c@selfsigned.test"} {
		var dsn string
		for _, d := range dsns {
			if strings.Contains(d, rcpt) {
				dsn = d
			}
		}
		if !strings.Contains(dsn, "Status: 5.7.10") || !strings.Contains(dsn, "REQUIRETLS support required") {
			t.Errorf("DSN for %s:\n%s", rcpt, dsn)
		}
		if strings.Contains(dsn, "secret-subject") {
			t.Errorf("the DSN for %s carries the REQUIRETLS message's content", rcpt)
		}
	}
}

// TestREQUIRETLSDANE: a REQUIRETLS message leaves over TLS authenticated
// by DANE-EE (a certificate no root vouches for, named for another host),
// carrying REQUIRETLS on.
func TestREQUIRETLSDANE(t *testing.T) {
	t.Parallel()
	ca, err := sim.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	odd, err := ca.Leaf([]string{"not-the-mx.example"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var clientTLS *tls.Config
	h, p, _ := daneWorld(t, sim.Behavior{Name: "dane", STARTTLS: true, REQUIRETLS: true, Certificate: &odd}, eeRecord, true,
		func(cfg *config.Config) { clientTLS = injectionTLS(t, cfg) })
	sendTLS(t, h, clientTLS, "a@dane.test", true)
	waitDelivered(t, p, 1, 15*time.Second)
	if st := p.Stats(); st.RequireTLSMail != 1 || st.TLSConns == 0 {
		t.Fatalf("REQUIRETLS in %d MAIL, %d TLS connections", st.RequireTLSMail, st.TLSConns)
	}
	waitFor(t, 5*time.Second, "the delivery record", func() bool { return countType(h.records(), events.Delivery) == 1 })
	for _, r := range h.records() {
		if r.Type == events.Delivery && (!strings.HasSuffix(r.TLSInfo, " verified") || !strings.Contains(r.Detail, "tls policy dane")) {
			t.Fatalf("delivery record: %q %q", r.TLSInfo, r.Detail)
		}
	}
}
