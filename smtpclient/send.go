package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// RcptResult is the outcome for one recipient.
type RcptResult struct {
	Addr  string
	Reply Reply  // the reply to its RCPT TO, zero if it was never sent
	Err   *Error // nil: the server took the message for this recipient
}

// Result is the outcome of one Send.
type Result struct {
	Rcpts []RcptResult // one per recipient, in the order given
	Data  Reply        // the reply that ended the transaction after DATA or BDAT, if any
}

// fail gives e to every recipient without an error of its own and returns
// it: a failure of the whole transaction.
func (r *Result) fail(e *Error) (*Result, error) {
	for i := range r.Rcpts {
		if r.Rcpts[i].Err == nil {
			r.Rcpts[i].Err = e
		}
	}
	return r, e
}

// Send delivers body from from to rcpts in one transaction.
//
// Addresses are bare ("user@example.com"; "" for the null sender of a
// bounce). body is the message as stored: header, blank line, body, with
// LF or CRLF line ends; Send dot-stuffs it and ends lines with CRLF.
//
// The Result always has one entry per recipient. Its error is nil when the
// transaction ran to its end: every recipient with a nil Err was accepted;
// when every recipient was refused, the error is nil too and the connection
// stays usable. A non-nil error (always an *Error) is a failure of the whole
// transaction (MAIL refused, DATA refused, the final reply, a network error)
// and is also set on every recipient that had no error of its own.
func (c *Client) Send(ctx context.Context, from string, rcpts []string, body []byte) (*Result, error) {
	res := &Result{Rcpts: make([]RcptResult, len(rcpts))}
	for i, a := range rcpts {
		res.Rcpts[i].Addr = a
	}
	if c.broken {
		return res.fail(localErr("MAIL", ErrBroken))
	}
	if len(rcpts) == 0 {
		return res, permErr("MAIL", ErrNoRecipients)
	}
	ok, utf8 := checkAddr(from)
	if !ok {
		return res.fail(permErr("MAIL", fmt.Errorf("%w: sender %q", ErrAddress, from)))
	}
	valid := 0
	for i, a := range rcpts {
		ok, u := checkAddr(a)
		if !ok || a == "" {
			res.Rcpts[i].Err = permErr("RCPT", fmt.Errorf("%w: recipient %q", ErrAddress, a))
			continue
		}
		valid++
		utf8 = utf8 || u
	}
	if valid == 0 {
		return res, nil
	}
	// RFC 6531 §3.4: a non-ASCII address must not go to a server without
	// SMTPUTF8. Retrying will not change the server, so it is permanent.
	if utf8 && !c.extUTF8 {
		return res.fail(permErr("MAIL", ErrSMTPUTF8Unsupported))
	}
	if c.requireTLS {
		// RFC 8689 §4.2.1: not relayed over a connection without the
		// protection asked for; no retry over this connection changes that.
		var why string
		switch _, adv := c.ext["REQUIRETLS"]; {
		case !c.tls:
			why = "no TLS"
		case !c.verified:
			why = "the certificate did not verify for " + c.opts.ServerName
		case !adv:
			why = "the server does not advertise REQUIRETLS"
		}
		if why != "" {
			return res.fail(permErr("MAIL", fmt.Errorf("%w: %s", ErrRequireTLS, why)))
		}
	}
	scan := scanBody(body)
	// RFC 1870 §6: do not send what the server announced it will refuse.
	if c.maxSize > 0 && scan.size > c.maxSize {
		return res.fail(permErr("MAIL", fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, scan.size, c.maxSize)))
	}
	if err := ctx.Err(); err != nil {
		return res.fail(localErr("MAIL", err))
	}
	// RFC 3030: to a server with CHUNKING the body goes as one "BDAT n LAST"
	// chunk right behind the commands, and the chunk's reply is the
	// verdict. No wait for 354, no dot-stuffing.
	out := outgoing{body: body, scan: scan, chunk: c.extChunking && !c.opts.NoChunking}

	stop := c.watch(ctx)
	defer c.unwatch(stop)
	c.messages++
	c.deadline(ctx, c.opts.CommandTimeout)
	c.writeMail(from, scan.size, scan.eightBit, utf8)
	var data bool
	var e *Error
	if c.extPipelining {
		data, e = c.pipelined(ctx, res, rcpts, out)
	} else {
		data, e = c.lockstep(ctx, res, rcpts, out)
	}
	if e != nil {
		return res.fail(e)
	}
	if !data {
		// Sent by BDAT, or every recipient refused; the connection is
		// ready for the next message either way.
		return res, nil
	}

	// RFC 5321 §4.5.3.2.5 gives 3 minutes per block written; the whole
	// body gets DataTimeout, which is longer and simpler.
	c.deadline(ctx, c.opts.DataTimeout)
	c.writeContent(body, scan, true)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return res.fail(c.brokenWrite(ctx, err, "DATA", res, false, 0, 0, "DATA"))
	}
	// RFC 5321 §4.5.3.2.6: the server may take 10 minutes to answer the
	// final dot, while it scans and stores the message.
	c.deadline(ctx, c.opts.DataTimeout)
	if e := c.recv(ctx, "DATA"); e != nil {
		return res.fail(e)
	}
	res.Data = c.rr.reply()
	if res.Data.Code/100 != 2 {
		return res.fail(replyErr("DATA", res.Data))
	}
	return res, nil
}

