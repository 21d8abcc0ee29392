package smtpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// goBackend records what go-smtp's server receives: a real, independent peer.
// Recipients starting with "bad" are refused with 550 5.1.1.
type goBackend struct {
	mu   sync.Mutex
	msgs []goMsg
}

type goMsg struct {
	from  string
	opts  smtp.MailOptions
	rcpts []string
	data  string
	tls   bool
}

func (b *goBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &goSession{b: b, c: c}, nil
}

func (b *goBackend) got() []goMsg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]goMsg(nil), b.msgs...)
}

type goSession struct {
	b   *goBackend
	c   *smtp.Conn
	cur goMsg
}

func (s *goSession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = goMsg{from: from}
	if opts != nil {
		s.cur.opts = *opts
	}
	_, s.cur.tls = s.c.TLSConnectionState()
	return nil
}

func (s *goSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "bad") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}

func (s *goSession) Data(r io.Reader) error {
	d, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = string(d)
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *goSession) Reset()        {}
func (s *goSession) Logout() error { return nil }

func newGoSMTP(t *testing.T, tlsCfg *tls.Config) (*goBackend, string) {
	t.Helper()
	be := &goBackend{}
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.TLSConfig = tlsCfg
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.MaxMessageBytes = 1 << 20
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return be, ln.Addr().String()
}

func TestGoSMTPHappyPath(t *testing.T) {
	be, addr := newGoSMTP(t, nil)
	cl := dialT(t, addr, testOpts())
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE"} {
		if _, ok := cl.Extensions()[ext]; !ok {
			t.Fatalf("%s not seen in %v", ext, cl.Extensions())
		}
	}
	body := "Subject: caf\xc3\xa9\n\n.leading dot\nline\n"
	res, err := cl.Send(context.Background(), "from@x.test", []string{"a@y.test", "bad@y.test", "b@y.test"}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rcpts[0].Err != nil || res.Rcpts[2].Err != nil {
		t.Fatalf("%+v", res.Rcpts)
	}
	e := checkErr(t, res.Rcpts[1].Err, "RCPT", 550, true, false)
	if e.Reply.Enhanced != "5.1.1" || e.Reply.Text != "no such user" {
		t.Fatalf("%+v", e.Reply)
	}
	if res.Data.Code != 250 || res.Data.Enhanced != "2.0.0" {
		t.Fatalf("data %v", res.Data)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := be.got()
	want := strings.ReplaceAll(body, "\n", "\r\n")
	if len(got) != 1 || got[0].data != want || got[0].from != "from@x.test" ||
		strings.Join(got[0].rcpts, ",") != "a@y.test,b@y.test" ||
		got[0].opts.Body != smtp.Body8BitMIME || got[0].opts.Size != int64(len(want)) {
		t.Fatalf("server got %+v", got)
	}
}

func TestGoSMTPSTARTTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	be, addr := newGoSMTP(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	for _, mode := range []TLSMode{TLSOpportunistic, TLSRequired, TLSVerify} {
		o := testOpts()
		o.TLS = mode
		o.TLSConfig = &tls.Config{RootCAs: pool}
		cl := dialT(t, addr, o)
		if !cl.TLS() {
			t.Fatalf("%v: no TLS", mode)
		}
		if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg)); err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		cl.Quit(context.Background())
	}
	for _, m := range be.got() {
		if !m.tls {
			t.Fatal("server saw a message without TLS")
		}
	}

	// Verify against the system roots: the self-signed certificate fails.
	o := testOpts()
	o.TLS = TLSVerify
	_, err := Dial(context.Background(), addr, o)
	e := checkErr(t, err, "STARTTLS", 0, false, true)
	var cve *tls.CertificateVerificationError
	if !errors.As(e, &cve) {
		t.Fatalf("cause %v (%T)", e.Err, e.Err)
	}
	// Wrong name, right root.
	o.TLSConfig = &tls.Config{RootCAs: pool}
	o.ServerName = "other.test"
	_, err = Dial(context.Background(), addr, o)
	if !errors.As(err, &cve) {
		t.Fatalf("wrong name: %v", err)
	}
}

func TestGoSMTPReuse(t *testing.T) {
	be, addr := newGoSMTP(t, nil)
	cl := dialT(t, addr, testOpts())
	const n = 100
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i)
		if _, err := cl.Send(context.Background(), "f@x.test", []string{fmt.Sprintf("r%d@y.test", i)}, []byte(body)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if cl.Messages() != n || cl.Broken() {
		t.Fatalf("messages %d broken %v", cl.Messages(), cl.Broken())
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := be.got()
	if len(got) != n {
		t.Fatalf("server got %d messages", len(got))
	}
	for i, m := range got {
		if m.rcpts[0] != fmt.Sprintf("r%d@y.test", i) || !strings.Contains(m.data, fmt.Sprintf("message %d\r\n", i)) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
}

func TestGoSMTPManyRecipients(t *testing.T) {
	// More recipients than one pipelined group holds (pipelineWindow).
	be, addr := newGoSMTP(t, nil)
	cl := dialT(t, addr, testOpts())
	rcpts := make([]string, 3000)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("recipient-%04d@y.test", i)
		if i%7 == 0 {
			rcpts[i] = "bad-" + rcpts[i]
		}
	}
	res, err := cl.Send(context.Background(), "f@x.test", rcpts, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	accepted := 0
	for i, r := range res.Rcpts {
		if (r.Err == nil) != (i%7 != 0) {
			t.Fatalf("rcpt %d %s: %v", i, r.Addr, r.Err)
		}
		if r.Err == nil {
			accepted++
		}
	}
	cl.Quit(context.Background())
	if got := be.got(); len(got) != 1 || len(got[0].rcpts) != accepted {
		t.Fatalf("server got %d messages", len(got))
	}
}
