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

// TestREQUIRETLS: a message injected over STARTTLS with REQUIRETLS (RFC
// 8689) reaches a provider with STARTTLS, REQUIRETLS and a certificate that
// verifies for its MX name, carrying REQUIRETLS on; to a provider with a
// valid certificate but without REQUIRETLS it bounces with 5.7.10, and the
// DSN carries none of the message.
func TestREQUIRETLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	w := newWorld(t)
	mxCert, _, _ := ca.leaf("mx.rtls.test", "mx.nortls.test", "mx.plainrtls.test")
	good, err := w.AddProvider(sim.Behavior{Name: "rtls", STARTTLS: true, REQUIRETLS: true, Certificate: &mxCert}, []string{"rtls.test"}, "mx.rtls.test")
	if err != nil {
		t.Fatal(err)
	}
	noREQ, _ := w.AddProvider(sim.Behavior{Name: "nortls", STARTTLS: true, Certificate: &mxCert}, []string{"nortls.test"}, "mx.nortls.test")
	// A certificate from elsewhere (the simulator's self-signed one), with
	// REQUIRETLS advertised: not verified, so not used either.
	selfSigned, _ := w.AddProvider(sim.Behavior{Name: "selfsigned", STARTTLS: true, REQUIRETLS: true}, []string{"selfsigned.test"}, "mx.selfsigned.test")
	var mu sync.Mutex
	var dsns []string
	senders, _ := w.AddProvider(sim.Behavior{Name: "senders", BodyHook: func(_ string, _ []string, body []byte) {
		mu.Lock()
		dsns = append(dsns, string(body))
		mu.Unlock()
	}}, []string{"senders.test"}, "mx.senders.test")

	_, certPEM, keyPEM := ca.leaf("penstock.test")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, w, t.TempDir())
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = certFile, keyFile
	cfg.Delivery.DSN = true
	h := &harness{t: t, world: w, cfg: cfg, opts: mta.Options{TLSRoots: ca.pool}}
	h.start()

	send := func(to string, requireTLS bool) {
		t.Helper()
		c, err := gosmtp.DialStartTLS(h.m.SMTPAddr(), &tls.Config{ServerName: "penstock.test", RootCAs: ca.pool})
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
	send("a@rtls.test", true)
	send("b@nortls.test", true)
	send("c@selfsigned.test", true)
	send("d@nortls.test", false) // without REQUIRETLS: delivered as usual

	waitDelivered(t, good, 1, 10*time.Second)
	if st := good.Stats(); st.RequireTLSMail != 1 || st.TLSConns != 1 {
		t.Fatalf("rtls provider: REQUIRETLS in %d MAIL, %d TLS connections", st.RequireTLSMail, st.TLSConns)
	}
	// The delivery log says how: TLS version, cipher, certificate verified.
	waitFor(t, 5*time.Second, "the delivery record", func() bool {
		for _, r := range h.records() {
			if r.Type == events.Delivery && r.Recipient == "a@rtls.test" {
				if !r.TLS || !strings.HasPrefix(r.TLSInfo, "TLS1.") || !strings.HasSuffix(r.TLSInfo, " verified") {
					t.Fatalf("delivery record: tls %v %q", r.TLS, r.TLSInfo)
				}
				return true
			}
		}
		return false
	})
	waitDelivered(t, noREQ, 1, 10*time.Second)
	waitDelivered(t, senders, 2, 10*time.Second) // the two DSNs
	if st := noREQ.Stats(); st.Delivered != 1 || st.RcptSeen["b@nortls.test"] != 0 {
		t.Fatalf("nortls provider got the REQUIRETLS message: %+v", st.RcptSeen)
	}
	if st := selfSigned.Stats(); st.Delivered != 0 || st.Attempts != 0 {
		t.Fatalf("REQUIRETLS message sent over an unverified certificate: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, rcpt := range []string{"b@nortls.test", "c@selfsigned.test"} {
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
