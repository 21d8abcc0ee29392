package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/internal/deadline"
)

// Default timeouts, RFC 5321 §4.5.3.2.
const (
	DefaultConnectTimeout = 30 * time.Second // not in the RFC; a dead MX should not hold a connection slot for long
	DefaultCommandTimeout = 5 * time.Minute  // §4.5.3.2.1-4: greeting, MAIL, RCPT, DATA initiation
	DefaultDataTimeout    = 10 * time.Minute // §4.5.3.2.6: reply to the final dot
)

// Buffer sizes. The writer holds a whole pipelined command group and most of
// a typical message, so a Send is usually two or three write system calls.
const (
	readBufSize  = 4096
	writeBufSize = 16 << 10
	// pipelineWindow bounds the bytes of commands written before their
	// replies are read. RFC 2920 §3.1 warns that a client which writes
	// without reading can deadlock once both TCP windows fill; with a few
	// kilobytes in flight that cannot happen. Most sends fit in one window.
	pipelineWindow = 8 << 10
)

// A connection's buffers go back to these pools when it closes. A campaign
// to many domains opens a connection or two per domain, each delivering a
// message or two: fresh buffers were a quarter of all bytes allocated, and
// the garbage collection they caused.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

// Options configure one connection. The queue fills them from the matched MX
// rule and the source the connection leaves from.
type Options struct {
	LocalAddr netip.Addr // source IP to bind; zero = any
	EHLO      string     // our EHLO name (the source's host name); required
	TLS       TLSMode
	// TLSConfig is an optional base config, cloned per connection with
	// ServerName set. Give it a ClientSessionCache to resume TLS sessions
	// across connections to the same MX. InsecureSkipVerify is overridden:
	// true for Opportunistic and Required (RFC 7435), false for Verify.
	// Its VerifyConnection, if any, runs in every mode and fails the
	// handshake when it returns an error: DANE (RFC 7672) checks TLSA
	// records there with TLSRequired.
	TLSConfig  *tls.Config
	ServerName string // MX host name, for SNI and (Verify) the certificate check
	// VerifyAuthenticates says TLSConfig's VerifyConnection authenticates
	// the server by itself (DANE, RFC 7672): a handshake it passed counts
	// as Verified even when the chain does not reach the roots or name
	// ServerName (DANE-EE ignores both, RFC 7672 §3.1.1).
	VerifyAuthenticates bool

	// Zero means the default (30s, 5m, 10m). RFC 5321 §4.5.3.2.
	ConnectTimeout, CommandTimeout, DataTimeout time.Duration

	// NoChunking never sends BDAT, even to a server that offers CHUNKING
	// (RFC 3030): the body goes after DATA, dot-stuffed. For a receiver
	// whose BDAT is broken.
	NoChunking bool

	// Dialer is optional; the default is a net.Dialer bound to LocalAddr.
	// A custom Dialer binds the source itself (LocalAddr is not passed to it).
	Dialer Dialer
}

// Dialer opens the TCP connection. The default binds Options.LocalAddr; tests
// and the simulator may supply their own.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is one SMTP connection to one MX IP. It is not safe for concurrent
// use: a single session goroutine owns it.
type Client struct {
	netConn net.Conn // the TCP connection; Close closes this one (see Close)
	conn    net.Conn // netConn, or the TLS connection over it
	r       *bufio.Reader
	w       *bufio.Writer
	rr      rawReply  // the last reply read, buffers reused
	dl      time.Time // the deadline that deadline set last; zero once set elsewhere
	scratch []byte    // number formatting for MAIL parameters

	opts     Options
	greeting Reply
	ext      map[string]string

	extEnhanced, extPipelining, ext8bit, extUTF8, extSize, extChunking bool
	maxSize                                                            int64 // SIZE limit, 0 = none given

	tls      bool
	verified bool // the certificate verified for ServerName (RFC 6125)
	tlsErr   *Error
	// requireTLS: the next Send is a REQUIRETLS transaction (RFC 8689).
	requireTLS bool
	broken     bool
	closed     bool
	messages   int
}

