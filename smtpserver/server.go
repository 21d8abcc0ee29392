package smtpserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/penstock-mta/penstock/config"
)

// Defaults for zero Config fields.
const (
	DefaultListen         = "127.0.0.1:2525" // injection on loopback unless configured (README.md, [smtp])
	DefaultMaxMessageSize = 10 << 20
	DefaultMaxRecipients  = 1000 // RFC 5321 §4.5.3.1.8 asks for at least 100
	DefaultMaxConnections = 100
	// RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for the
	// next command.
	DefaultReadTimeout  = 5 * time.Minute
	DefaultWriteTimeout = time.Minute
	// Postfix's anvil default (smtpd_client_connection_count_limit).
	DefaultMaxConnectionsPerClient = 50
	// Postfix's stress-mode smtpd_timeout.
	DefaultStressIdleTimeout = 10 * time.Second
	// Postfix's smtpd_hard_error_limit.
	DefaultMaxErrors = 20
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("smtpserver: server shut down")

// Envelope is the SMTP envelope of one accepted message.
type Envelope struct {
	From     string   // reverse path; "" for the null sender <>
	To       []string // recipients, duplicates removed, domains lower-cased
	Remote   netip.AddrPort
	Helo     string // the client's EHLO/HELO argument, control characters replaced by '_'
	User     string // authenticated user, "" if none
	SMTPUTF8 bool   // MAIL FROM had SMTPUTF8 (RFC 6531)
	Body8Bit bool   // BODY=8BITMIME was declared or the body has octets above 127
	// RequireTLS: MAIL FROM had REQUIRETLS (RFC 8689), taken only over TLS:
	// the message may only be relayed over TLS verified for the next hop.
	RequireTLS bool
	// Tenant is the customer the message is sent for when the injector
	// names it out of band (the HTTP API's "tenant"); "" leaves it to the
	// X-Penstock-Tenant header, if any.
	Tenant string
}

// Acceptor stores a message durably. Penstock answers 250 only after Accept
// returns nil, so Accept must not return before the message would survive a
// crash. An error that is (or wraps) an *smtp.SMTPError with a 4xx or 5xx
// code is passed to the client as is; any other error is answered
// "451 4.3.0 Temporary local problem, try again later". body is the message
// as stored: CRLF lines, Received: header first; Accept may keep it unless
// the Acceptor is a BodyBorrower. ctx is cancelled when Shutdown gives up
// waiting; Accept must then return soon.
type Acceptor interface {
	Accept(ctx context.Context, env *Envelope, body []byte) (id string, err error)
}

// BodyBorrower is an Acceptor that keeps nothing of body once Accept has
// returned. Its body is then the buffer the server read the message into,
// reused for later messages, rather than a copy made for it to keep: one
// allocation and one copy of every message fewer.
type BodyBorrower interface {
	Acceptor
	BorrowsBody()
}

// Config configures a Server. Zero values take the Default* constants.
type Config struct {
	Listen          string
	Hostname        string            // greeting and Received: name; default os.Hostname()
	AllowedNetworks []netip.Prefix    // relaying allowed without AUTH from these
	Users           map[string]string // AUTH PLAIN/LOGIN user -> password; AUTH offered only over TLS or to loopback
	MaxMessageSize  int64             // octets, as advertised with SIZE (RFC 1870)
	MaxRecipients   int               // per message
	MaxConnections  int               // concurrent sessions; beyond: 421 4.7.0 and close
	ReadTimeout     time.Duration     // per command, and for the whole DATA transfer
	WriteTimeout    time.Duration     // per reply
	TLSConfig       *tls.Config       // enables STARTTLS (RFC 3207)

	// MaxConnectionsPerClient caps the sessions of one client address (an
	// IPv6 client's whole /64) at once; clients in AllowedNetworks are
	// exempt, as Postfix exempts $mynetworks.
	MaxConnectionsPerClient int
	// ReservedConnections is how many of MaxConnections only privileged
	// clients may take: those in AllowedNetworks, and loopback clients when
	// Users is set (they may AUTH in clear). Zero means MaxConnections/10;
	// negative means none.
	ReservedConnections int
	// StressIdleTimeout replaces ReadTimeout as the wait for the client's
	// next octet while the server is under stress (at least 80% of
	// MaxConnections in use), so idle sessions give their slots back.
	StressIdleTimeout time.Duration
	// MaxErrors is how many error replies a session gets before it is
	// told "421 4.7.0 Too many errors" and closed.
	MaxErrors int
	// Clock drives the AUTH failure throttle; nil is the real clock.
	Clock Clock
}

// readBufferSize is each session's read buffer: 1.6 MB at the default
// MaxConnections. 64 KB measured no faster for 100 KB messages and kept
// 2 MiB more resident in the 2 KB benchmark.
const readBufferSize = 16 << 10

// Server is an SMTP injection server. Build it with New.
type Server struct {
	cfg      Config
	acc      Acceptor
	borrows  bool // acc is a BodyBorrower
	maxLine  int  // longest body line taken, its CRLF not counted; 0: any
	log      *slog.Logger
	smtp     *smtp.Server
	idPrefix string
	bufs     sync.Pool // *bytes.Buffer for reading DATA

	// acceptCtx is given to Acceptor calls; cancelled when Shutdown's
	// deadline passes.
	acceptCtx    context.Context
	cancelAccept context.CancelFunc

	draining atomic.Bool // set once by Shutdown; read on every MAIL
	stats    counters
	authFail *authThrottle

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[*trackedConn]struct{}
	perClient map[netip.Addr]int // open sessions by clientKey, for clients not in AllowedNetworks
	stressed  bool               // see updateStressLocked
	inflight  int                // Accept calls running
	connSeq   uint64             // connections admitted, for ids
	drained   chan struct{}      // closed when draining and no conns or Accept calls are left
}

// New checks cfg and returns a server ready to Serve.
func New(cfg Config, acc Acceptor, log *slog.Logger) (*Server, error) {
	if acc == nil {
		return nil, errors.New("smtpserver: no Acceptor")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:          cfg,
		acc:          acc,
		log:          log,
		idPrefix:     hex.EncodeToString(rnd[:]) + "-",
		acceptCtx:    ctx,
		cancelAccept: cancel,
		conns:        make(map[*trackedConn]struct{}),
		perClient:    make(map[netip.Addr]int),
		drained:      make(chan struct{}),
		authFail:     newAuthThrottle(cfg.Clock),
	}
	_, s.borrows = acc.(BodyBorrower)
	s.bufs.New = func() any { return new(bytes.Buffer) }

	ss := smtp.NewServer(smtp.BackendFunc(s.newSession))
	ss.Addr = cfg.Listen
	ss.Domain = cfg.Hostname
	// Advertised as SIZE and checked at MAIL SIZE= and during DATA. go-smtp
	// v0.25.1 refuses a message of exactly this many octets (its reader
	// fails when the budget reaches zero before it sees the end marker);
	// we keep the advertised number true to the config rather than fudge it.
	ss.MaxMessageBytes = cfg.MaxMessageSize
	// go-smtp's own recipient limit answers with its own text; ours answers
	// with RFC 5321 §4.5.3.1.10's "Too many recipients" (see session.Rcpt).
	ss.MaxRecipients = 0
	// A 100 KB message comes in 25 reads through go-smtp's default 4 KB
	// buffer, in about 7 through this one; the commands fit either way.
	ss.ReadBufferSize = readBufferSize
	// go-smtp holds DATA's lines to MaxLineLength (the CRLF counted) but
	// not a BDAT chunk's, which is counted, not read by lines (RFC 3030):
	// data holds a chunk to the same limit.
	if ss.MaxLineLength > 2 {
		s.maxLine = ss.MaxLineLength - 2
	}
	ss.ReadTimeout = cfg.ReadTimeout
	ss.WriteTimeout = cfg.WriteTimeout
	ss.TLSConfig = cfg.TLSConfig
	// go-smtp would allow AUTH only over TLS; we also allow it from loopback
	// and decide per session (session.AuthMechanisms).
	ss.AllowInsecureAuth = true
	ss.EnableSMTPUTF8 = true
	// go-smtp advertises REQUIRETLS only after STARTTLS (RFC 8689 §4.1);
	// session.mail refuses the parameter in clear text.
	ss.EnableREQUIRETLS = cfg.TLSConfig != nil
	ss.ErrorLog = errorLog{log}
	s.smtp = ss
	return s, nil
}

func (c *Config) setDefaults() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("smtpserver: no hostname configured and the system's is unknown: %w", err)
		}
		c.Hostname = h
	}
	if strings.ContainsAny(c.Hostname, " \t\r\n()") {
		return fmt.Errorf("smtpserver: hostname %q is not a host name", c.Hostname)
	}
	nonNegative := map[string]int64{
		"max message size": c.MaxMessageSize, "max recipients": int64(c.MaxRecipients),
		"max connections": int64(c.MaxConnections), "read timeout": int64(c.ReadTimeout),
		"write timeout": int64(c.WriteTimeout), "max connections per client": int64(c.MaxConnectionsPerClient),
		"stress idle timeout": int64(c.StressIdleTimeout), "max errors": int64(c.MaxErrors),
	}
	for name, v := range nonNegative {
		if v < 0 {
			return fmt.Errorf("smtpserver: %s is negative", name)
		}
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxMessageSize > 1<<32-1 {
		// go-smtp parses MAIL FROM SIZE= as a 32-bit number.
		return fmt.Errorf("smtpserver: max message size %d is over 4 GiB", c.MaxMessageSize)
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.MaxConnectionsPerClient == 0 {
		c.MaxConnectionsPerClient = DefaultMaxConnectionsPerClient
	}
	switch {
	case c.ReservedConnections == 0:
		c.ReservedConnections = c.MaxConnections / 10
	case c.ReservedConnections < 0:
		c.ReservedConnections = 0
	case c.ReservedConnections >= c.MaxConnections:
		return fmt.Errorf("smtpserver: %d reserved connections leave none of the %d for other clients", c.ReservedConnections, c.MaxConnections)
	}
	if c.StressIdleTimeout == 0 {
		c.StressIdleTimeout = min(DefaultStressIdleTimeout, c.ReadTimeout)
	}
	if c.MaxErrors == 0 {
		c.MaxErrors = DefaultMaxErrors
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	nets := make([]netip.Prefix, 0, len(c.AllowedNetworks))
	for _, p := range c.AllowedNetworks {
		if !p.IsValid() {
			return fmt.Errorf("smtpserver: allowed network %v is not valid", p)
		}
		nets = append(nets, config.NormalizePrefix(p))
	}
	c.AllowedNetworks = nets
	for u, p := range c.Users {
		if u == "" || p == "" {
			return fmt.Errorf("smtpserver: user %q has an empty name or password", u)
		}
	}
	return nil
}

// Serve serves SMTP on l until Shutdown, then returns nil; it returns
// ErrServerClosed if Shutdown came first.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	ll := &listener{Listener: l, srv: s}
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	s.log.Info("SMTP injection listening", "addr", l.Addr().String(), "hostname", s.cfg.Hostname,
		"max_connections", s.cfg.MaxConnections, "starttls", s.cfg.TLSConfig != nil)
	err := s.smtp.Serve(ll)
	if s.draining.Load() {
		return nil
	}
	return err
}

// ListenAndServe listens on Config.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("smtpserver: listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(l)
}

