package smtpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testOpts() Options {
	return Options{
		EHLO:           "client.test",
		ServerName:     "mx.test",
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
	}
}

func dialT(t *testing.T, addr string, o Options) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// Registered after the script's cleanup, so it runs first.
	t.Cleanup(func() { c.Close() })
	return c
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e
}

func checkErr(t *testing.T, err error, cmd string, code int, permanent, local bool) *Error {
	t.Helper()
	e := asError(t, err)
	if e.Command != cmd || e.Reply.Code != code || e.Permanent != permanent || e.Local != local {
		t.Fatalf("got %q: command %q code %d permanent %v local %v; want %q %d %v %v",
			e, e.Command, e.Reply.Code, e.Permanent, e.Local, cmd, code, permanent, local)
	}
	if e.Temporary() == permanent {
		t.Fatalf("Temporary() = %v with Permanent %v", e.Temporary(), permanent)
	}
	return e
}

const msg = "Subject: test\r\n\r\nhello\r\n"

func TestPipelinedMixed(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "ENHANCEDSTATUSCODES", "SIZE 100000", "8BITMIME")
		mail := c.expect("MAIL FROM:<from@example.org>")
		// The whole group came in one write: all of it is here after one read,
		// before the server said anything.
		if buf, _ := c.r.Peek(c.r.Buffered()); !strings.HasSuffix(string(buf), "DATA\r\n") {
			c.failf("after MAIL only %q was buffered: not one write", buf)
		}
		if mail != "MAIL FROM:<from@example.org> SIZE=24" {
			c.failf("mail %q", mail)
		}
		c.expect("RCPT TO:<a@example.com>")
		c.expect("RCPT TO:<b@example.com>")
		c.expect("RCPT TO:<c@example.com>")
		c.expect("DATA")
		c.send("250 2.1.0 sender ok",
			"250 2.1.5 a ok",
			"550-5.1.1 The email account that you tried to reach does not exist.",
			"550-5.1.1 Please try double-checking the recipient's email",
			"550 5.1.1 address. https://support.example/mail",
			"452 4.2.2 mailbox full",
			"354 go ahead")
		if d := c.data(); d != msg+".\r\n" {
			c.failf("data %q", d)
		}
		c.send("250 2.0.0 Ok: queued as 123")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "from@example.org", []string{"a@example.com", "b@example.com", "c@example.com"}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Rcpts[0]; r.Err != nil || r.Reply.Code != 250 || r.Reply.Enhanced != "2.1.5" || r.Reply.Text != "a ok" {
		t.Fatalf("rcpt a: %+v", r)
	}
	r := res.Rcpts[1]
	want := "The email account that you tried to reach does not exist.\nPlease try double-checking the recipient's email\naddress. https://support.example/mail"
	if r.Reply.Text != want || r.Reply.Enhanced != "5.1.1" {
		t.Fatalf("rcpt b reply %+v", r.Reply)
	}
	checkErr(t, r.Err, "RCPT", 550, true, false)
	checkErr(t, res.Rcpts[2].Err, "RCPT", 452, false, false)
	if res.Data.String() != "250 2.0.0 Ok: queued as 123" {
		t.Fatalf("data reply %q", res.Data)
	}
	if cl.Messages() != 1 || cl.Broken() {
		t.Fatalf("messages %d broken %v", cl.Messages(), cl.Broken())
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLockstep(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("SIZE", "8BITMIME")
		for i, l := range []string{"MAIL FROM:<> SIZE=24", "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"} {
			c.expect(l)
			if c.r.Buffered() != 0 {
				c.failf("client sent more before reply %d", i)
			}
			switch i {
			case 2:
				c.send("550 no such user") // no enhanced code: none parsed
			case 3:
				c.send("354 go")
			default:
				c.send("250 ok")
			}
		}
		c.data()
		c.send("250 queued")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	if _, ok := cl.Extensions()["PIPELINING"]; ok {
		t.Fatal("PIPELINING seen")
	}
	res, err := cl.Send(context.Background(), "", []string{"a@example.com", "b@example.com"}, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rcpts[0].Err != nil {
		t.Fatal(res.Rcpts[0].Err)
	}
	e := checkErr(t, res.Rcpts[1].Err, "RCPT", 550, true, false)
	if e.Reply.Enhanced != "" || e.Reply.Text != "no such user" {
		t.Fatalf("reply %+v", e.Reply)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAllRecipientsRejected(t *testing.T) {
	second := func(c *sconn) {
		c.expect("MAIL FROM:<f@x.test>")
		c.send("250 2.1.0 ok")
		c.expect("RCPT TO:<good@y.test>")
		c.send("250 2.1.5 ok")
		c.expect("DATA")
		c.send("354 go")
		c.data()
		c.send("250 2.0.0 queued")
	}
	t.Run("pipelined", func(t *testing.T) {
		s := newScript(t, nil, func(c *sconn) {
			c.greet("PIPELINING", "ENHANCEDSTATUSCODES")
			c.expect("MAIL")
			c.expect("RCPT TO:<a@y.test>")
			c.expect("RCPT TO:<b@y.test>")
			c.expect("DATA")
			c.send("250 2.1.0 ok", "550 5.1.1 no", "450 4.2.1 later", "554 5.5.1 no valid recipients")
			c.expect("RSET")
			c.send("250 2.0.0 reset")
			second(c)
			c.quit()
		})
		cl := dialT(t, s.addr(), testOpts())
		res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, []byte(msg))
		if err != nil {
			t.Fatalf("want nil error, got %v", err)
		}
		checkErr(t, res.Rcpts[0].Err, "RCPT", 550, true, false)
		checkErr(t, res.Rcpts[1].Err, "RCPT", 450, false, false)
		if res.Data.Code != 554 || cl.Broken() {
			t.Fatalf("data %v broken %v", res.Data, cl.Broken())
		}
		res, err = cl.Send(context.Background(), "f@x.test", []string{"good@y.test"}, []byte(msg))
		if err != nil || res.Rcpts[0].Err != nil {
			t.Fatalf("second send: %v %+v", err, res.Rcpts)
		}
		if cl.Messages() != 2 {
			t.Fatalf("messages %d", cl.Messages())
		}
		cl.Quit(context.Background())
	})
	t.Run("pipelined-354", func(t *testing.T) {
		// RFC 2920 §3.1: DATA accepted though no recipient was: a lone dot.
		s := newScript(t, nil, func(c *sconn) {
			c.greet("PIPELINING")
			c.expect("MAIL")
			c.expect("RCPT")
			c.expect("DATA")
			c.send("250 ok", "550 no", "354 go")
			if d := c.data(); d != ".\r\n" {
				c.failf("data %q", d)
			}
			c.send("554 no valid recipients")
			second(c)
			c.quit()
		})
		cl := dialT(t, s.addr(), testOpts())
		res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
		if err != nil || res.Rcpts[0].Err == nil || res.Data.Code != 554 {
			t.Fatalf("err %v res %+v", err, res)
		}
		if _, err := cl.Send(context.Background(), "f@x.test", []string{"good@y.test"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		cl.Quit(context.Background())
	})
	t.Run("lockstep", func(t *testing.T) {
		s := newScript(t, nil, func(c *sconn) {
			c.greet()
			c.expect("MAIL")
			c.send("250 ok")
			c.expect("RCPT")
			c.send("550 no")
			c.expect("RSET")
			c.send("250 ok")
			second(c)
			c.quit()
		})
		cl := dialT(t, s.addr(), testOpts())
		res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
		if err != nil || res.Rcpts[0].Err == nil {
			t.Fatalf("err %v res %+v", err, res)
		}
		if _, err := cl.Send(context.Background(), "f@x.test", []string{"good@y.test"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		cl.Quit(context.Background())
	})
}

func TestMailRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "ENHANCEDSTATUSCODES")
		c.expect("MAIL")
		c.expect("RCPT")
		c.expect("RCPT")
		c.expect("DATA")
		c.send("550 5.7.1 sender blocked", "503 5.5.1 need MAIL", "503 5.5.1 need MAIL", "503 5.5.1 need MAIL")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, []byte(msg))
	e := checkErr(t, err, "MAIL", 550, true, false)
	for _, r := range res.Rcpts {
		if r.Err != e {
			t.Fatalf("rcpt %s carries %v, want the MAIL error", r.Addr, r.Err)
		}
	}
	if cl.Broken() {
		t.Fatal("broken")
	}
	cl.Quit(context.Background())
}

func TestGreetingRefused(t *testing.T) {
	s := newScript(t, nil,
		func(c *sconn) { c.send("421 4.7.0 Try again later, closing connection") },
		func(c *sconn) {
			c.send("554-5.7.1 Service unavailable;", "554 5.7.1 client host blocked")
			c.expect("QUIT") // RFC 5321 §3.1: the client says QUIT
		})
	_, err := Dial(context.Background(), s.addr(), testOpts())
	e := checkErr(t, err, "greeting", 421, false, false)
	if e.Reply.Enhanced != "4.7.0" {
		t.Fatalf("reply %+v", e.Reply)
	}
	_, err = Dial(context.Background(), s.addr(), testOpts())
	e = checkErr(t, err, "greeting", 554, true, false)
	if e.Reply.Text != "Service unavailable;\nclient host blocked" {
		t.Fatalf("text %q", e.Reply.Text)
	}
}

func TestDataFinalReplyRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "ENHANCEDSTATUSCODES")
		for _, final := range []string{"451 4.3.0 try later", "554 5.6.0 content rejected"} {
			c.expect("MAIL")
			c.expect("RCPT")
			c.expect("RCPT")
			c.expect("DATA")
			c.send("250 ok", "250 ok", "550 5.1.1 unknown", "354 go")
			c.data()
			c.send(final)
		}
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	for _, tc := range []struct {
		code      int
		permanent bool
	}{{451, false}, {554, true}} {
		res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, []byte(msg))
		e := checkErr(t, err, "DATA", tc.code, tc.permanent, false)
		if res.Data.Code != tc.code || res.Rcpts[0].Err != e || res.Rcpts[0].Reply.Code != 250 {
			t.Fatalf("result %+v", res)
		}
		checkErr(t, res.Rcpts[1].Err, "RCPT", 550, true, false)
		if cl.Broken() {
			t.Fatal("broken")
		}
	}
	cl.Quit(context.Background())
}

func TestDataCommandRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet()
		c.expect("MAIL")
		c.send("250 ok")
		c.expect("RCPT")
		c.send("250 ok")
		c.expect("DATA")
		c.send("451 4.3.1 insufficient storage")
		c.expect("RSET") // the transaction is still open
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	checkErr(t, err, "DATA", 451, false, false)
	if res.Data.Enhanced != "4.3.1" || res.Rcpts[0].Err == nil {
		t.Fatalf("result %+v", res)
	}
	cl.Quit(context.Background())
}