// Dial connects to addr ("ip:port"), reads the greeting, says EHLO (HELO if
// EHLO is refused with 5xx), negotiates STARTTLS as opts.TLS says and says
// EHLO again over TLS. Every failure is an *Error. If an opportunistic TLS
// handshake fails, Dial connects again without STARTTLS and reports the
// handshake error in TLSError.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.DataTimeout <= 0 {
		opts.DataTimeout = DefaultDataTimeout
	}
	if err := opts.check(); err != nil {
		return nil, localErr("connect", err)
	}
	c, err := dialOnce(ctx, addr, opts, false)
	var te *Error
	if err != nil && opts.TLS == TLSOpportunistic && errors.As(err, &te) && te.Command == "TLS" && ctx.Err() == nil {
		// A failed handshake leaves the session in an unknown state and the
		// server may already have dropped it: start over in clear text, as
		// opportunistic TLS promises delivery over protection (RFC 7435 §3).
		// The first connection is closed before the second opens, so a
		// connection quota is never exceeded.
		c, err = dialOnce(ctx, addr, opts, true)
		if err == nil {
			c.tlsErr = te
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (o *Options) check() error {
	if o.EHLO == "" || strings.ContainsAny(o.EHLO, " \t\r\n\x00") {
		return fmt.Errorf("invalid EHLO name %q: set the source's host name", o.EHLO)
	}
	if o.TLS < TLSDisabled || o.TLS > TLSVerify {
		return fmt.Errorf("invalid TLS mode %d", o.TLS)
	}
	if o.TLS == TLSVerify && o.ServerName == "" {
		return errors.New("TLS mode verify needs the MX host name in ServerName")
	}
	return nil
}

func dialOnce(ctx context.Context, addr string, opts Options, skipTLS bool) (*Client, error) {
	d := opts.Dialer
	if d == nil {
		// No TCP keepalive: every read and write has a deadline, and a
		// connection idles 2 s at most, so the probes would never fire;
		// turning them on costs four system calls per connection.
		nd := &net.Dialer{KeepAlive: -1}
		if opts.LocalAddr.IsValid() {
			nd.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(opts.LocalAddr.Unmap(), 0))
		}
		d = nd
	}
	dctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	conn, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return nil, localErr("connect", err)
	}
	c := &Client{
		netConn: conn,
		conn:    conn,
		r:       readers.Get().(*bufio.Reader),
		w:       writers.Get().(*bufio.Writer),
		opts:    opts,
	}
	c.r.Reset(conn)
	c.w.Reset(conn)
	stop := c.watch(ctx)
	e := c.open(ctx, skipTLS)
	c.unwatch(stop)
	if e == nil && c.broken {
		// Cancelled just as the session opened.
		e = localErr("EHLO", fmt.Errorf("%w: %w", ErrBroken, context.Cause(ctx)))
	}
	if e != nil {
		c.abort()
		return nil, e
	}
	return c, nil
}

// open runs the session start: greeting, EHLO, STARTTLS, EHLO again.
func (c *Client) open(ctx context.Context, skipTLS bool) *Error {
	// RFC 5321 §4.5.3.2.1: wait up to 5 minutes for the 220 greeting.
	c.deadline(ctx, c.opts.CommandTimeout)
	if e := c.recv(ctx, "greeting"); e != nil {
		return e
	}
	c.greeting = c.rr.reply()
	// RFC 5321 §3.1: 220 is the only greeting to go on; 554 (or a 4xx from
	// a busy or throttling server) means no service.
	if c.greeting.Code/100 != 2 {
		return replyErr("greeting", c.greeting)
	}
	if e := c.hello(ctx); e != nil {
		return e
	}
	if skipTLS || c.opts.TLS == TLSDisabled {
		return nil
	}
	return c.startTLS(ctx)
}

// hello says EHLO and records the extensions, falling back to HELO when EHLO
// is refused as unknown (RFC 5321 §4.1.1.1, §3.2).
func (c *Client) hello(ctx context.Context) *Error {
	rep, e := c.cmd(ctx, "EHLO", "EHLO ", c.opts.EHLO)
	if e != nil {
		return e
	}
	if rep.Code/100 == 2 {
		c.parseExtensions(rep.Text)
		return nil
	}
	if rep.Code/100 != 5 {
		return replyErr("EHLO", rep)
	}
	rep, e = c.cmd(ctx, "HELO", "HELO ", c.opts.EHLO)
	if e != nil {
		return e
	}
	if rep.Code/100 != 2 {
		return replyErr("HELO", rep)
	}
	c.parseExtensions("")
	return nil
}