// lateWait bounds the wait for replies a server sent before it hung up.
const lateWait = time.Second

// brokenWrite is the error of a write, named cmd, that failed while a body
// went out. A server that refuses MAIL, a recipient or the message may
// answer and hang up while we still write a large body (pipelined as a
// BDAT chunk, or after 354), and its replies say more than the broken
// pipe: a "421 Too many connections" is the receiver's doing, not a fault
// of our network. It reads, in order, the replies the written commands are
// owed that are already there: MAIL's (if mail), those of the recipients
// res.Rcpts[from:to] that were sent (each gets its own), then final's. The
// first refusal of MAIL or of final, or a 421, is the error; with none
// there, the write's.
func (c *Client) brokenWrite(ctx context.Context, err error, cmd string, res *Result, mail bool, from, to int, final string) *Error {
	e := c.ioErr(ctx, cmd, err)
	if r := c.lateReplies(res, mail, from, to, final); r != nil {
		return r
	}
	return e
}

// lateReplies reads the replies for brokenWrite; nil when none refused.
func (c *Client) lateReplies(res *Result, mail bool, from, to int, final string) *Error {
	c.dl = time.Time{}
	c.netConn.SetReadDeadline(time.Now().Add(lateWait))
	if mail {
		if readReply(c.r, &c.rr, c.extEnhanced) != nil {
			return nil
		}
		if c.rr.code/100 != 2 {
			return replyErr("MAIL", c.rr.reply())
		}
	}
	for k := from; k < to; k++ {
		if res.Rcpts[k].Err != nil {
			continue // refused locally, never sent
		}
		if readReply(c.r, &c.rr, c.extEnhanced) != nil {
			return nil
		}
		rep := c.rr.reply()
		res.Rcpts[k].Reply = rep
		if rep.Code/100 != 2 {
			e := replyErr("RCPT", rep)
			res.Rcpts[k].Err = e
			if rep.Code == 421 {
				return e
			}
		}
	}
	if readReply(c.r, &c.rr, c.extEnhanced) != nil || c.rr.code/100 == 2 || c.rr.code == 354 {
		return nil
	}
	res.Data = c.rr.reply()
	return replyErr(final, res.Data)
}

// outgoing is the message a Send carries.
type outgoing struct {
	body  []byte
	scan  bodyScan
	chunk bool // the body goes as one BDAT chunk (RFC 3030), not after DATA
}

// writeChunk buffers the whole body as one last chunk (RFC 3030 §2):
// "BDAT <size> LAST", then the body in CRLF lines, not dot-stuffed, the
// size scanBody counted.
func (c *Client) writeChunk(m outgoing) {
	c.w.WriteString("BDAT ")
	c.scratch = strconv.AppendInt(c.scratch[:0], m.scan.size, 10)
	c.w.Write(c.scratch)
	c.w.WriteString(" LAST\r\n")
	c.writeContent(m.body, m.scan, false)
}

