package smtpserver

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-mta/penstock/internal/deadline"
)

// maxReplyBuf is how many octets of replies are held back before they are
// written even though the client's input has not run dry.
const maxReplyBuf = 4096

// kickWriteTimeout bounds the write of a parting 421 line: a client that
// does not read must not hold up a refusal or a shutdown.
const kickWriteTimeout = time.Second

const (
	replyTooManyConns  = "421 4.7.0 Too many connections\r\n"
	replyShutdown      = "421 4.3.2 Service shutting down, try again later\r\n"
	replyTooManyErrors = "421 4.7.0 Too many errors\r\n"
)

// listener wraps the real listener: it admits at most Config.MaxConnections
// connections at once and registers each admitted one with the server, so
// that Shutdown can find and drain it. Connections beyond the cap are told
// 421 and closed here; go-smtp never sees them.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, refusal := l.srv.admit(c)
		if tc != nil {
			return tc, nil
		}
		l.srv.log.Debug("connection refused", "remote", c.RemoteAddr().String(), "reason", refusal)
		c.SetWriteDeadline(time.Now().Add(kickWriteTimeout))
		switch refusal {
		case ReasonTooManyConnections:
			io.WriteString(c, replyTooManyConns)
		case ReasonTooManyFromClient:
			fmt.Fprintf(c, "421 4.7.0 Too many connections from your address (limit %d per client), try again later\r\n",
				l.srv.cfg.MaxConnectionsPerClient)
		default:
			io.WriteString(c, replyShutdown)
		}
		c.Close()
	}
}

// trackedConn is one admitted connection. go-smtp owns the protocol;
// trackedConn remembers whether a mail transaction is open (so Shutdown
// knows whether it may close the connection now) and where a parting 421
// may be written, and it batches replies.
//
// Batching (RFC 2920 §3.2): go-smtp writes each reply line with its own
// write, which costs a system call and usually a TCP segment per reply. Here
// writes are held back until go-smtp goes back to the socket for input, that
// is until the commands the client pipelined have all been answered, and are
// then sent together. A reply is never sent earlier than go-smtp wrote it,
// so the 250 to DATA still follows the Acceptor's return.
type trackedConn struct {
	net.Conn
	srv    *Server
	id     string
	remote netip.AddrPort
	client netip.Addr // clientKey counted in Server.perClient; invalid if exempt

	closeOnce sync.Once
	closed    chan struct{} // closed when the socket is closed, by anyone

	wmu     sync.Mutex
	wbuf    []byte
	midLine bool // the reply stream's last write did not end a line
	cut     bool // closed for too many errors; later writes are dropped

	// errs counts the session's error replies (see countsAsError) against
	// Config.MaxErrors; errLimit is set when a TLS session reaches it, so
	// that the next Read, after the last reply has gone out, closes.
	errs     atomic.Int64
	errLimit atomic.Bool

	// Read deadline: what go-smtp asked for, and whether stress mode
	// shortens it (applyDeadlineLocked); applied is the socket's deadline
	// when it was set with slack (zero otherwise).
	dmu          sync.Mutex
	readDeadline time.Time
	applied      time.Time
	stressed     atomic.Bool

	wdmu     sync.Mutex
	wApplied time.Time // the socket's write deadline, zero if none

	mu      sync.Mutex
	busy    bool     // a transaction is open: MAIL accepted, DATA reply not yet written
	replyTo net.Conn // where go-smtp writes replies now; nil after STARTTLS until the next EHLO
	kicked  bool
	nmsg    int // transactions begun, for Received: ids
}

func newTrackedConn(c net.Conn, srv *Server, id uint64) *trackedConn {
	tc := &trackedConn{Conn: c, srv: srv, id: srv.idPrefix + strconv.FormatUint(id, 36),
		remote: remoteAddr(c), closed: make(chan struct{})}
	tc.replyTo = tc
	return tc
}

// remoteAddr is c's peer, IPv4-mapped addresses unmapped.
func remoteAddr(c net.Conn) netip.AddrPort {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// Write holds p back until the next Read (or Close, or a full buffer). On
// the way it counts error replies; the one that reaches Config.MaxErrors is
// followed by "421 4.7.0 Too many errors" and the connection is closed at
// once (RFC 5321 §3.8), even if the client has pipelined more commands.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.cut {
		return len(p), nil
	}
	nerr := c.scanRepliesLocked(p)
	if len(c.wbuf)+len(p) > maxReplyBuf {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxReplyBuf {
			return c.Conn.Write(p)
		}
	}
	c.wbuf = append(c.wbuf, p...)
	if nerr > 0 && c.addErrors(nerr) {
		c.wbuf = append(c.wbuf, replyTooManyErrors...)
		c.cut = true
		c.mu.Lock()
		c.kicked = true
		c.mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(kickWriteTimeout))
		c.flushLocked()
		c.closeSocket()
	}
	return len(p), nil
}

