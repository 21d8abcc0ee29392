package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxLineLen bounds a command or text line, CRLF excluded. RFC 5321 §4.5.3.1.6
	// asks for 1000 octets at least; we are generous, but bounded, so a hostile
	// client cannot make us buffer without end.
	maxLineLen = 4096
	// maxMessageSize is advertised with SIZE (RFC 1870) and enforced at DATA.
	maxMessageSize = 50 << 20
	// maxRecipients per transaction; RFC 5321 §4.5.3.1.8 asks for at least 100.
	maxRecipients = 1000
	// maxErrors: after this many bad commands on one connection we hang up.
	maxErrors = 20
	// idleTimeout bounds every read and write on a connection.
	idleTimeout = 60 * time.Second
	// maxTimes caps Arrivals, AttemptTimes and the distinct keys of RcptSeen.
	maxTimes = 2_000_000
	// rateWindow is the sliding window of Behavior.RateLimit.
	rateWindow = time.Minute

	readBufSize  = 16 << 10
	writeBufSize = 4 << 10
	// maxDiscard bounds how much of an overlong command line we skip before
	// giving up on the connection.
	maxDiscard = 1 << 20
)

// Stall and drop points of Behavior.StallAt and Behavior.DropAt.
const (
	AtGreeting = "greeting"
	AtMail     = "MAIL"
	AtRcpt     = "RCPT"
	AtData     = "DATA"
	AtDot      = "DOT"
)

// Behavior scripts how a Provider answers. The zero value is a well-behaved provider
// that accepts everything. Reply strings are single lines: a 3-digit code, a space,
// an enhanced status code (RFC 3463) and text, without CRLF.
type Behavior struct {
	// Name is the provider's host name in the greeting and EHLO reply ("sim" if empty).
	Name string
	// Greeting replaces "220 <Name> ESMTP sim". A greeting that does not start with
	// 2 (e.g. "421 4.7.0 Try later") is sent, then the connection is closed and
	// counted in Stats.RejectedConns.
	Greeting string
	// Refuse simulates an outage: the listeners are closed (connect gets "connection
	// refused") and open connections are dropped. Setting it back to false listens
	// again on the same addresses and ports.
	Refuse bool
	// STARTTLS offers STARTTLS (RFC 3207) with a self-signed certificate made at start.
	STARTTLS bool
	// Certificate, when set, is presented in the STARTTLS handshake instead of the
	// self-signed one (a leaf from a test CA, see NewCA), so clients that verify
	// certificates (MTA-STS, DANE) can be tested.
	Certificate *tls.Certificate
	// NoPipelining stops advertising PIPELINING and enforces it: a client that sends
	// a command before it has the reply to the previous one gets "554 5.5.0 Improper
	// use of SMTP command pipelining" and is disconnected.
	NoPipelining bool
	// RcptReply answers RCPT TO for a recipient address (without brackets). A nil
	// function or an empty result means "250 2.1.5 OK"; a 2xx result accepts the
	// recipient with that text; anything else rejects it; a 421 also closes.
	RcptReply func(rcpt string) string
	// DataReply answers the end of DATA; n is the number of messages the provider
	// accepted before this one. An empty result means "250 2.0.0 OK queued as <id>";
	// a non-2xx result refuses the message (counted in Stats.DataRejected); a 421
	// also closes. Calls are serialised with acceptance, so n is exact.
	DataReply func(n int64) string
	// RateLimit > 0 lets at most RateLimit messages be accepted in any sliding
	// minute: once RateLimit messages were accepted in the last minute, MAIL and
	// RCPT get ThrottleReply. Transactions already past RCPT still complete, so
	// concurrent connections may overshoot by the transactions in flight.
	RateLimit int
	// RateWindow is the sliding window of RateLimit: default (and at most)
	// one minute; tests and the demo use shorter ones.
	RateWindow time.Duration
	// ThrottleReply defaults to "421 4.7.0 [TSS04] Messages from <client IP>
	// temporarily deferred due to unexpected volume"; a 421 closes the connection.
	ThrottleReply string
	// MaxMsgsPerConn > 0: after that many messages on a connection, the next MAIL
	// gets "421 4.7.0 Too many messages on this connection" and the connection closes.
	MaxMsgsPerConn int
	// MaxConnsPerIP > 0: a connection beyond this many admitted ones open from the
	// same client IP gets "421 4.7.0 Too many connections" instead of a greeting and
	// is closed (counted in Stats.RejectedConns).
	MaxConnsPerIP int
	// StallAt is one of AtGreeting, AtMail, AtRcpt, AtData, AtDot (case-insensitive)
	// or "": at that point the provider says nothing for StallFor, then goes on.
	// AtDot stalls after the message was read, before it is accepted and answered.
	StallAt  string
	StallFor time.Duration
	// DropAt takes the same points: the connection is closed there without a reply
	// (replies to earlier pipelined commands are sent first). At AtDot the message
	// is not accepted.
	DropAt string
	// BodyHook, if set, is called for each accepted message, before the reply is
	// sent and before WaitMessages waiters are woken. body is dot-unstuffed with CRLF
	// line ends and belongs to the hook. Calls may run concurrently.
	BodyHook func(from string, rcpts []string, body []byte)
}