// parseExtensions reads the EHLO reply text: the first line is the server's
// name, each further line an extension keyword and its parameters
// (RFC 5321 §4.1.1.1). Keywords are case-insensitive and stored upper case.
func (c *Client) parseExtensions(text string) {
	c.ext = map[string]string{}
	c.extEnhanced, c.extPipelining, c.ext8bit, c.extUTF8, c.extSize, c.extChunking = false, false, false, false, false, false
	c.maxSize = 0
	lines := strings.Split(text, "\n")
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(strings.TrimSpace(l), " ")
		if kw == "" {
			continue
		}
		kw = strings.ToUpper(kw)
		params = strings.TrimSpace(params)
		c.ext[kw] = params
		switch kw {
		case "ENHANCEDSTATUSCODES":
			c.extEnhanced = true
		case "PIPELINING":
			c.extPipelining = true
		case "8BITMIME":
			c.ext8bit = true
		case "SMTPUTF8":
			c.extUTF8 = true
		case "CHUNKING":
			c.extChunking = true
		case "SIZE":
			// RFC 1870 §4: "SIZE" alone or "SIZE 0" means no fixed limit.
			c.extSize = true
			if n, err := strconv.ParseInt(params, 10, 64); err == nil && n > 0 {
				c.maxSize = n
			}
		}
	}
}

// startTLS runs STARTTLS (RFC 3207) as the mode says, then EHLO again.
func (c *Client) startTLS(ctx context.Context) *Error {
	mode := c.opts.TLS
	if _, ok := c.ext["STARTTLS"]; !ok {
		if mode == TLSOpportunistic {
			return nil
		}
		// Not offered: the server's doing (or a man in the middle stripping
		// it), hence not Local; temporary, as MTA-STS treats it (RFC 8461 §5).
		return &Error{Command: "STARTTLS", Err: ErrNoSTARTTLS}
	}
	rep, e := c.cmd(ctx, "STARTTLS", "STARTTLS", "")
	if e != nil {
		return e
	}
	if rep.Code != 220 {
		e := replyErr("STARTTLS", rep)
		// A refused STARTTLS is a policy failure, not a verdict on the
		// message: never permanent.
		e.Permanent = false
		if mode == TLSOpportunistic && !c.broken {
			// The session is still in its pre-TLS state: go on in clear text.
			c.tlsErr = e
			return nil
		}
		return e
	}
	// Nothing may follow the 220 before the handshake. Bytes already
	// buffered would have been read as if protected by TLS: command
	// injection by a man in the middle (CVE-2011-0411).
	if c.r.Buffered() > 0 {
		c.broken = true
		return &Error{Command: "STARTTLS", Err: protoErr("server sent data after its STARTTLS reply")}
	}
	cfg := &tls.Config{}
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	}
	cfg.ServerName = c.opts.ServerName
	cfg.InsecureSkipVerify = mode != TLSVerify
	tc := tls.Client(c.netConn, cfg)
	c.deadline(ctx, c.opts.CommandTimeout)
	if err := tc.HandshakeContext(ctx); err != nil {
		cmd := "STARTTLS"
		if mode == TLSOpportunistic {
			cmd = "TLS" // Dial retries in clear text on this one
		}
		return c.ioErr(ctx, cmd, err)
	}
	c.conn = tc
	c.r.Reset(tc)
	c.w.Reset(tc)
	c.tls = true
	// Opportunistic and required sessions accept any certificate (RFC 7435);
	// whether it would have verified is still worth knowing (REQUIRETLS,
	// the delivery log).
	c.verified = mode == TLSVerify || (c.opts.VerifyAuthenticates && cfg.VerifyConnection != nil) ||
		verifyPeer(tc.ConnectionState(), cfg.RootCAs, c.opts.ServerName)
	// RFC 3207 §4.2: discard what we knew and ask again; extensions may
	// differ over TLS.
	return c.hello(ctx)
}