// Addr is the address of the first listener, nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// Shutdown stops accepting connections, closes idle sessions with 421, lets
// sessions in a transaction finish it (the client gets its reply; the
// session is closed right after), and returns nil when none is left. If ctx
// ends first, the remaining sessions are cut, Accept calls see their context
// cancelled, and Shutdown returns ctx's error once they are all gone. In
// either case no Accept call is running when Shutdown returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	listeners := s.listeners
	conns := s.connList()
	s.checkDrainedLocked()
	s.mu.Unlock()

	for _, l := range listeners {
		l.Close()
	}
	s.log.Info("SMTP injection shutting down", "sessions", len(conns))
	for _, c := range conns {
		// A client that does not read could stall the 421 write for
		// kickWriteTimeout; do not let one hold up the others.
		go c.kickIfIdle()
	}
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
	}
	s.cancelAccept()
	s.mu.Lock()
	conns = s.connList()
	s.mu.Unlock()
	s.log.Warn("SMTP injection shutdown deadline passed; closing sessions", "sessions", len(conns))
	for _, c := range conns {
		go c.kick()
	}
	// Every session is now unblocked: its socket is closed and its Accept
	// call, if any, has a cancelled context.
	<-s.drained
	return ctx.Err()
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	open, stressed := len(s.conns), s.stressed
	s.mu.Unlock()
	st := s.stats.snapshot(open)
	st.Stressed = stressed
	st.AuthThrottled = s.authFail.throttled()
	return st
}