// Stats is a snapshot of what a Provider observed. Every TCP connection counts in
// Connections and the open-at-once figures, including those refused at greeting.
type Stats struct {
	Connections     int64          // accepted TCP connections
	RejectedConns   int64          // refused at greeting (non-2xx greeting or MaxConnsPerIP)
	OpenNow         int            // connections open now
	MaxOpen         int            // most connections open at once
	MaxOpenBySource map[string]int // client IP -> most connections open at once
	MaxOpenByPath   map[string]int // "clientIP>localIP" -> most connections open at once
	Delivered       int64          // messages accepted at end of DATA
	Recipients      int64          // accepted recipients of delivered messages
	RcptRejected    map[int]int64  // reply code -> MAIL/RCPT rejections, throttles included
	DataRejected    map[int]int64  // reply code -> messages refused at end of DATA
	Attempts        int64          // MAIL FROM commands seen (transaction attempts)
	MaxMsgsPerConn  int            // most messages delivered on one connection
	TLSConns        int64          // connections that completed STARTTLS
	Arrivals        []time.Time    // time of each delivered message (first 2 million)
	AttemptTimes    []time.Time    // time of each MAIL FROM seen (first 2 million)
	RcptSeen        map[string]int // recipient -> times delivered (first 2 million addresses)
}

// point is a compiled StallAt/DropAt.
type point uint8

const (
	atNone point = iota
	atGreeting
	atMail
	atRcpt
	atData
	atDot
)

func parsePoint(s string) (point, error) {
	switch strings.ToUpper(s) {
	case "":
		return atNone, nil
	case "GREETING":
		return atGreeting, nil
	case "MAIL":
		return atMail, nil
	case "RCPT":
		return atRcpt, nil
	case "DATA":
		return atData, nil
	case "DOT":
		return atDot, nil
	}
	return atNone, fmt.Errorf("sim: unknown point %q (want greeting, MAIL, RCPT, DATA or DOT)", s)
}

// behavior is a Behavior checked and compiled once, swapped atomically.
type behavior struct {
	Behavior
	host            string
	stallAt, dropAt point
}

func compile(b Behavior) (*behavior, error) {
	c := &behavior{Behavior: b, host: b.Name}
	if c.host == "" || strings.ContainsAny(c.host, " \t\r\n") {
		c.host = "sim"
	}
	var err error
	if c.stallAt, err = parsePoint(b.StallAt); err != nil {
		return nil, fmt.Errorf("StallAt: %w", err)
	}
	if c.dropAt, err = parsePoint(b.DropAt); err != nil {
		return nil, fmt.Errorf("DropAt: %w", err)
	}
	for _, r := range []struct{ name, v string }{{"Greeting", b.Greeting}, {"ThrottleReply", b.ThrottleReply}} {
		if r.v != "" && replyCode(r.v) == 0 {
			return nil, fmt.Errorf("sim: %s %q does not start with a 3-digit reply code", r.name, r.v)
		}
	}
	return c, nil
}

// Provider is a simulated receiving provider: an SMTP server on loopback addresses
// that follows a Behavior and counts what it sees.
type Provider struct {
	start     time.Time
	done      chan struct{} // closed by Close; ends stalls and waits
	tlsConfig *tls.Config
	beh       atomic.Pointer[behavior]
	delivered atomic.Int64 // mirror of st.Delivered for cheap reads

	mu        sync.Mutex // guards the fields below up to wg
	addrs     []string
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	closed    bool
	refusing  bool
	err       error // first failure to listen again after an outage
	wg        sync.WaitGroup

	// dataMu serialises DataReply with acceptance so DataReply's count is exact.
	dataMu sync.Mutex

	smu          sync.Mutex // guards st and the fields below
	st           Stats
	openBySource map[string]int
	openByPath   map[string]int
	admitted     map[string]int // connections past MaxConnsPerIP, by client IP
	recent       []int64        // delivery times (ns since start) in the last rateWindow
	recentHead   int
	waiters      []*waiter
}

type waiter struct {
	n  int64
	ch chan struct{}
}