// abort ends a session that failed to open: a polite QUIT when the session
// is in sync (RFC 5321 §3.1 after a refusing greeting), without waiting for
// its reply, then close.
func (c *Client) abort() {
	if !c.broken {
		c.dl = time.Time{}
		c.netConn.SetDeadline(time.Now().Add(min(c.opts.CommandTimeout, 5*time.Second)))
		c.w.WriteString("QUIT\r\n")
		c.w.Flush()
	}
	c.Close()
}

// Reset sends RSET (RFC 5321 §4.1.1.5), abandoning a transaction. Send does
// this itself where needed; Reset is for callers that want a known state.
func (c *Client) Reset(ctx context.Context) error {
	if c.broken {
		return localErr("RSET", ErrBroken)
	}
	stop := c.watch(ctx)
	defer c.unwatch(stop)
	if e := c.rset(ctx); e != nil {
		return e
	}
	return nil
}

func (c *Client) rset(ctx context.Context) *Error {
	rep, e := c.cmd(ctx, "RSET", "RSET", "")
	if e != nil {
		return e
	}
	if rep.Code/100 != 2 {
		// A server that refuses RSET is in a state we cannot know.
		c.broken = true
		return replyErr("RSET", rep)
	}
	return nil
}

// Quit sends QUIT (RFC 5321 §4.1.1.10), waits for the reply and closes the
// connection. On a broken client it only closes.
func (c *Client) Quit(ctx context.Context) error {
	if c.closed {
		return nil
	}
	defer c.Close()
	if c.broken {
		return nil
	}
	stop := c.watch(ctx)
	defer c.unwatch(stop)
	rep, e := c.cmd(ctx, "QUIT", "QUIT", "")
	if e != nil {
		return e
	}
	if rep.Code/100 != 2 {
		return replyErr("QUIT", rep)
	}
	// RFC 5321 §4.1.1.10: the server closes after its reply to QUIT. Wait
	// (briefly) for that close, so that a connection quota counts the
	// connection as open until the server itself has let go of it.
	c.dl = time.Time{}
	c.netConn.SetReadDeadline(time.Now().Add(time.Second))
	var b [64]byte
	for i := 0; i < 4; i++ {
		if _, err := c.netConn.Read(b[:]); err != nil {
			break
		}
	}
	return nil
}

// Close closes the connection without QUIT. It closes the TCP connection
// under TLS directly: a TLS close_notify could block on a peer that stalls.
func (c *Client) Close() error {
	c.broken = true
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.netConn.Close()
	// Nothing reads or writes a broken client (every command checks), so
	// the buffers can serve another connection. Reset drops this one's
	// bytes and connection; nil makes a use after Close fail loudly here
	// rather than touch another connection's buffer.
	c.r.Reset(nil)
	c.w.Reset(nil)
	readers.Put(c.r)
	writers.Put(c.w)
	c.r, c.w = nil, nil
	return err
}

// Broken reports whether the connection is unusable: a network error, a 421
// reply, a protocol desync, cancellation, or Close. Dial a new one.
func (c *Client) Broken() bool { return c.broken }

// TLS reports whether STARTTLS was negotiated.
func (c *Client) TLS() bool { return c.tls }

// TLSError is why an opportunistic STARTTLS did not protect this connection
// (handshake failure, after which Dial reconnected in clear text, or a
// refused STARTTLS), or nil.
func (c *Client) TLSError() error {
	if c.tlsErr == nil {
		return nil
	}
	return c.tlsErr
}

// Verified reports whether the TLS session's certificate verified for the
// MX host name (ServerName) against the roots of Options.TLSConfig (nil:
// the system's), whatever the mode, or passed the VerifyConnection of an
// Options.VerifyAuthenticates connection (DANE).
func (c *Client) Verified() bool { return c.tls && c.verified }