// admit registers a new connection, or says why it is refused. Three limits
// apply, all decided by the client's address since nothing else is known at
// connect: MaxConnections for everyone; the last ReservedConnections slots
// for privileged clients only, so that a flood from outside cannot lock out
// the applications the server exists for; and MaxConnectionsPerClient for
// clients outside AllowedNetworks.
func (s *Server) admit(c net.Conn) (*trackedConn, string) {
	ip := remoteAddr(c).Addr()
	allowed := ip.IsValid() && s.relayAllowed(ip)
	privileged := allowed || (len(s.cfg.Users) > 0 && ip.IsLoopback())
	key := clientKey(ip)
	s.mu.Lock()
	defer s.mu.Unlock()
	open := len(s.conns)
	switch {
	case s.draining.Load():
		s.stats.reject(ReasonShuttingDown)
		return nil, ReasonShuttingDown
	case open >= s.cfg.MaxConnections,
		!privileged && open >= s.cfg.MaxConnections-s.cfg.ReservedConnections:
		s.stats.reject(ReasonTooManyConnections)
		return nil, ReasonTooManyConnections
	case !allowed && s.perClient[key] >= s.cfg.MaxConnectionsPerClient:
		s.stats.reject(ReasonTooManyFromClient)
		return nil, ReasonTooManyFromClient
	}
	s.connSeq++
	tc := newTrackedConn(c, s, s.connSeq)
	if !allowed {
		tc.client = key
		s.perClient[key]++
	}
	tc.stressed.Store(s.stressed)
	s.conns[tc] = struct{}{}
	s.stats.sessions.Add(1)
	s.updateStressLocked()
	return tc, ""
}