// NewProvider starts a provider listening on every addr ("127.0.0.2:2525"). Only
// loopback addresses are accepted; port 0 is allowed with a single addr.
func NewProvider(b Behavior, addrs ...string) (*Provider, error) {
	if len(addrs) == 0 {
		return nil, errors.New("sim: NewProvider needs at least one address to listen on")
	}
	cb, err := compile(b)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, fmt.Errorf("sim: bad listen address %q: %w", a, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("sim: listen address %q is not a loopback IP; the simulated world stays on 127.0.0.0/8", a)
		}
		if port == "0" && len(addrs) > 1 {
			return nil, fmt.Errorf("sim: port 0 in %q with several addresses would give each its own port; pick one with FreePort", a)
		}
	}
	cert, err := selfSigned(cb.host, addrs)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		start:        time.Now(),
		done:         make(chan struct{}),
		tlsConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		conns:        make(map[net.Conn]struct{}),
		openBySource: make(map[string]int),
		openByPath:   make(map[string]int),
		admitted:     make(map[string]int),
	}
	p.st.MaxOpenBySource = make(map[string]int)
	p.st.MaxOpenByPath = make(map[string]int)
	p.st.RcptRejected = make(map[int]int64)
	p.st.DataRejected = make(map[int]int64)
	p.st.RcptSeen = make(map[string]int)
	p.beh.Store(cb)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.listenLocked(addrs); err != nil {
		return nil, err
	}
	p.addrs = make([]string, len(p.listeners))
	for i, ln := range p.listeners {
		p.addrs[i] = ln.Addr().String()
	}
	if b.Refuse {
		p.refusing = true
		p.closeListenersLocked()
	} else {
		p.serveListenersLocked()
	}
	return p, nil
}

// listenLocked opens a listener per address, all or none.
func (p *Provider) listenLocked(addrs []string) error {
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, len(addrs))
	for _, a := range addrs {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("sim: listen on %s: %w", a, err)
		}
		lns = append(lns, ln)
	}
	p.listeners = lns
	return nil
}

func (p *Provider) serveListenersLocked() {
	for _, ln := range p.listeners {
		p.wg.Add(1)
		go p.acceptLoop(ln)
	}
}

func (p *Provider) closeListenersLocked() {
	for _, ln := range p.listeners {
		ln.Close()
	}
	p.listeners = nil
}

// Addrs returns the listening addresses, with the port chosen when 0 was asked.
func (p *Provider) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.addrs)
}

// SetBehavior swaps the behaviour; new commands and connections follow it at once.
// Toggling Refuse closes or reopens the listeners (see Behavior.Refuse); if a port
// cannot be bound again the provider stays refusing and Close reports the error.
// An invalid StallAt/DropAt or reply code is a programming error and panics.
func (p *Provider) SetBehavior(b Behavior) {
	cb, err := compile(b)
	if err != nil {
		panic("sim: SetBehavior: " + err.Error())
	}
	p.beh.Store(cb)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	switch {
	case b.Refuse && !p.refusing:
		p.refusing = true
		p.closeListenersLocked()
		for c := range p.conns {
			c.Close()
		}
	case !b.Refuse && p.refusing:
		if err := p.listenLocked(p.addrs); err != nil {
			if p.err == nil {
				p.err = err
			}
			return
		}
		p.refusing = false
		p.serveListenersLocked()
	}
}

// Close closes the listeners and every connection, and waits for their goroutines.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	p.closeListenersLocked()
	for c := range p.conns {
		c.Close()
	}
	err := p.err
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

// Stats returns a consistent snapshot of the counters; maps and slices are copies.
func (p *Provider) Stats() Stats {
	p.smu.Lock()
	defer p.smu.Unlock()
	s := p.st
	s.MaxOpenBySource = maps.Clone(p.st.MaxOpenBySource)
	s.MaxOpenByPath = maps.Clone(p.st.MaxOpenByPath)
	s.RcptRejected = maps.Clone(p.st.RcptRejected)
	s.DataRejected = maps.Clone(p.st.DataRejected)
	s.RcptSeen = maps.Clone(p.st.RcptSeen)
	s.Arrivals = slices.Clone(p.st.Arrivals)
	s.AttemptTimes = slices.Clone(p.st.AttemptTimes)
	return s
}

// Delivered is Stats().Delivered without copying the rest, for progress displays.
func (p *Provider) Delivered() int64 { return p.delivered.Load() }

