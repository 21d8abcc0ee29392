package smtpclient

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
)

// chunk reads "BDAT <n> LAST" and the n bytes after it.
func (c *sconn) chunk() string {
	l := c.expect("BDAT ")
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l, "BDAT "), " LAST"))
	if err != nil || !strings.HasSuffix(l, " LAST") {
		c.failf("chunk command %q", l)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.failf("chunk of %d bytes: %v", n, err)
	}
	return string(b)
}

// To a server with CHUNKING and PIPELINING, a message is one write: MAIL,
// RCPT and "BDAT <n> LAST" with the body, not dot-stuffed, in CRLF lines;
// the chunk's reply is the verdict.
func TestChunkingPipelined(t *testing.T) {
	const body = "Subject: x\n\n.one\r\n..two\nline\r\n.\r\nlast"
	const want = "Subject: x\r\n\r\n.one\r\n..two\r\nline\r\n.\r\nlast\r\n"
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "CHUNKING", "SIZE 100000", "ENHANCEDSTATUSCODES")
		mail := c.expect("MAIL FROM:<f@x.test>")
		if mail != "MAIL FROM:<f@x.test> SIZE="+strconv.Itoa(len(want)) {
			c.failf("mail %q: SIZE is not the chunk's size %d", mail, len(want))
		}
		if buf, _ := c.r.Peek(c.r.Buffered()); !strings.HasSuffix(string(buf), want) {
			c.failf("after MAIL only %q was buffered: not one write", buf)
		}
		c.expect("RCPT TO:<a@y.test>")
		c.expect("RCPT TO:<b@y.test>")
		if got := c.chunk(); got != want {
			c.failf("chunk %q, want %q", got, want)
		}
		c.send("250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 no such user", "250 2.0.0 queued as 7")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<a@y.test>")
		if got := c.chunk(); got != "b\r\n" {
			c.failf("second chunk %q", got)
		}
		c.send("250 2.1.0 ok", "250 2.1.5 ok", "250 2.0.0 queued as 8")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if res.Rcpts[0].Err != nil || res.Data.String() != "250 2.0.0 queued as 7" {
		t.Fatalf("rcpt a %+v, verdict %q", res.Rcpts[0], res.Data)
	}
	checkErr(t, res.Rcpts[1].Err, "RCPT", 550, true, false)
	if res, err = cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte("b\r\n")); err != nil || res.Data.Code != 250 {
		t.Fatalf("second message: %v %+v", err, res)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A refused chunk fails the message for every accepted recipient with
// Command "BDAT", and RSET closes the transaction so the connection serves
// the next one. So does a chunk refused because no recipient was accepted,
// without an error of the whole transaction.
func TestChunkRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "CHUNKING")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<a@y.test>")
		c.chunk()
		c.send("250 ok", "250 ok", "554 5.7.1 message refused as spam")
		c.expect("RSET")
		c.send("250 ok")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<bad@y.test>")
		c.chunk()
		c.send("250 ok", "550 5.1.1 no such user", "554 5.5.1 no valid recipients")
		c.expect("RSET")
		c.send("250 ok")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<a@y.test>")
		c.chunk()
		c.send("250 ok", "250 ok", "451 4.3.0 try later")
		c.expect("RSET")
		c.send("250 ok")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	checkErr(t, err, "BDAT", 554, true, false)
	checkErr(t, res.Rcpts[0].Err, "BDAT", 554, true, false)
	res, err = cl.Send(context.Background(), "f@x.test", []string{"bad@y.test"}, []byte(msg))
	if err != nil {
		t.Fatalf("every recipient refused is not an error of the transaction: %v", err)
	}
	checkErr(t, res.Rcpts[0].Err, "RCPT", 550, true, false)
	_, err = cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	checkErr(t, err, "BDAT", 451, false, false)
	if cl.Broken() {
		t.Fatal("broken after refusals")
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A refused MAIL fails the message with the MAIL reply; the server refused
// the chunk too, after reading it, and no RSET is needed.
func TestChunkMailRefused(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "CHUNKING")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<a@y.test>")
		c.chunk()
		c.send("550 5.7.1 sender refused", "503 5.5.1 no sender", "503 5.5.1 no sender")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	_, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	checkErr(t, err, "MAIL", 550, true, false)
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Without PIPELINING, each command waits for its reply; the body still goes
// as a chunk, in the same write as its BDAT command.
func TestChunkingLockstep(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("CHUNKING")
		c.expect("MAIL FROM:<f@x.test>")
		if c.r.Buffered() != 0 {
			c.failf("client sent more before the reply to MAIL")
		}
		c.send("250 ok")
		c.expect("RCPT TO:<a@y.test>")
		if c.r.Buffered() != 0 {
			c.failf("client sent more before the reply to RCPT")
		}
		c.send("250 ok")
		if got := c.chunk(); got != msg {
			c.failf("chunk %q", got)
		}
		c.send("250 queued")
		c.quit()
	})
	cl := dialT(t, s.addr(), testOpts())
	res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg))
	if err != nil || res.Data.Text != "queued" {
		t.Fatalf("%v %+v", err, res)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// NoChunking keeps DATA to a server that offers CHUNKING.
func TestNoChunking(t *testing.T) {
	s := newScript(t, nil, func(c *sconn) {
		c.greet("PIPELINING", "CHUNKING")
		c.expect("MAIL FROM:<f@x.test>")
		c.expect("RCPT TO:<a@y.test>")
		c.expect("DATA")
		c.send("250 ok", "250 ok", "354 go")
		if d := c.data(); d != msg+".\r\n" {
			c.failf("data %q", d)
		}
		c.send("250 queued")
		c.quit()
	})
	o := testOpts()
	o.NoChunking = true
	cl := dialT(t, s.addr(), o)
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// go-smtp's server (an independent implementation that offers CHUNKING)
// gets by BDAT what it would get by DATA, dot lines included, and refuses
// the chunk of a transaction whose recipients were all refused without
// losing step.
func TestGoSMTPChunking(t *testing.T) {
	be, addr := newGoSMTP(t, nil)
	cl := dialT(t, addr, testOpts())
	if _, ok := cl.Extensions()["CHUNKING"]; !ok {
		t.Fatalf("CHUNKING not offered: %v", cl.Extensions())
	}
	// Extension answers for one keyword what Extensions holds.
	for kw, want := range cl.Extensions() {
		if got, ok := cl.Extension(kw); !ok || got != want {
			t.Errorf("Extension(%q) = %q, %v; Extensions has %q", kw, got, ok, want)
		}
	}
	if _, ok := cl.Extension("NO-SUCH-EXTENSION"); ok {
		t.Error("Extension reports a keyword the server did not offer")
	}
	body := "Subject: x\n\n.\n..\r\n.x\nend"
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test"}, []byte(body)); err != nil {
		t.Fatal(err)
	}
	res, err := cl.Send(context.Background(), "f@x.test", []string{"bad1@y.test", "bad2@y.test"}, []byte(body))
	if err != nil || res.Rcpts[0].Err == nil || res.Rcpts[1].Err == nil {
		t.Fatalf("all refused: %v %+v", err, res)
	}
	if _, err := cl.Send(context.Background(), "f@x.test", []string{"b@y.test"}, []byte("b\n")); err != nil {
		t.Fatal(err)
	}
	got := be.got()
	if len(got) != 2 || got[0].data != "Subject: x\r\n\r\n.\r\n..\r\n.x\r\nend\r\n" || got[1].data != "b\r\n" || got[1].rcpts[0] != "b@y.test" {
		t.Fatalf("server got %+v", got)
	}
	if err := cl.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A server may refuse and hang up while a large body is still going out
// (before reading a chunk whole, or in the middle of DATA); the write then
// fails, and the replies it sent before say what happened, not the broken
// pipe: a 421 is the receiver's, not a fault of our network.
func TestRefusedWhileBodyGoes(t *testing.T) {
	// Larger than the kernel buffers on both sides of a loopback
	// connection can take while the server reads nothing.
	body := []byte(strings.Repeat(strings.Repeat("x", 62)+"\r\n", 128<<10))
	for _, tc := range []struct {
		name       string
		script     func(c *sconn)
		cmd        string
		code       int
		permanent  bool
		secondRcpt string // the second recipient's own refusal, if any
	}{
		{"MAIL 421 before the chunk", func(c *sconn) {
			c.greet("PIPELINING", "CHUNKING")
			c.expect("MAIL")
			c.send("421 4.7.0 Too many connections, closing")
		}, "MAIL", 421, false, ""},
		{"chunk refused before its end", func(c *sconn) {
			c.greet("PIPELINING", "CHUNKING")
			c.expect("MAIL")
			c.expect("RCPT TO:<a@y.test>")
			c.expect("RCPT TO:<b@y.test>")
			c.send("250 ok", "250 ok", "550 5.1.1 no such user", "421 4.3.2 shutting down")
		}, "BDAT", 421, false, "550"},
		{"DATA refused in the middle", func(c *sconn) {
			c.greet("PIPELINING")
			c.expect("MAIL")
			c.expect("RCPT")
			c.expect("RCPT")
			c.expect("DATA")
			c.send("250 ok", "250 ok", "250 ok", "354 go")
			c.line()
			c.send("552 5.3.4 Message too big for this system")
		}, "DATA", 552, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScript(t, nil, func(c *sconn) {
				tc.script(c)
				c.Conn.Close() // with our bytes unread: a reset
			})
			cl := dialT(t, s.addr(), testOpts())
			res, err := cl.Send(context.Background(), "f@x.test", []string{"a@y.test", "b@y.test"}, body)
			e := checkErr(t, err, tc.cmd, tc.code, tc.permanent, false)
			if e.Err != nil {
				t.Errorf("a reply error carries %v", e.Err)
			}
			if got := res.Rcpts[1].Reply.Code; tc.secondRcpt != "" && strconv.Itoa(got) != tc.secondRcpt {
				t.Errorf("second recipient's reply %d, want %s", got, tc.secondRcpt)
			}
			if !cl.Broken() {
				t.Error("the connection is not broken after the server hung up")
			}
		})
	}
}