func TestDotStuffing(t *testing.T) {
	body := "Subject: dots\n\n.\n..two\n.\r\nbare lf\r\ncrlf\nlast"
	wire := "Subject: dots\r\n\r\n..\r\n...two\r\n..\r\nbare lf\r\ncrlf\r\nlast\r\n.\r\n"
	size := len("Subject: dots\r\n\r\n.\r\n..two\r\n.\r\nbare lf\r\ncrlf\r\nlast\r\n")
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "SIZE 0")
		c.expect("MAIL FROM:<f@x.test> SIZE=" + itoa(size))
		c.expect("RCPT")
		c.expect("DATA")
		c.send("250 ok", "250 ok", "354 go")
		if d := c.data(); d != wire {
			c.failf("data\n%q\nwant\n%q", d, wire)
		}
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	cl.Quit(context.Background())
}

func itoa(n int) string { return strconv.Itoa(n) }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestHELOFallback(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.send("220 old.test SMTP")
		c.expect("EHLO client.test")
		c.send("502 5.5.1 command not implemented")
		c.expect("HELO client.test")
		c.send("250 old.test")
		c.expect("MAIL FROM:<f@x.test>")
		c.send("250 ok")
		c.expect("RCPT")
		c.send("250 ok")
		c.expect("DATA")
		c.send("354 go")
		c.data()
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), Options{EHLO: "client.test", TLS: TLSOpportunistic})
	if len(cl.Extensions()) != 0 || cl.TLS() {
		t.Fatalf("extensions %v tls %v", cl.Extensions(), cl.TLS())
	}
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	cl.Quit(context.Background())
}