// scanRepliesLocked counts the error replies in p, a piece of the reply
// stream. After STARTTLS the stream is TLS records, which are skipped (a
// record starts with a content type, 0x14 to 0x17, never a digit); errors
// in a TLS session are counted by the session instead (session.fail).
func (c *trackedConn) scanRepliesLocked(p []byte) int {
	if len(p) > 0 && p[0] >= 0x14 && p[0] <= 0x17 {
		c.midLine = false
		return 0
	}
	n := 0
	for len(p) > 0 {
		line := p
		end := bytes.IndexByte(p, '\n')
		if end >= 0 {
			line, p = p[:end+1], p[end+1:]
		} else {
			p = nil
		}
		if !c.midLine && replyLineIsError(line) {
			n++
		}
		c.midLine = end < 0
	}
	return n
}

// replyLineIsError parses the start of a reply line, "NNN X.Y.Z text"
// (RFC 3463 enhanced code); continuation lines ("NNN-") are not replies.
func replyLineIsError(line []byte) bool {
	if len(line) < 4 || line[3] != ' ' || (line[0] != '4' && line[0] != '5') {
		return false
	}
	code, err := strconv.Atoi(string(line[:3]))
	if err != nil {
		return false
	}
	subject, detail := -1, -1
	if f := bytes.Fields(line[4:]); len(f) > 0 {
		if parts := bytes.Split(f[0], []byte{'.'}); len(parts) == 3 {
			s, err1 := strconv.Atoi(string(parts[1]))
			d, err2 := strconv.Atoi(string(parts[2]))
			if err1 == nil && err2 == nil {
				subject, detail = s, d
			}
		}
	}
	return countsAsError(code, subject, detail)
}

// countsAsError says whether a reply counts toward Config.MaxErrors. Like
// Postfix's smtpd_hard_error_limit it counts the 4xx and 5xx replies, but
// not those a correct client may get many of through no fault of its own:
// 421 (the session ends anyway), RFC 3463 X.3.X (trouble on our side: the
// spool failed, shutting down, message too large) and X.5.3 "Too many
// recipients" (RFC 5321 §4.5.3.1.10: the client is to send the rest in
// another transaction).
func countsAsError(code, subject, detail int) bool {
	switch {
	case code < 400 || code > 599 || code == 421:
		return false
	case subject == 3, subject == 5 && detail == 3:
		return false
	}
	return true
}

// addErrors counts n error replies and reports whether the count has just
// reached Config.MaxErrors.
func (c *trackedConn) addErrors(n int) bool {
	limit := int64(c.srv.cfg.MaxErrors)
	after := c.errs.Add(int64(n))
	if after < limit || after-int64(n) >= limit {
		return false
	}
	c.srv.stats.reject(ReasonTooManyErrors)
	c.srv.log.Info("too many errors; closing session", "conn", c.id, "remote", c.remote.String(), "errors", after)
	return true
}

// Read sends the held-back replies before it may block waiting for the
// client, who may be waiting for them.
func (c *trackedConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if c.errLimit.Load() {
		// A TLS session reached MaxErrors; its last reply is out.
		c.closeWith(replyTooManyErrors)
		return 0, net.ErrClosed
	}
	if c.stressed.Load() {
		// Under stress the timeout is for silence: every read re-arms it.
		c.dmu.Lock()
		c.applyDeadlineLocked()
		c.dmu.Unlock()
	}
	return c.Conn.Read(p)
}

// SetReadDeadline records go-smtp's deadline (set before each command, and
// covering the DATA transfer) and applies it, shortened under stress.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.readDeadline = t
	return c.applyDeadlineLocked()
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetWriteDeadline applies a write deadline with slack (package deadline):
// go-smtp asks for one before every reply, four times per message.
func (c *trackedConn) SetWriteDeadline(t time.Time) error {
	c.wdmu.Lock()
	defer c.wdmu.Unlock()
	if !t.IsZero() {
		set, ok := deadline.Slack(c.wApplied, t)
		if !ok {
			return nil
		}
		t = set
	}
	c.wApplied = t
	return c.Conn.SetWriteDeadline(t)
}

