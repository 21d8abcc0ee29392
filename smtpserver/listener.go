package smtpserver

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// maxReplyBuf is how many octets of replies are held back before they are
// written even though the client's input has not run dry.
const maxReplyBuf = 4096

// kickWriteTimeout bounds the write of a parting 421 line: a client that
// does not read must not hold up a refusal or a shutdown.
const kickWriteTimeout = time.Second

const (
	replyTooManyConns = "421 4.7.0 Too many connections\r\n"
	replyShutdown     = "421 4.3.2 Service shutting down, try again later\r\n"
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
		if refusal == ReasonTooManyConnections {
			io.WriteString(c, replyTooManyConns)
		} else {
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

	closeOnce sync.Once

	wmu  sync.Mutex
	wbuf []byte

	mu      sync.Mutex
	busy    bool     // a transaction is open: MAIL accepted, DATA reply not yet written
	replyTo net.Conn // where go-smtp writes replies now; nil after STARTTLS until the next EHLO
	kicked  bool
	nmsg    int // transactions begun, for Received: ids
}

func newTrackedConn(c net.Conn, srv *Server, id uint64) *trackedConn {
	tc := &trackedConn{Conn: c, srv: srv, id: srv.idPrefix + strconv.FormatUint(id, 36)}
	tc.replyTo = tc
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		tc.remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return tc
}

// Write holds p back until the next Read (or Close, or a full buffer).
func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wbuf)+len(p) > maxReplyBuf {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > maxReplyBuf {
			return c.Conn.Write(p)
		}
	}
	c.wbuf = append(c.wbuf, p...)
	return len(p), nil
}

// Read sends the held-back replies before it may block waiting for the
// client, who may be waiting for them.
func (c *trackedConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
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
	c.Conn.SetWriteDeadline(time.Now().Add(kickWriteTimeout))
	c.flush()
	return c.Conn.Close()
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
	c.Conn.Close()
}