func TestReply421MidSession(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "ENHANCEDSTATUSCODES")
		c.expect("MAIL")
		c.expect("RCPT")
		c.expect("RCPT")
		c.expect("DATA")
		c.send("250 ok", "250 ok", "421 4.7.0 too many messages, closing")
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, []byte(msg))
	e := checkErr(t, err, "RCPT", 421, false, false)
	if res.Rcpts[0].Err != e || res.Rcpts[1].Err != e || !cl.Broken() {
		t.Fatalf("result %+v broken %v", res.Rcpts, cl.Broken())
	}
	_, err = cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	if !errors.Is(err, ErrBroken) {
		t.Fatalf("send on broken: %v", err)
	}
}

func TestLocalChecks(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "SIZE 100")
		c.expect("MAIL FROM:<f@x.test> SIZE=24")
		c.expect("RCPT TO:<ok@y.test>")
		c.expect("DATA") // the injected recipient was never sent
		c.send("250 ok", "250 ok", "354 go")
		c.data()
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	ctx := context.Background()

	_, err := cl.Send(ctx, "f@x.test\r\nRSET", []string{"a@y.test"}, []byte(msg))
	if e := checkErr(t, err, "MAIL", 0, true, true); !errors.Is(e, ErrAddress) {
		t.Fatal(e)
	}
	_, err = cl.Send(ctx, "f@x.test", []string{"jösé@y.test"}, []byte(msg))
	if e := checkErr(t, err, "MAIL", 0, true, true); !errors.Is(e, ErrSMTPUTF8Unsupported) {
		t.Fatal(e)
	}
	_, err = cl.Send(ctx, "f@x.test", []string{"a@y.test"}, []byte(strings.Repeat("x", 200)))
	if e := checkErr(t, err, "MAIL", 0, true, true); !errors.Is(e, ErrTooLarge) {
		t.Fatal(e)
	}
	if _, err := cl.Send(ctx, "f@x.test", nil, []byte(msg)); !errors.Is(err, ErrNoRecipients) {
		t.Fatal(err)
	}
	res, err := cl.Send(ctx, "f@x.test", []string{"ok@y.test", "evil@y.test>\r\nDATA", ""}, []byte(msg))
	if err != nil || res.Rcpts[0].Err != nil {
		t.Fatalf("%v %+v", err, res)
	}
	for _, r := range res.Rcpts[1:] {
		if e := checkErr(t, r.Err, "RCPT", 0, true, true); !errors.Is(e, ErrAddress) {
			t.Fatal(e)
		}
	}
	if cl.Messages() != 1 || cl.Broken() {
		t.Fatalf("messages %d broken %v", cl.Messages(), cl.Broken())
	}
	cl.Quit(ctx)
}

