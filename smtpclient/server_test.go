package smtpclient

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// script is a small SMTP server on 127.0.0.1:0 for tests. Each accepted
// connection runs the next handler (the last one repeats); a handler reads
// lines and answers as the test scripts it. A handler that sees something
// unexpected fails the test through sconn.failf.
type script struct {
	ln       net.Listener
	handlers []func(*sconn)
	conns    atomic.Int32
	tlsCfg   *tls.Config
	wg       sync.WaitGroup
	mu       sync.Mutex
	errs     []error
}

// scriptErr is how a handler aborts.
type scriptErr struct{ err error }

func newScript(t *testing.T, tlsCfg *tls.Config, handlers ...func(*sconn)) *script {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &script{ln: ln, handlers: handlers, tlsCfg: tlsCfg}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, err := range s.errs {
			t.Errorf("server: %v", err)
		}
	})
	return s
}

func (s *script) addr() string { return s.ln.Addr().String() }

func (s *script) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		n := int(s.conns.Add(1))
		h := s.handlers[min(n, len(s.handlers))-1]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			// Bounds every script in time, whatever the client does.
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			sc := &sconn{Conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn), tlsCfg: s.tlsCfg}
			defer func() {
				if r := recover(); r != nil {
					se, ok := r.(scriptErr)
					if !ok {
						panic(r)
					}
					s.mu.Lock()
					s.errs = append(s.errs, fmt.Errorf("connection %d: %w", n, se.err))
					s.mu.Unlock()
				}
			}()
			h(sc)
		}()
	}
}

type sconn struct {
	net.Conn
	r      *bufio.Reader
	w      *bufio.Writer
	tlsCfg *tls.Config
}

func (c *sconn) failf(format string, args ...any) {
	panic(scriptErr{fmt.Errorf(format, args...)})
}

// send writes reply lines, each with CRLF, in one flush.
func (c *sconn) send(lines ...string) {
	for _, l := range lines {
		c.w.WriteString(l)
		c.w.WriteString("\r\n")
	}
	if err := c.w.Flush(); err != nil {
		c.failf("write: %v", err)
	}
}

// line reads a command line, CRLF stripped; it fails on a bare LF.
func (c *sconn) line() string {
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.failf("read: %v (partial %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.failf("line without CRLF: %q", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// expect reads a line that must start with prefix.
func (c *sconn) expect(prefix string) string {
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.failf("got %q, want %q...", l, prefix)
	}
	return l
}

// greet sends the 220 greeting and answers EHLO with exts.
func (c *sconn) greet(exts ...string) {
	c.send("220 mx.test ESMTP ready")
	c.ehlo(exts...)
}

func (c *sconn) ehlo(exts ...string) {
	c.expect("EHLO client.test")
	lines := []string{"mx.test hello"}
	lines = append(lines, exts...)
	out := make([]string, len(lines))
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		out[i] = "250" + sep + l
	}
	c.send(out...)
}

// data reads the DATA content up to and including the final dot, raw.
func (c *sconn) data() string {
	var b strings.Builder
	for i := 0; i < 100000; i++ {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.failf("read data: %v", err)
		}
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
	c.failf("data too long")
	return ""
}

// quit expects QUIT and answers it.
func (c *sconn) quit() {
	c.expect("QUIT")
	c.send("221 2.0.0 bye")
}

// starttls runs the server side of the handshake.
func (c *sconn) starttls() {
	tc := tls.Server(c.Conn, c.tlsCfg)
	if err := tc.Handshake(); err != nil {
		c.failf("server handshake: %v", err)
	}
	c.Conn = tc
	c.r = bufio.NewReader(tc)
	c.w = bufio.NewWriter(tc)
}

// waitClose reads until the client goes away: a server that stalls.
func (c *sconn) waitClose() {
	buf := make([]byte, 512)
	for i := 0; i < 1000; i++ {
		if _, err := c.Conn.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.failf("client did not close the connection")
			}
			return
		}
	}
}

// selfSigned makes a certificate for mx.test and 127.0.0.1, its own CA.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mx.test"},
		DNSNames:              []string{"mx.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}
