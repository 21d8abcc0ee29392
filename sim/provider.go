package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of what a Provider observed. Every TCP connection counts in
// Connections and the open-at-once figures, including those refused at greeting.
type Stats struct {
	Connections     int64            // accepted TCP connections
	RejectedConns   int64            // refused at greeting (non-2xx greeting or MaxConnsPerIP)
	Waited          int64            // connections that waited for a session slot (MaxSessions)
	OpenNow         int              // connections open now
	MaxOpen         int              // most connections open at once
	MaxOpenBySource map[string]int   // client IP -> most connections open at once
	MaxOpenByPath   map[string]int   // "clientIP>localIP" -> most connections open at once
	Delivered       int64            // messages accepted at end of DATA or by the LAST BDAT chunk
	Chunked         int64            // of those, messages that came by BDAT (RFC 3030 CHUNKING)
	DeliveredBy     map[string]int64 // client IP -> messages accepted from it
	Recipients      int64            // accepted recipients of delivered messages
	RcptRejected    map[int]int64    // reply code -> MAIL/RCPT rejections, throttles included
	DataRejected    map[int]int64    // reply code -> messages refused at end of DATA or BDAT, or too big
	Attempts        int64            // MAIL FROM commands seen (transaction attempts)
	MaxMsgsPerConn  int              // most messages delivered on one connection
	TLSConns        int64            // connections that completed STARTTLS
	TLSResumed      int64            // of those, handshakes that resumed an earlier session
	StartTLSSeen    int64            // STARTTLS commands received (handshakes tried)
	RequireTLSMail  int64            // MAIL FROM commands with REQUIRETLS accepted
	Arrivals        []time.Time      // time of each delivered message (first 2 million)
	// ArrivalsBySource: client IP -> time of each message it delivered
	// (first 2 million in all).
	ArrivalsBySource map[string][]time.Time
	AttemptTimes     []time.Time    // time of each MAIL FROM seen (first 2 million)
	ConnTimes        []time.Time    // time each TCP connection was accepted (first 2 million)
	RcptSeen         map[string]int // recipient -> times delivered (first 2 million addresses)
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
	serving      int            // sessions holding a MaxSessions slot
	slotFree     chan struct{}  // closed when a slot frees; nil when nobody waits
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
	if b.Certificate != nil {
		cert = *b.Certificate
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
	p.st.DeliveredBy = make(map[string]int64)
	p.st.MaxOpenByPath = make(map[string]int)
	p.st.RcptRejected = make(map[int]int64)
	p.st.DataRejected = make(map[int]int64)
	p.st.RcptSeen = make(map[string]int)
	p.st.ArrivalsBySource = make(map[string][]time.Time)
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
	s.DeliveredBy = maps.Clone(p.st.DeliveredBy)
	s.MaxOpenByPath = maps.Clone(p.st.MaxOpenByPath)
	s.RcptRejected = maps.Clone(p.st.RcptRejected)
	s.DataRejected = maps.Clone(p.st.DataRejected)
	s.RcptSeen = maps.Clone(p.st.RcptSeen)
	s.Arrivals = slices.Clone(p.st.Arrivals)
	s.ArrivalsBySource = make(map[string][]time.Time, len(p.st.ArrivalsBySource))
	for ip, ts := range p.st.ArrivalsBySource {
		s.ArrivalsBySource[ip] = slices.Clone(ts)
	}
	s.AttemptTimes = slices.Clone(p.st.AttemptTimes)
	s.ConnTimes = slices.Clone(p.st.ConnTimes)
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