func TestMailParams(t *testing.T) {
	body := "Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9\r\n"
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8")
		c.expect("MAIL FROM:<f@x.test> SIZE=" + itoa(len(body)) + " BODY=8BITMIME SMTPUTF8")
		c.expect("RCPT TO:<jösé@y.test>")
		c.expect("DATA")
		c.send("250 ok", "250 ok", "354 go")
		c.data()
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"jösé@y.test"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	cl.Quit(context.Background())
}

func TestSTARTTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	handler := func(c *sconn) {
		c.greet("STARTTLS", "X-CLEAR")
		c.expect("STARTTLS")
		c.send("220 2.0.0 ready")
		c.starttls()
		c.ehlo("PIPELINING", "X-TLS")
		c.quit()
	}
	for _, tc := range []struct {
		mode  TLSMode
		roots bool
	}{{TLSOpportunistic, false}, {TLSRequired, false}, {TLSVerify, true}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			s := newScript(t, srvTLS, handler)
			o := testOpts()
			o.TLS = tc.mode
			if tc.roots {
				o.TLSConfig = &tls.Config{RootCAs: pool}
			}
			cl := dialT(t, s.addr(), o)
			ext := cl.Extensions()
			if !cl.TLS() || cl.TLSError() != nil || cl.TLSConnectionState() == nil {
				t.Fatalf("tls %v err %v", cl.TLS(), cl.TLSError())
			}
			if _, ok := ext["X-TLS"]; !ok {
				t.Fatalf("extensions not refreshed after TLS: %v", ext)
			}
			if _, ok := ext["X-CLEAR"]; ok {
				t.Fatalf("clear-text extensions kept: %v", ext)
			}
			if err := cl.Quit(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("disabled", func(t *testing.T) {
		s := newScript(t, nil, func(c *sconn) {
			c.greet("STARTTLS")
			c.quit()
		})
		cl := dialT(t, s.addr(), testOpts())
		if cl.TLS() {
			t.Fatal("tls")
		}
		cl.Quit(context.Background())
	})
}

func TestOpportunisticFallback(t *testing.T) {
	cert, _ := selfSigned(t)
	s := newScript(t, &tls.Config{Certificates: []tls.Certificate{cert}},
		func(c *sconn) {
			c.greet("STARTTLS")
			c.expect("STARTTLS")
			c.send("220 ready")
			// Take the ClientHello and hang up: the handshake fails.
			c.Conn.Read(make([]byte, 4096))
		},
		func(c *sconn) {
			c.greet("STARTTLS", "PIPELINING")
			c.expect("MAIL") // no STARTTLS this time
			c.expect("RCPT")
			c.expect("DATA")
			c.send("250 ok", "250 ok", "354 go")
			c.data()
			c.send("250 ok")
			c.quit()
		})
	o := testOpts()
	o.TLS = TLSOpportunistic
	cl := dialT(t, s.addr(), o)
	if cl.TLS() || s.conns.Load() != 2 {
		t.Fatalf("tls %v conns %d", cl.TLS(), s.conns.Load())
	}
	e := asError(t, cl.TLSError())
	if e.Command != "TLS" || !e.Local || e.Permanent {
		t.Fatalf("tls error %v", e)
	}
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	cl.Quit(context.Background())
}

func TestOpportunisticRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("STARTTLS")
		c.expect("STARTTLS")
		c.send("454 4.7.0 TLS not available")
		c.quit() // same connection, clear text
	})
	o := testOpts()
	o.TLS = TLSOpportunistic
	cl := dialT(t, s.addr(), o)
	checkErr(t, cl.TLSError(), "STARTTLS", 454, false, false)
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRequiredTLS(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING")
		c.expect("QUIT")
	})
	o := testOpts()
	o.TLS = TLSRequired
	_, err := Dial(context.Background(), s.addr(), o)
	if e := checkErr(t, err, "STARTTLS", 0, false, false); !errors.Is(e, ErrNoSTARTTLS) {
		t.Fatal(e)
	}

	cert, _ := selfSigned(t)
	s = newScript(t, &tls.Config{Certificates: []tls.Certificate{cert}}, func(c *sconn) {
		c.greet("STARTTLS")
		c.expect("STARTTLS")
		c.send("220 ready")
		c.Conn.Read(make([]byte, 4096))
	})
	_, err = Dial(context.Background(), s.addr(), o)
	checkErr(t, err, "STARTTLS", 0, false, true)
	if s.conns.Load() != 1 {
		t.Fatal("required TLS must not fall back")
	}
}