// WaitMessages blocks until the provider has accepted at least n messages, ctx is
// done or the provider is closed.
func (p *Provider) WaitMessages(ctx context.Context, n int64) error {
	p.smu.Lock()
	if p.st.Delivered >= n {
		p.smu.Unlock()
		return nil
	}
	w := &waiter{n: n, ch: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.smu.Unlock()

	var cause error
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-p.done:
		cause = errors.New("provider closed")
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	} else {
		return nil // woken while we were giving up
	}
	return fmt.Errorf("sim: waiting for %d messages, %d delivered: %w", n, p.st.Delivered, cause)
}

// MaxInWindow returns the largest number of events in any half-open window
// [t, t+w) of length w. times need not be sorted.
func MaxInWindow(times []time.Time, w time.Duration) int {
	if w <= 0 || len(times) == 0 {
		return 0
	}
	cmp := func(a, b time.Time) int { return a.Compare(b) }
	if !slices.IsSortedFunc(times, cmp) {
		times = slices.Clone(times)
		slices.SortFunc(times, cmp)
	}
	best, i := 0, 0
	for j := range times {
		for times[j].Sub(times[i]) >= w {
			i++
		}
		best = max(best, j-i+1)
	}
	return best
}

// FreePort returns a TCP port that is free on 127.0.0.1 through 127.0.0.5, for a
// provider that listens on several loopback addresses with one port.
func FreePort() (int, error) {
	var lc net.ListenConfig
	ctx := context.Background()
	var last error
	for range 20 {
		ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("sim: no free port on 127.0.0.1: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		held := []net.Listener{ln}
		last = nil
		for i := 2; i <= 5 && last == nil; i++ {
			l, err := lc.Listen(ctx, "tcp", net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i), strconv.Itoa(port)))
			if err != nil {
				last = err
				continue
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if last == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("sim: no port free on 127.0.0.1-5 after 20 tries: %w", last)
}

func (p *Provider) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: wait a little rather than spin.
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		p.mu.Lock()
		if p.closed || p.refusing {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serveConn(c)
	}
}

func (p *Provider) serveConn(c net.Conn) {
	defer p.wg.Done()
	s := &session{
		p:   p,
		raw: c,
		ip:  hostOf(c.RemoteAddr()),
		r:   bufio.NewReaderSize(deadlineConn{c}, readBufSize),
		w:   bufio.NewWriterSize(deadlineConn{c}, writeBufSize),
	}
	s.path = s.ip + ">" + hostOf(c.LocalAddr())
	p.connOpened(s)
	s.serve()
	// Counts drop before the socket closes, so a client that saw EOF sees them.
	p.connClosed(s)
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

// deadlineConn gives every read and write the idle timeout.
type deadlineConn struct{ net.Conn }

func (c deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Read(b)
}

func (c deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Write(b)
}

// --- counters (all under smu) ---

func (p *Provider) connOpened(s *session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	st := &p.st
	st.Connections++
	st.OpenNow++
	st.MaxOpen = max(st.MaxOpen, st.OpenNow)
	p.openBySource[s.ip]++
	st.MaxOpenBySource[s.ip] = max(st.MaxOpenBySource[s.ip], p.openBySource[s.ip])
	p.openByPath[s.path]++
	st.MaxOpenByPath[s.path] = max(st.MaxOpenByPath[s.path], p.openByPath[s.path])
}

func (p *Provider) connClosed(s *session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	p.st.OpenNow--
	decr(p.openBySource, s.ip)
	decr(p.openByPath, s.path)
	if s.admitted {
		decr(p.admitted, s.ip)
	}
}

func decr(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// admit applies MaxConnsPerIP; refused connections never count as admitted.
func (p *Provider) admit(s *session, limit int) bool {
	p.smu.Lock()
	defer p.smu.Unlock()
	if limit > 0 && p.admitted[s.ip] >= limit {
		p.st.RejectedConns++
		return false
	}
	p.admitted[s.ip]++
	s.admitted = true
	return true
}

func (p *Provider) countRejectedConn() {
	p.smu.Lock()
	p.st.RejectedConns++
	p.smu.Unlock()
}

func (p *Provider) countAttempt() {
	t := time.Now()
	p.smu.Lock()
	p.st.Attempts++
	if len(p.st.AttemptTimes) < maxTimes {
		p.st.AttemptTimes = append(p.st.AttemptTimes, t)
	}
	p.smu.Unlock()
}

func (p *Provider) countRcptReject(code int) {
	p.smu.Lock()
	p.st.RcptRejected[code]++
	p.smu.Unlock()
}

func (p *Provider) countDataReject(code int) {
	p.smu.Lock()
	p.st.DataRejected[code]++
	p.smu.Unlock()
}

func (p *Provider) countTLS() {
	p.smu.Lock()
	p.st.TLSConns++
	p.smu.Unlock()
}

// recentLocked drops deliveries older than rateWindow and returns how many remain.
func (p *Provider) recentLocked(now int64) int {
	cut := now - int64(rateWindow)
	for p.recentHead < len(p.recent) && p.recent[p.recentHead] <= cut {
		p.recentHead++
	}
	if p.recentHead > 4096 && 2*p.recentHead > len(p.recent) {
		n := copy(p.recent, p.recent[p.recentHead:])
		p.recent = p.recent[:n]
		p.recentHead = 0
	}
	return len(p.recent) - p.recentHead
}

func (p *Provider) throttled(b *behavior) bool {
	if b.RateLimit <= 0 {
		return false
	}
	now := int64(time.Since(p.start))
	p.smu.Lock()
	n := p.recentLocked(now)
	if w := b.RateWindow; w > 0 && w < rateWindow {
		recent := p.recent[p.recentHead:]
		cut := now - int64(w)
		n = len(recent) - sort.Search(len(recent), func(i int) bool { return recent[i] > cut })
	}
	p.smu.Unlock()
	return n >= b.RateLimit
}

// accept records a delivered message and returns its ordinal (1-based).
func (p *Provider) accept(s *session) int64 {
	t := time.Now()
	now := int64(t.Sub(p.start))
	p.smu.Lock()
	defer p.smu.Unlock()
	st := &p.st
	st.Delivered++
	p.delivered.Store(st.Delivered)
	st.Recipients += int64(len(s.rcpts))
	if len(st.Arrivals) < maxTimes {
		st.Arrivals = append(st.Arrivals, t)
	}
	for _, r := range s.rcpts {
		if n, ok := st.RcptSeen[r]; ok || len(st.RcptSeen) < maxTimes {
			st.RcptSeen[r] = n + 1
		}
	}
	s.msgs++
	st.MaxMsgsPerConn = max(st.MaxMsgsPerConn, s.msgs)
	p.recent = append(p.recent, now)
	p.recentLocked(now)
	if len(p.waiters) > 0 {
		kept := p.waiters[:0]
		for _, w := range p.waiters {
			if st.Delivered >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		clear(p.waiters[len(kept):])
		p.waiters = kept
	}
	return st.Delivered
}

// --- SMTP session ---

var (
	errLineTooLong = errors.New("line too long")
	errDiscard     = errors.New("overlong line without end")
)

type session struct {
	p        *Provider
	raw      net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	ip, path string
	admitted bool
	tls      bool
	helo     bool
	inTx     bool
	from     string
	rcpts    []string
	rcptSeen bool // a RCPT was tried in this transaction
	msgs     int  // messages delivered on this connection
	errs     int
	body     []byte
}

func (s *session) reply(r string) {
	s.w.WriteString(r)
	s.w.WriteString("\r\n")
}

// flushIfIdle flushes queued replies when no complete command is waiting: the
// server side of RFC 2920 §3.1, which lets a pipelining client get all the replies
// to a command group in one write, and never leaves a client waiting on us.
func (s *session) flushIfIdle() error {
	if s.w.Buffered() == 0 {
		return nil
	}
	if n := s.r.Buffered(); n > 0 {
		if b, _ := s.r.Peek(n); bytes.IndexByte(b, '\n') >= 0 {
			return nil
		}
	}
	return s.w.Flush()
}

// readLine returns the next line, CRLF included, valid until the next read.
func (s *session) readLine() ([]byte, error) {
	if err := s.flushIfIdle(); err != nil {
		return nil, err
	}
	line, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for skipped := len(line); err == bufio.ErrBufferFull; skipped += len(line) {
			if skipped > maxDiscard {
				return nil, errDiscard
			}
			line, err = s.r.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > maxLineLen+2 {
		return nil, errLineTooLong
	}
	return line, nil
}

// stall says nothing for b.StallFor; false if the provider closed meanwhile.
func (s *session) stall(b *behavior) bool {
	if s.w.Flush() != nil {
		return false
	}
	t := time.NewTimer(b.StallFor)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.p.done:
		return false
	}
}

// at runs the stall and drop of point pt; false means end the connection now.
func (s *session) at(b *behavior, pt point) bool {
	if b.stallAt == pt && !s.stall(b) {
		return false
	}
	if b.dropAt == pt {
		s.w.Flush() // replies to earlier commands go out; this one gets none
		return false
	}
	return true
}

func (s *session) serve() {
	b := s.p.beh.Load()
	if !s.p.admit(s, b.MaxConnsPerIP) {
		s.reply("421 4.7.0 Too many connections")
		s.w.Flush()
		return
	}
	if !s.at(b, atGreeting) {
		return
	}
	b = s.p.beh.Load()
	switch {
	case b.Greeting == "":
		s.w.WriteString("220 ")
		s.w.WriteString(b.host)
		s.w.WriteString(" ESMTP sim\r\n")
	case b.Greeting[0] != '2':
		// RFC 5321 §3.1: a server may refuse at greeting; we then hang up at once.
		s.p.countRejectedConn()
		s.reply(b.Greeting)
		s.w.Flush()
		return
	default:
		s.reply(b.Greeting)
	}
	for {
		line, err := s.readLine()
		if err == errLineTooLong {
			if !s.bad("500 5.5.2 Line too long") {
				break
			}
			continue
		}
		if err != nil {
			return
		}
		if !s.command(line) {
			break
		}
	}
	s.w.Flush()
}

// bad answers a client error and counts it; false once the client made too many.
func (s *session) bad(r string) bool {
	s.reply(r)
	s.errs++
	if s.errs >= maxErrors {
		s.reply("421 4.7.0 Too many errors, closing connection")
		return false
	}
	return true
}

func (s *session) resetTx() {
	s.inTx = false
	s.from = ""
	clear(s.rcpts)
	s.rcpts = s.rcpts[:0]
	s.rcptSeen = false
}

// command handles one command line; false means close the connection (after
// flushing what was queued).
func (s *session) command(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], line[i+1:]
	}
	b := s.p.beh.Load()
	if b.NoPipelining && s.r.Buffered() > 0 {
		// The client sent more before it had our reply, without PIPELINING.
		s.reply("554 5.5.0 Improper use of SMTP command pipelining")
		return false
	}
	switch {
	case isVerb(verb, "EHLO"), isVerb(verb, "HELO"):
		return s.hello(b, isVerb(verb, "EHLO"), arg)
	case isVerb(verb, "MAIL"):
		return s.mail(b, arg)
	case isVerb(verb, "RCPT"):
		return s.rcpt(b, arg)
	case isVerb(verb, "DATA"):
		return s.data(b, arg)
	case isVerb(verb, "RSET"):
		s.resetTx()
		s.reply("250 2.0.0 OK")
	case isVerb(verb, "NOOP"):
		s.reply("250 2.0.0 OK")
	case isVerb(verb, "QUIT"):
		s.reply("221 2.0.0 Bye")
		return false
	case isVerb(verb, "VRFY"):
		s.reply("252 2.5.0 Cannot VRFY user, but will accept message")
	case isVerb(verb, "HELP"):
		s.reply("214 2.0.0 See RFC 5321")
	case isVerb(verb, "STARTTLS"):
		return s.startTLS(b, arg)
	default:
		return s.bad("500 5.5.2 Command not recognized")
	}
	return true
}

// isVerb reports whether v equals want (upper case) ignoring ASCII case, without
// allocating.
func isVerb(v []byte, want string) bool {
	if len(v) != len(want) {
		return false
	}
	for i := range len(v) {
		c := v[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func (s *session) hello(b *behavior, ehlo bool, arg []byte) bool {
	if len(bytes.TrimSpace(arg)) == 0 {
		return s.bad("501 5.5.4 Syntax: EHLO/HELO domain")
	}
	// RFC 5321 §4.1.4: EHLO/HELO also resets any transaction.
	s.resetTx()
	s.helo = true
	if !ehlo {
		s.w.WriteString("250 ")
		s.w.WriteString(b.host)
		s.w.WriteString("\r\n")
		return true
	}
	// RFC 2034 §3: no enhanced codes in the EHLO reply.
	s.w.WriteString("250-")
	s.w.WriteString(b.host)
	s.w.WriteString("\r\n")
	if !b.NoPipelining {
		s.w.WriteString("250-PIPELINING\r\n")
	}
	if b.STARTTLS && !s.tls {
		s.w.WriteString("250-STARTTLS\r\n")
	}
	s.w.WriteString("250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE " +
		strconv.Itoa(maxMessageSize) + "\r\n")
	return true
}

// parsePath splits `FROM:<addr> params` (prefix "FROM:" or "TO:").
func parsePath(arg []byte, prefix string) (addr, params []byte, ok bool) {
	if len(arg) < len(prefix) || !isVerb(arg[:len(prefix)], prefix) {
		return nil, nil, false
	}
	rest := bytes.TrimLeft(arg[len(prefix):], " ")
	if len(rest) == 0 || rest[0] != '<' {
		return nil, nil, false
	}
	end := bytes.IndexByte(rest, '>')
	if end < 0 {
		return nil, nil, false
	}
	addr = rest[1:end]
	if bytes.ContainsAny(addr, " <\t") {
		return nil, nil, false
	}
	return addr, bytes.TrimSpace(rest[end+1:]), true
}

// throttle answers MAIL or RCPT with the throttle reply; false means close.
func (s *session) throttle(b *behavior) bool {
	r := b.ThrottleReply
	if r == "" {
		r = "421 4.7.0 [TSS04] Messages from " + s.ip + " temporarily deferred due to unexpected volume"
	}
	return s.reject(r)
}

// reject answers a MAIL/RCPT rejection, counted by code; a 421 closes (RFC 5321
// §3.8: 421 means the server is closing the channel).
func (s *session) reject(r string) bool {
	code := replyCode(r)
	s.p.countRcptReject(code)
	s.reply(r)
	return code != 421
}

func (s *session) mail(b *behavior, arg []byte) bool {
	if !s.helo {
		return s.bad("503 5.5.1 Send EHLO first")
	}
	if s.inTx {
		return s.bad("503 5.5.1 Nested MAIL command")
	}
	addr, params, ok := parsePath(arg, "FROM:")
	if !ok {
		return s.bad("501 5.5.4 Syntax: MAIL FROM:<address>")
	}
	for len(params) > 0 {
		var kv []byte
		kv, params, _ = bytes.Cut(params, []byte(" "))
		k, v, _ := bytes.Cut(kv, []byte("="))
		switch {
		case len(kv) == 0:
		case isVerb(k, "SIZE"):
			// RFC 1870 §6.2: refuse at once a message declared too big.
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return s.bad("501 5.5.4 Bad SIZE parameter")
			}
			if n > maxMessageSize {
				s.p.countAttempt()
				return s.reject("552 5.3.4 Message size exceeds fixed maximum message size")
			}
		case isVerb(k, "BODY"):
			if !isVerb(v, "8BITMIME") && !isVerb(v, "7BIT") {
				return s.bad("501 5.5.4 Bad BODY parameter")
			}
		case isVerb(k, "SMTPUTF8") && len(v) == 0:
		default:
			return s.bad("555 5.5.4 Unsupported MAIL parameter")
		}
	}
	s.p.countAttempt()
	if b.MaxMsgsPerConn > 0 && s.msgs >= b.MaxMsgsPerConn {
		return s.reject("421 4.7.0 Too many messages on this connection")
	}
	if !s.at(b, atMail) {
		return false
	}
	if s.p.throttled(b) {
		return s.throttle(b)
	}
	s.inTx = true
	if b.BodyHook != nil {
		s.from = string(addr)
	}
	s.reply("250 2.1.0 OK")
	return true
}

func (s *session) rcpt(b *behavior, arg []byte) bool {
	if !s.inTx {
		return s.bad("503 5.5.1 Need MAIL before RCPT")
	}
	addr, params, ok := parsePath(arg, "TO:")
	if !ok || len(addr) == 0 {
		return s.bad("501 5.5.4 Syntax: RCPT TO:<address>")
	}
	if len(params) > 0 {
		return s.bad("555 5.5.4 Unsupported RCPT parameter")
	}
	s.rcptSeen = true
	if !s.at(b, atRcpt) {
		return false
	}
	if len(s.rcpts) >= maxRecipients {
		return s.reject("452 4.5.3 Too many recipients")
	}
	if s.p.throttled(b) {
		return s.throttle(b)
	}
	rcpt := string(addr)
	r := ""
	if b.RcptReply != nil {
		r = b.RcptReply(rcpt)
	}
	if r != "" && r[0] != '2' {
		return s.reject(r)
	}
	if r == "" {
		r = "250 2.1.5 OK"
	}
	s.rcpts = append(s.rcpts, rcpt)
	s.reply(r)
	return true
}

func (s *session) data(b *behavior, arg []byte) bool {
	switch {
	case !s.inTx:
		return s.bad("503 5.5.1 Need MAIL before DATA")
	case len(s.rcpts) == 0 && s.rcptSeen:
		// RFC 2920 §3.1: DATA after only failed RCPTs is refused.
		return s.bad("554 5.5.1 No valid recipients")
	case len(s.rcpts) == 0:
		return s.bad("503 5.5.1 Need RCPT before DATA")
	case len(arg) > 0:
		return s.bad("501 5.5.4 DATA takes no argument")
	}
	if !s.at(b, atData) {
		return false
	}
	s.reply("354 Start mail input; end with <CRLF>.<CRLF>")
	keep := b.BodyHook != nil
	problem, err := s.readBody(keep)
	if err != nil {
		return false
	}
	b = s.p.beh.Load()
	if b.NoPipelining && s.r.Buffered() > 0 {
		s.reply("554 5.5.0 Improper use of SMTP command pipelining")
		return false
	}
	if !s.at(b, atDot) {
		return false
	}
	defer s.resetTx()
	if problem != "" {
		s.p.countDataReject(replyCode(problem))
		s.reply(problem)
		return true
	}
	if b.DataReply == nil {
		s.acceptMessage(b, "")
		return true
	}
	s.p.dataMu.Lock()
	r := b.DataReply(s.p.delivered.Load())
	if r == "" || r[0] == '2' {
		s.acceptMessage(b, r)
		s.p.dataMu.Unlock()
		return true
	}
	s.p.dataMu.Unlock()
	code := replyCode(r)
	s.p.countDataReject(code)
	s.reply(r)
	return code != 421
}

func (s *session) acceptMessage(b *behavior, r string) {
	if b.BodyHook != nil {
		b.BodyHook(s.from, slices.Clone(s.rcpts), bytes.Clone(s.body))
	}
	id := s.p.accept(s)
	if r != "" {
		s.reply(r)
		return
	}
	var buf [64]byte
	out := append(buf[:0], "250 2.0.0 OK queued as "...)
	out = strconv.AppendInt(out, id, 16)
	out = append(out, "\r\n"...)
	s.w.Write(out)
}

// readBody reads the message up to the lone dot, undoing dot-stuffing (RFC 5321
// §4.5.2). It returns a reply for a message it must refuse, or an error when the
// connection is lost. Only a CRLF.CRLF ends the data (§4.1.1.4), and lines ending
// in a bare LF refuse the message (§2.3.8), so smuggled commands cannot hide in it.
func (s *session) readBody(keep bool) (problem string, err error) {
	s.body = s.body[:0]
	var size int64
	atStart := true
	for {
		if err := s.flushIfIdle(); err != nil {
			return "", err
		}
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if problem == "" {
				problem = "554 5.6.0 Line too long (limit " + strconv.Itoa(maxLineLen) + " characters)"
			}
			atStart = false
			size += int64(len(line))
			if size > 2*maxMessageSize {
				return "", errDiscard // a hostile stream; stop reading it
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if atStart {
			if len(line) == 3 && line[0] == '.' && line[1] == '\r' {
				return problem, nil
			}
			if line[0] == '.' {
				line = line[1:]
			}
			if len(line) > maxLineLen+2 && problem == "" {
				problem = "554 5.6.0 Line too long (limit " + strconv.Itoa(maxLineLen) + " characters)"
			}
		}
		atStart = true
		if (len(line) < 2 || line[len(line)-2] != '\r') && problem == "" {
			problem = "554 5.6.0 Bare LF in message, lines must end with CRLF"
		}
		size += int64(len(line))
		if size > maxMessageSize {
			problem = "552 5.3.4 Message size exceeds fixed maximum message size"
			if size > 2*maxMessageSize {
				return "", errDiscard
			}
			continue
		}
		if keep {
			s.body = append(s.body, line...)
		}
	}
}

func (s *session) startTLS(b *behavior, arg []byte) bool {
	switch {
	case !b.STARTTLS:
		return s.bad("502 5.5.1 STARTTLS not offered")
	case s.tls:
		return s.bad("503 5.5.1 TLS already active")
	case len(arg) > 0:
		return s.bad("501 5.5.4 STARTTLS takes no argument")
	}
	s.reply("220 2.0.0 Ready to start TLS")
	if s.w.Flush() != nil {
		return false
	}
	cfg := s.p.tlsConfig
	if b.Certificate != nil {
		cfg = cfg.Clone()
		cfg.Certificates = []tls.Certificate{*b.Certificate}
	}
	tc := tls.Server(deadlineConn{s.raw}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return false
	}
	s.p.countTLS()
	// RFC 3207 §4.2: forget everything learnt before TLS, EHLO included. Resetting
	// the reader also drops plaintext a client pipelined after STARTTLS (§5), so it
	// cannot be injected into the protected session.
	s.tls = true
	s.helo = false
	s.resetTx()
	s.r.Reset(tc)
	s.w.Reset(tc)
	return true
}

// replyCode is the 3-digit code at the start of r, or 0.
func replyCode(r string) int {
	if len(r) < 3 {
		return 0
	}
	n := 0
	for i := range 3 {
		c := r[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if len(r) > 3 && r[3] != ' ' && r[3] != '-' {
		return 0
	}
	return n
}

// selfSigned makes an ECDSA certificate for the provider's name and addresses.
func selfSigned(name string, addrs []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sim: TLS key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name, "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, a := range addrs {
		if h, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sim: TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