// SetRequireTLS makes the following Sends REQUIRETLS transactions (RFC
// 8689 §4.1): refused with ErrRequireTLS unless the connection is TLS with
// a verified certificate and the server advertises REQUIRETLS, and sent
// with the REQUIRETLS MAIL parameter.
func (c *Client) SetRequireTLS(on bool) { c.requireTLS = on }

func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool, name string) bool {
	if len(cs.PeerCertificates) == 0 || name == "" {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err == nil
}

// TLSConnectionState returns the TLS state, or nil without TLS.
func (c *Client) TLSConnectionState() *tls.ConnectionState {
	if tc, ok := c.conn.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}

// Extensions returns a copy of the EHLO extensions: upper-case keyword to
// parameters ("SIZE" -> "35882577"). Empty after a HELO fallback.
func (c *Client) Extensions() map[string]string { return maps.Clone(c.ext) }

// Extension returns the parameters of one EHLO extension (upper-case
// keyword) and whether the server offered it, without copying the rest:
// a connection carrying several domains' mail asks at each.
func (c *Client) Extension(keyword string) (string, bool) {
	v, ok := c.ext[keyword]
	return v, ok
}

// RemoteAddr is the MX address connected to.
func (c *Client) RemoteAddr() net.Addr { return c.netConn.RemoteAddr() }

// LocalAddr is the source address the connection leaves from.
func (c *Client) LocalAddr() net.Addr { return c.netConn.LocalAddr() }

// Greeting is the server's 220 greeting.
func (c *Client) Greeting() Reply { return c.greeting }

// Messages counts transactions begun (MAIL FROM sent) on this connection,
// whatever their outcome: what a messages-per-connection quota counts.
func (c *Client) Messages() int { return c.messages }

// watch closes the connection when ctx is done, which unblocks any read or
// write in progress. It costs nothing for a context that is never done.
func (c *Client) watch(ctx context.Context) func() bool {
	if ctx.Done() == nil {
		return nil
	}
	return context.AfterFunc(ctx, func() { c.netConn.Close() })
}

// unwatch stops watching; if the context fired, the connection is gone.
func (c *Client) unwatch(stop func() bool) {
	if stop != nil && !stop() {
		c.broken = true
	}
}

// deadline bounds the next reads and writes by d, or by ctx's deadline if
// that is sooner. Set before every command and every reply.
//
// A Send asks six times within microseconds: the deadline is set with
// package deadline's slack (never sooner than asked, at most d/64 later).
// A context deadline is set as it is.
func (c *Client) deadline(ctx context.Context, d time.Duration) {
	t := time.Now().Add(d)
	set, ok := deadline.Slack(c.dl, t)
	if dl, has := ctx.Deadline(); has && dl.Before(t) {
		set, ok = dl, !c.dl.Equal(dl)
	}
	if !ok {
		return
	}
	c.dl = set
	// An error here means the connection is closed; the next I/O reports it.
	c.netConn.SetDeadline(set)
}

// cmd writes one command line (verb+arg, two strings to spare a
// concatenation), reads its reply, and returns it.
func (c *Client) cmd(ctx context.Context, name, verb, arg string) (Reply, *Error) {
	c.deadline(ctx, c.opts.CommandTimeout)
	c.w.WriteString(verb)
	c.w.WriteString(arg)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return Reply{}, c.ioErr(ctx, name, err)
	}
	if e := c.recv(ctx, name); e != nil {
		return Reply{}, e
	}
	return c.rr.reply(), nil
}

// recv reads one reply into c.rr under the deadline already set. A 421 marks
// the client broken: the server is closing the connection (RFC 5321 §3.8).
func (c *Client) recv(ctx context.Context, name string) *Error {
	if err := readReply(c.r, &c.rr, c.extEnhanced); err != nil {
		return c.ioErr(ctx, name, err)
	}
	if c.rr.code == 421 {
		c.broken = true
	}
	return nil
}

// ioErr marks the client broken and describes a failed read or write: a
// protocol error is the remote's doing, anything else is local/network.
func (c *Client) ioErr(ctx context.Context, name string, err error) *Error {
	c.broken = true
	if isProtocol(err) {
		return &Error{Command: name, Err: err}
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w: %w", ctxErr, err)
	}
	return localErr(name, err)
}