func TestSTARTTLSInjection(t *testing.T) {
	// CVE-2011-0411: bytes after the 220 must not be read as TLS-protected.
	s := newScript(t, nil, func(c *sconn) {
		c.greet("STARTTLS")
		c.expect("STARTTLS")
		c.send("220 ready", "250-injected", "250 PIPELINING")
		c.waitClose()
	})
	o := testOpts()
	o.TLS = TLSRequired
	_, err := Dial(context.Background(), s.addr(), o)
	if e := checkErr(t, err, "STARTTLS", 0, false, false); !errors.Is(e, ErrProtocol) {
		t.Fatal(e)
	}
}

func TestTimeout(t *testing.T) {
	s := newScript(t, nil,
		func(c *sconn) { c.waitClose() }, // no greeting
		func(c *sconn) {
			c.greet("PIPELINING")
			c.expect("MAIL")
			c.waitClose() // no reply
		})
	o := testOpts()
	o.CommandTimeout = 100 * time.Millisecond
	start := time.Now()
	_, err := Dial(context.Background(), s.addr(), o)
	e := checkErr(t, err, "greeting", 0, false, true)
	if !errors.Is(e, os.ErrDeadlineExceeded) {
		t.Fatalf("cause %v", e.Err)
	}
	cl := dialT(t, s.addr(), o)
	_, err = cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	e = checkErr(t, err, "MAIL", 0, false, true)
	if !errors.Is(e, os.ErrDeadlineExceeded) || !cl.Broken() {
		t.Fatalf("cause %v broken %v", e.Err, cl.Broken())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	cl.Close()
}

func TestDataTimeoutUsedForFinalReply(t *testing.T) {
	// The final reply may take longer than a command (RFC 5321 §4.5.3.2.6);
	// so may the replies of a group that carries a BDAT chunk, the chunk's
	// verdict among them (RFC 3030 §2).
	for _, tc := range []struct {
		name   string
		script func(c *sconn, release <-chan struct{})
	}{
		{"DATA", func(c *sconn, release <-chan struct{}) {
			c.greet("PIPELINING")
			c.expect("MAIL")
			c.expect("RCPT")
			c.expect("DATA")
			c.send("250 ok", "250 ok", "354 go")
			c.data()
			<-release
			c.send("250 ok")
		}},
		{"BDAT", func(c *sconn, release <-chan struct{}) {
			c.greet("PIPELINING", "CHUNKING")
			c.expect("MAIL")
			c.expect("RCPT")
			c.chunk()
			<-release
			c.send("250 ok", "250 ok", "250 queued")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			s := newScript(t, nil, func(c *sconn) {
				tc.script(c, release)
				c.quit()
			})
			o := testOpts()
			o.CommandTimeout = 100 * time.Millisecond
			cl := dialT(t, s.addr(), o)
			// Release the reply after more than CommandTimeout, bounded by DataTimeout.
			timer := time.AfterFunc(300*time.Millisecond, func() { close(release) })
			defer timer.Stop()
			if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			cl.Quit(context.Background())
		})
	}
}

func TestCancel(t *testing.T) {
	got := make(chan struct{})
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING")
		c.expect("MAIL")
		close(got)
		c.waitClose()
	})
	cl := dialT(t, s.addr(), testOpts())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-got
		cancel()
	}()
	start := time.Now()
	_, err := cl.Send(ctx, "f@x.test", []string{"a@y.test"}, []byte(msg))
	e := checkErr(t, err, "MAIL", 0, false, true)
	if !errors.Is(e, context.Canceled) || !cl.Broken() {
		t.Fatalf("cause %v broken %v", e.Err, cl.Broken())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
	// A done context fails at once, without traffic.
	_, err = Dial(ctx, s.addr(), testOpts())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("dial with done ctx: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {})
	addr := s.addr()
	s.ln.Close() // nothing listens now
	_, err := Dial(context.Background(), addr, testOpts())
	checkErr(t, err, "connect", 0, false, true)

	o := testOpts()
	o.LocalAddr = mustAddr("192.0.2.1") // TEST-NET-1: not on this host
	_, err = Dial(context.Background(), addr, o)
	checkErr(t, err, "connect", 0, false, true)

	o = testOpts()
	o.EHLO = ""
	_, err = Dial(context.Background(), addr, o)
	checkErr(t, err, "connect", 0, false, true)
}

func TestParseTLSMode(t *testing.T) {
	for _, m := range []TLSMode{TLSDisabled, TLSOpportunistic, TLSRequired, TLSVerify} {
		got, err := ParseTLSMode(m.String())
		if err != nil || got != m {
			t.Fatalf("%v: %v %v", m, got, err)
		}
	}
	if _, err := ParseTLSMode("default"); err == nil {
		t.Fatal("default accepted")
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Command: "RCPT", Permanent: true, Reply: Reply{Code: 550, Enhanced: "5.1.1", Text: "no such user"}}
	if got := e.Error(); got != "RCPT: 550 5.1.1 no such user (permanent)" {
		t.Fatal(got)
	}
	e = localErr("connect", errors.New("refused"))
	if got := e.Error(); got != "connect: refused (temporary, local)" {
		t.Fatal(got)
	}
}

// A closed client's buffers serve the next connection: nothing of the
// first message reaches the second, and a closed client refuses work
// instead of touching buffers that are no longer its own.
func TestClosedClientBuffersServeTheNext(t *testing.T) {
	long := strings.Repeat("first message's line, which must not be seen again\r\n", 200)
	short := "Subject: second\r\n\r\nshort\r\n"
	// take accepts one message and returns it as it came on the wire.
	take := func(c *sconn) string {
		c.greet("PIPELINING")
		c.expect("MAIL")
		c.expect("RCPT")
		c.expect("DATA")
		c.send("250 ok", "250 ok", "354 go")
		d := c.data()
		c.send("250 ok")
		return d
	}
	s := newScript(t, nil,
		func(c *sconn) { take(c) },
		func(c *sconn) {
			if d := take(c); d != short+".\r\n" {
				c.failf("second message on the wire:\n%q\nwant\n%q", d, short+".\r\n")
			}
			c.quit()
		})
	ctx := context.Background()
	first := dialT(t, s.addr(), testOpts())
	if _, err := first.Send(ctx, "f@x.test", []string{"a@y.test"}, []byte(long)); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if _, err := first.Send(ctx, "f@x.test", []string{"a@y.test"}, []byte(short)); !errors.Is(err, ErrBroken) {
		t.Errorf("Send after Close: %v, want ErrBroken", err)
	}
	if err := first.Reset(ctx); !errors.Is(err, ErrBroken) {
		t.Errorf("Reset after Close: %v, want ErrBroken", err)
	}
	if err := first.Quit(ctx); err != nil {
		t.Errorf("Quit after Close: %v", err)
	}

	second := dialT(t, s.addr(), testOpts())
	if _, err := second.Send(ctx, "f@x.test", []string{"a@y.test"}, []byte(short)); err != nil {
		t.Fatal(err)
	}
	if err := second.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}