// release unregisters a connection go-smtp has finished with.
func (s *Server) release(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.client.IsValid() {
		if s.perClient[c.client]--; s.perClient[c.client] <= 0 {
			delete(s.perClient, c.client)
		}
	}
	s.updateStressLocked()
	s.checkDrainedLocked()
	s.mu.Unlock()
}

// updateStressLocked enters stress mode when at least 80% of MaxConnections
// are in use and leaves it at 60% or less; the gap keeps a load hovering at
// the threshold from flapping (and logging) on every connection. Under
// stress every session waits StressIdleTimeout rather than ReadTimeout for
// its client, as Postfix's stress mode shortens smtpd_timeout: idle
// sessions, the cheapest way to hold slots, are closed within seconds.
func (s *Server) updateStressLocked() {
	open, limit := len(s.conns), s.cfg.MaxConnections
	switch {
	case !s.stressed && open*5 >= limit*4:
		s.stressed = true
		s.stats.stressEntered.Add(1)
		s.log.Warn("SMTP injection under stress: idle sessions now time out sooner",
			"sessions", open, "max_connections", limit, "stress_idle_timeout", s.cfg.StressIdleTimeout)
	case s.stressed && open*5 <= limit*3:
		s.stressed = false
		s.log.Info("SMTP injection no longer under stress", "sessions", open, "max_connections", limit)
	default:
		return
	}
	for c := range s.conns {
		c.setStress(s.stressed)
	}
}

// clientKey is the unit the per-client limits count: the address, or for
// IPv6 its /64, which one client usually holds whole.
func clientKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// acceptStart and acceptDone bracket an Acceptor call, so that Shutdown can
// wait for it.
func (s *Server) acceptStart() {
	s.mu.Lock()
	s.inflight++
	s.mu.Unlock()
}

func (s *Server) acceptDone() {
	s.mu.Lock()
	s.inflight--
	s.checkDrainedLocked()
	s.mu.Unlock()
}

func (s *Server) checkDrainedLocked() {
	if !s.draining.Load() || len(s.conns) > 0 || s.inflight > 0 {
		return
	}
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
}

func (s *Server) connList() []*trackedConn {
	l := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		l = append(l, c)
	}
	return l
}

// relayAllowed reports whether a client at ip may relay without AUTH.
func (s *Server) relayAllowed(ip netip.Addr) bool {
	ip = ip.Unmap() // the prefixes are unmapped too (config.NormalizePrefix)
	for _, p := range s.cfg.AllowedNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// errorLog routes go-smtp's internal messages to slog: panics at error
// level, accept trouble at warn, broken sessions at debug (a client that
// drops the connection is no news).
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.emit(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.emit(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) emit(msg string) {
	switch {
	case strings.HasPrefix(msg, "panic"):
		e.log.Error("SMTP session panic", "detail", msg)
	case strings.HasPrefix(msg, "accept error"):
		e.log.Warn("SMTP accept error", "detail", msg)
	default:
		e.log.Debug("SMTP session error", "detail", msg)
	}
}