// writeContent buffers body, dot-stuffed for DATA when stuff is set, in
// CRLF lines: copied in one write when scan says that is what it is
// already (what the body pipeline stores and sends, nearly always), else
// a line at a time.
func (c *Client) writeContent(body []byte, scan bodyScan, stuff bool) {
	if stuff && scan.asIs() || !stuff && scan.crlf {
		c.w.Write(body)
		return
	}
	writeLines(c.w, body, stuff)
}

// chunkReply reads the reply to "BDAT LAST": the server's verdict on the
// message for every accepted recipient, which may take as long as the
// reply to DATA's final dot (RFC 3030 §2). A server refuses the chunk of a
// transaction without a sender or recipients, after reading it; the
// transaction is then closed with RSET, as after a refused DATA.
func (c *Client) chunkReply(ctx context.Context, res *Result, mailErr *Error, accepted int) *Error {
	c.deadline(ctx, c.opts.DataTimeout)
	if e := c.recv(ctx, "BDAT"); e != nil {
		return e
	}
	res.Data = c.rr.reply()
	switch {
	case mailErr != nil:
		return mailErr
	case accepted > 0 && res.Data.Code/100 == 2:
		return nil
	case c.broken:
		return replyErr("BDAT", res.Data)
	case accepted == 0:
		c.rset(ctx)
		return nil
	}
	e := replyErr("BDAT", res.Data)
	c.rset(ctx)
	return e
}

// pipelined runs MAIL, RCPT and DATA as one group (RFC 2920): the commands go
// out in one write, the replies are read in order after. Recipient lists
// larger than pipelineWindow go in several groups. It returns true when the
// server is waiting for the body. With m.chunk, the last group ends with the
// body as one BDAT chunk instead of DATA (RFC 3030 §4.2), and the message
// is done when it returns.
func (c *Client) pipelined(ctx context.Context, res *Result, rcpts []string, m outgoing) (bool, *Error) {
	var mailErr *Error
	mailRead := false
	accepted := 0
	next := 0 // first recipient whose reply is unread
	i := 0    // first recipient not yet written
	for {
		for ; i < len(rcpts) && c.w.Buffered() < pipelineWindow; i++ {
			if res.Rcpts[i].Err == nil {
				c.writeCmd("RCPT TO:<", rcpts[i], ">")
			}
		}
		last := i == len(rcpts)
		// The group that carries the body, and its replies, get the
		// body's time.
		timeout := c.opts.CommandTimeout
		if last && m.chunk {
			timeout = c.opts.DataTimeout
		}
		c.deadline(ctx, timeout)
		switch {
		case last && m.chunk:
			// The body is written before any reply is read: a server
			// reads a chunk whole even when it refuses it (RFC 3030 §2).
			c.writeChunk(m)
		case last:
			c.w.WriteString("DATA\r\n")
		}
		if err := c.w.Flush(); err != nil {
			if last && m.chunk {
				return false, c.brokenWrite(ctx, err, "MAIL", res, !mailRead, next, i, "BDAT")
			}
			return false, c.ioErr(ctx, "MAIL", err)
		}
		if !mailRead {
			mailRead = true
			if e := c.recv(ctx, "MAIL"); e != nil {
				return false, e
			}
			if c.rr.code/100 != 2 {
				mailErr = replyErr("MAIL", c.rr.reply())
				if c.broken {
					return false, mailErr // 421: no more replies will come
				}
			}
		}
		// RFC 2920 §3.1: every reply in the group must be read and checked.
		for ; next < i; next++ {
			if res.Rcpts[next].Err != nil {
				continue // refused locally, never sent
			}
			c.deadline(ctx, timeout)
			if e := c.recv(ctx, "RCPT"); e != nil {
				return false, e
			}
			rep := c.rr.reply()
			res.Rcpts[next].Reply = rep
			switch {
			case mailErr != nil:
				// Replies to RCPT without a sender (503) say nothing about
				// the recipient: each gets the MAIL error.
				if c.broken {
					return false, mailErr
				}
			case rep.Code/100 == 2:
				accepted++
			default:
				e := replyErr("RCPT", rep)
				res.Rcpts[next].Err = e
				if c.broken {
					return false, e
				}
			}
		}
		if last {
			break
		}
		if mailErr != nil {
			return false, mailErr // everything sent was read; DATA not sent
		}
	}
	if m.chunk {
		return false, c.chunkReply(ctx, res, mailErr, accepted)
	}

	c.deadline(ctx, c.opts.CommandTimeout)
	if e := c.recv(ctx, "DATA"); e != nil {
		return false, e
	}
	if c.rr.code == 354 {
		if mailErr == nil && accepted > 0 {
			return true, nil
		}
		// RFC 2920 §3.1: the server took DATA though nothing is to be
		// delivered; a lone dot ends it without a message.
		c.w.WriteString(".\r\n")
		if err := c.w.Flush(); err != nil {
			return false, c.ioErr(ctx, "DATA", err)
		}
		c.deadline(ctx, c.opts.DataTimeout)
		if e := c.recv(ctx, "DATA"); e != nil {
			return false, e
		}
		res.Data = c.rr.reply()
		return false, mailErr
	}
	res.Data = c.rr.reply()
	if c.broken {
		return false, replyErr("DATA", res.Data)
	}
	if mailErr != nil {
		return false, mailErr
	}
	if accepted == 0 {
		// The expected 503/554 to DATA. RSET so the next MAIL starts clean;
		// if it fails, Broken says so and this message's outcome stands.
		c.rset(ctx)
		return false, nil
	}
	// DATA refused with recipients accepted: the transaction is still open
	// (RFC 5321 §4.1.1.4); close it before the next one.
	e := replyErr("DATA", res.Data)
	c.rset(ctx)
	return false, e
}