// applyDeadlineLocked sets the socket's read deadline: go-smtp's, or under
// stress no later than StressIdleTimeout from now. A session that keeps
// sending (a long DATA transfer) is thus not cut; one that is silent is.
// Out of stress go-smtp's deadline is set with slack (package deadline): it
// asks for one before every command line, three times per message.
func (c *trackedConn) applyDeadlineLocked() error {
	d := c.readDeadline
	if !d.IsZero() && !c.stressed.Load() {
		set, ok := deadline.Slack(c.applied, d)
		if !ok {
			return nil
		}
		c.applied = set
		return c.Conn.SetReadDeadline(set)
	}
	c.applied = time.Time{}
	if c.stressed.Load() {
		if s := time.Now().Add(c.srv.cfg.StressIdleTimeout); d.IsZero() || s.Before(d) {
			d = s
		}
	}
	return c.Conn.SetReadDeadline(d)
}

// setStress turns stress mode on or off for this connection; a read
// already waiting gets the new deadline at once.
func (c *trackedConn) setStress(on bool) {
	c.dmu.Lock()
	c.stressed.Store(on)
	c.applyDeadlineLocked()
	c.dmu.Unlock()
}

// closeSocket closes the socket and announces it on c.closed.
func (c *trackedConn) closeSocket() error {
	err := c.Conn.Close()
	c.mu.Lock()
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	c.mu.Unlock()
	return err
}

func (c *trackedConn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *trackedConn) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

// Close is called by go-smtp when it is done with the connection (QUIT,
// error, end of the session). The slot is freed before the socket closes so
// that a client which sees the close can connect again at once.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() { c.srv.release(c) })
	// The last replies (221, or TLS's close_notify) are still held back.
	// A fresh deadline: crypto/tls sets the write deadline to "now" after
	// queueing close_notify, expecting it to be written already.
	c.SetWriteDeadline(time.Now().Add(kickWriteTimeout))
	c.flush()
	return c.closeSocket()
}

// trackedOf finds our wrapper under what go-smtp's Conn.Conn returns, which
// is a *tls.Conn after STARTTLS.
func trackedOf(nc net.Conn) *trackedConn {
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	tc, _ := nc.(*trackedConn)
	return tc
}

// setReplyTo records the connection go-smtp writes to (nil: do not write).
func (c *trackedConn) setReplyTo(w net.Conn) {
	c.mu.Lock()
	c.replyTo = w
	c.mu.Unlock()
}

// beginTx marks a transaction open and returns its sequence number in the
// connection. During Shutdown it instead closes the connection with 421 and
// returns ok=false: no new transaction starts once draining has begun.
func (c *trackedConn) beginTx() (n int, ok bool) {
	c.mu.Lock()
	if c.kicked {
		// Closed already (too many errors): commands the client pipelined
		// before it saw the 421 start nothing.
		c.mu.Unlock()
		return 0, false
	}
	if c.srv.draining.Load() {
		c.mu.Unlock()
		c.kick()
		return 0, false
	}
	c.busy = true
	c.nmsg++
	n = c.nmsg
	c.mu.Unlock()
	return n, true
}

// endTx marks the transaction closed; go-smtp calls it (through
// Session.Reset) after it has written the DATA reply. During Shutdown this
// is the moment the session is finished, so the connection is closed.
func (c *trackedConn) endTx() {
	c.mu.Lock()
	c.busy = false
	c.mu.Unlock()
	if c.srv.draining.Load() {
		c.kick()
	}
}

// detach forgets the session's transaction and reply writer: go-smtp ends
// the session at the end of the connection and at STARTTLS, after which a
// plain-text 421 would corrupt the TLS stream.
func (c *trackedConn) detach() {
	c.mu.Lock()
	c.busy = false
	c.replyTo = nil
	c.mu.Unlock()
	if c.srv.draining.Load() {
		c.kick()
	}
}

// kickIfIdle closes the connection unless a transaction is open.
func (c *trackedConn) kickIfIdle() {
	c.mu.Lock()
	busy := c.busy
	c.mu.Unlock()
	if !busy {
		c.kick()
	}
}

// kick tells the client 421 (RFC 5321 §3.8: a server closing on its own
// initiative says 421 first) and closes the socket under go-smtp, whose read
// then fails and ends the session. The write may interleave with a reply
// go-smtp is writing at that instant; the connection is going away anyway.
func (c *trackedConn) kick() {
	c.closeWith(replyShutdown)
}

func (c *trackedConn) closeWith(line string) {
	c.mu.Lock()
	if c.kicked {
		c.mu.Unlock()
		return
	}
	c.kicked = true
	w := c.replyTo
	c.mu.Unlock()
	if w != nil {
		c.SetWriteDeadline(time.Now().Add(kickWriteTimeout))
		io.WriteString(w, line)
		c.flush()
	}
	c.closeSocket()
}