// lockstep runs MAIL, each RCPT and DATA one at a time, for servers without
// PIPELINING. It returns true when the server is waiting for the body. With
// m.chunk, the body goes as one BDAT chunk instead of DATA, and the message is
// done when it returns.
func (c *Client) lockstep(ctx context.Context, res *Result, rcpts []string, m outgoing) (bool, *Error) {
	if err := c.w.Flush(); err != nil {
		return false, c.ioErr(ctx, "MAIL", err)
	}
	if e := c.recv(ctx, "MAIL"); e != nil {
		return false, e
	}
	if c.rr.code/100 != 2 {
		return false, replyErr("MAIL", c.rr.reply())
	}
	accepted := 0
	for i, a := range rcpts {
		if res.Rcpts[i].Err != nil {
			continue
		}
		c.deadline(ctx, c.opts.CommandTimeout)
		c.writeCmd("RCPT TO:<", a, ">")
		if err := c.w.Flush(); err != nil {
			return false, c.ioErr(ctx, "RCPT", err)
		}
		if e := c.recv(ctx, "RCPT"); e != nil {
			return false, e
		}
		rep := c.rr.reply()
		res.Rcpts[i].Reply = rep
		if rep.Code/100 == 2 {
			accepted++
			continue
		}
		e := replyErr("RCPT", rep)
		res.Rcpts[i].Err = e
		if c.broken {
			return false, e
		}
	}
	if accepted == 0 {
		c.rset(ctx)
		return false, nil
	}
	if m.chunk {
		c.deadline(ctx, c.opts.DataTimeout)
		c.writeChunk(m)
		if err := c.w.Flush(); err != nil {
			return false, c.brokenWrite(ctx, err, "BDAT", res, false, 0, 0, "BDAT")
		}
		return false, c.chunkReply(ctx, res, nil, accepted)
	}
	rep, e := c.cmd(ctx, "DATA", "DATA", "")
	if e != nil {
		return false, e
	}
	if rep.Code == 354 {
		return true, nil
	}
	res.Data = rep
	e = replyErr("DATA", rep)
	if !c.broken {
		c.rset(ctx)
	}
	return false, e
}

// writeMail buffers MAIL FROM with the parameters the server understands:
// SIZE (RFC 1870 §4), BODY=8BITMIME (RFC 6152 §3), SMTPUTF8 (RFC 6531 §3.4)
// and REQUIRETLS (RFC 8689 §4.1, checked by Send).
// A body with 8-bit bytes goes out as is to a server without 8BITMIME:
// converting MIME is not this package's job, and in practice servers take it.
func (c *Client) writeMail(from string, size int64, eightBit, utf8 bool) {
	c.w.WriteString("MAIL FROM:<")
	c.w.WriteString(from)
	c.w.WriteByte('>')
	if c.extSize {
		c.w.WriteString(" SIZE=")
		c.scratch = strconv.AppendInt(c.scratch[:0], size, 10)
		c.w.Write(c.scratch)
	}
	if eightBit && c.ext8bit {
		c.w.WriteString(" BODY=8BITMIME")
	}
	if utf8 {
		c.w.WriteString(" SMTPUTF8")
	}
	if c.requireTLS {
		c.w.WriteString(" REQUIRETLS")
	}
	c.w.WriteString("\r\n")
}

func (c *Client) writeCmd(a, b, d string) {
	c.w.WriteString(a)
	c.w.WriteString(b)
	c.w.WriteString(d)
	c.w.WriteString("\r\n")
}

// checkAddr reports whether a can go between "<" and ">" in a command, and
// whether it needs SMTPUTF8. CR, LF and NUL would let it inject commands;
// "<" and ">" would let it inject parameters.
func checkAddr(a string) (ok, nonASCII bool) {
	for i := 0; i < len(a); i++ {
		switch b := a[i]; {
		case b == '\r' || b == '\n' || b == 0 || b == '<' || b == '>':
			return false, false
		case b >= 0x80:
			nonASCII = true
		}
	}
	return true, nonASCII
}

// bodyScan is what scanBody learns of a body in one pass.
type bodyScan struct {
	eightBit bool  // it has a byte >= 0x80
	size     int64 // bytes as sent: CRLF line ends, no dot-stuffing, no final dot (RFC 1870 §3)
	crlf     bool  // every line ends in CRLF: the body is its own canonical form
	dotted   bool  // a line starts with ".", which DATA must stuff
}

// asIs says DATA's content (writeLines with stuffing) is body unchanged:
// every line ends in CRLF and none starts with ".".
func (s bodyScan) asIs() bool { return s.crlf && !s.dotted }

// scanBody reads body once: its 8-bit bytes, its size as sent, its line ends
// and its leading dots.
func scanBody(body []byte) bodyScan {
	s := bodyScan{size: int64(len(body))}
	// 32 bytes a round, their high bits OR'ed: most bodies are ASCII and
	// scanned to the end.
	const high = 0x8080808080808080
	i := 0
	for ; i+32 <= len(body); i += 32 {
		w := binary.LittleEndian.Uint64(body[i:]) | binary.LittleEndian.Uint64(body[i+8:]) |
			binary.LittleEndian.Uint64(body[i+16:]) | binary.LittleEndian.Uint64(body[i+24:])
		if w&high != 0 {
			s.eightBit = true
			break
		}
	}
	for ; !s.eightBit && i < len(body); i++ {
		s.eightBit = body[i] >= 0x80
	}
	s.crlf = len(body) == 0 || body[len(body)-1] == '\n'
	s.dotted = len(body) > 0 && body[0] == '.'
	for off := 0; ; {
		j := bytes.IndexByte(body[off:], '\n')
		if j < 0 {
			break
		}
		p := off + j
		if p == 0 || body[p-1] != '\r' {
			s.size++ // bare LF, sent as CRLF
			s.crlf = false
		}
		if p+1 < len(body) && body[p+1] == '.' {
			s.dotted = true
		}
		off = p + 1
	}
	if len(body) > 0 && body[len(body)-1] != '\n' {
		s.size += 2 // the CRLF Send adds
	}
	return s
}

// writeLines buffers body with every line ending in CRLF: a bare LF becomes
// CRLF and a last line without a line end gets one, so it writes
// scanBody's size in bytes, plus a dot for each line starting with "."
// when stuff is set.
func writeLines(w *bufio.Writer, body []byte, stuff bool) {
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if stuff && len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
	}
}
