package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// defaultTimeout is the wait for one reply when the caller gives none.
	defaultTimeout = 5 * time.Second
	// ednsSize is the UDP payload size we advertise: 1232 avoids IP
	// fragmentation on any path (DNS Flag Day 2020, RFC 9715 §3).
	ednsSize = 1232
	// udpReadBuf is larger than ednsSize: some servers ignore what we
	// advertise, and a reply we can read whole saves a TCP round trip.
	udpReadBuf = 4096
	// maxStrayPackets bounds how many unusable datagrams one UDP query
	// reads before giving up: a flood must not keep us busy until the timeout.
	maxStrayPackets = 16
	// rounds: a server that does not answer is asked once more, as glibc's
	// resolver does by default (resolv.conf(5) "attempts:2"): one lost
	// datagram should not defer mail.
	rounds = 2
	// partialTTL caps how long addresses are kept when one of the A and
	// AAAA queries failed, so the missing family is asked for again soon.
	partialTTL = 30 * time.Second
	// idleSockets bounds the UDP sockets kept open for reuse per loopback
	// nameserver: about the lookups in flight at once when a campaign
	// reaches thousands of new domains.
	idleSockets = 32
)

// client is the Resolver that talks to nameservers.
type client struct {
	servers []string // "ip:port"
	timeout time.Duration
	// idle holds, per loopback nameserver, sockets whose last query ended
	// cleanly, for the next query to reuse (see reusable). Other servers
	// have no entry: every query to them gets a fresh socket.
	idle map[string]chan net.Conn
	w    *workers // the A queries' goroutines (lookupIP asks AAAA itself)
}

// newClient returns a client of servers, with a free list of sockets for
// each loopback one.
func newClient(servers []string, timeout time.Duration) *client {
	c := &client{servers: servers, timeout: timeout, idle: make(map[string]chan net.Conn), w: newWorkers()}
	for _, s := range servers {
		if reusable(s) {
			c.idle[s] = make(chan net.Conn, idleSockets)
		}
	}
	return c
}

// reusable says whether queries to srv may share a source port. A fresh
// random port for every query (RFC 5452 §4) is what keeps an off-path
// attacker from forging replies: he must guess the port as well as the ID.
// A loopback nameserver (a local unbound, systemd-resolved: what DANE's
// DNSSEC validation needs anyway) cannot be reached from off the host, and
// the kernel drops packets from outside that claim a loopback source, so the
// port guards nothing there; opening and closing a socket was about half of
// each query's CPU.
func reusable(srv string) bool {
	ap, err := netip.ParseAddrPort(srv)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// New returns a Resolver that asks nameservers ("ip" or "ip:port"; IPv6 as
// "::1" or "[::1]:53") in order, each over UDP and then over TCP when a reply
// is truncated. With no nameservers it uses those of /etc/resolv.conf.
// timeout is the wait for one reply from one server (0: resolv.conf's, or 5s);
// a server that does not answer is asked a second time after the others.
func New(nameservers []string, timeout time.Duration) (Resolver, error) {
	if len(nameservers) == 0 {
		return newFromResolvConf("/etc/resolv.conf", timeout)
	}
	servers := make([]string, 0, len(nameservers))
	for _, ns := range nameservers {
		s, err := parseServer(ns, 53)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return newClient(servers, timeout), nil
}

func newFromResolvConf(path string, timeout time.Duration) (Resolver, error) {
	cfg, err := mdns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: no nameservers configured and %s is unusable: %v; set [dns] nameservers", path, err)
	}
	port, err := strconv.ParseUint(cfg.Port, 10, 16)
	if err != nil || port == 0 {
		port = 53
	}
	var servers []string
	for _, ns := range cfg.Servers {
		s, err := parseServer(ns, uint16(port))
		if err != nil {
			return nil, fmt.Errorf("%v (in %s)", err, path)
		}
		servers = append(servers, s)
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("dns: no nameservers configured and %s lists none; set [dns] nameservers", path)
	}
	if timeout <= 0 {
		timeout = time.Duration(cfg.Timeout) * time.Second
	}
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return newClient(servers, timeout), nil
}

// parseServer accepts "ip", "ip:port", "[ipv6]" or "[ipv6]:port". A host name
// is refused: resolving the resolver would need a resolver.
func parseServer(s string, defPort uint16) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return "", fmt.Errorf("dns: nameserver %q: port 0", s)
		}
		return ap.String(), nil
	}
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return netip.AddrPortFrom(ip, defPort).String(), nil
	}
	return "", fmt.Errorf("dns: nameserver %q: need an IP address or IP:port, such as 127.0.0.1 or [::1]:53", s)
}

// LookupMX implements Resolver.
func (c *client) LookupMX(ctx context.Context, domain string) (MXResult, error) {
	name, err := normalizeName(domain)
	if err != nil {
		return MXResult{}, &Error{Domain: domain, Kind: Invalid, Rcode: -1, Err: err, qtype: "MX"}
	}
	fqdn := name + "."
	r, rcode, err := c.query(ctx, fqdn, mdns.TypeMX)
	if err != nil {
		return MXResult{}, &Error{Domain: domain, Kind: Temporary, Rcode: rcode, Err: err, qtype: "MX"}
	}
	if r.Rcode == mdns.RcodeNameError {
		return MXResult{}, &Error{Domain: domain, Kind: NXDomain, Rcode: r.Rcode, qtype: "MX", ttl: seconds(negativeTTL(r))}
	}
	hosts, null, ttl, err := parseMX(r, fqdn)
	if err != nil {
		return MXResult{}, &Error{Domain: domain, Kind: Temporary, Rcode: r.Rcode, Err: err, qtype: "MX"}
	}
	if null {
		// RFC 7505 §4.1: mail to a null-MX domain must not be attempted and
		// bounces at once.
		return MXResult{}, &Error{Domain: domain, Kind: NullMX, Rcode: r.Rcode, qtype: "MX", ttl: seconds(ttl)}
	}
	if len(hosts) > 0 {
		return MXResult{Hosts: hosts, TTL: seconds(ttl), AD: r.AuthenticatedData}, nil
	}

	// RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX
	// with preference 0, provided it has an address; otherwise no host
	// accepts its mail.
	neg := seconds(negativeTTL(r))
	_, ipTTL, err := c.lookupIP(ctx, name, domain)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || !e.Permanent() {
			if e == nil {
				e = &Error{Rcode: -1, Err: err}
			}
			return MXResult{}, &Error{Domain: domain, Kind: Temporary, Rcode: e.Rcode, Err: fmt.Errorf("no MX, and the implicit MX's address lookup failed: %w", e.Err), qtype: "MX"}
		}
		if e.ttl > 0 && (neg == 0 || e.ttl < neg) {
			neg = e.ttl
		}
		return MXResult{}, &Error{Domain: domain, Kind: NoHost, Rcode: r.Rcode, qtype: "MX", ttl: neg}
	}
	if neg > 0 {
		ipTTL = min(ipTTL, neg)
	}
	return MXResult{Hosts: []MX{{Host: name, Pref: 0}}, Implicit: true, TTL: ipTTL}, nil
}

// LookupIP implements Resolver.
func (c *client) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	name, err := normalizeName(host)
	if err != nil {
		return nil, &Error{Domain: host, Kind: Invalid, Rcode: -1, Err: err, qtype: "A/AAAA"}
	}
	addrs, _, err := c.lookupIP(ctx, name, host)
	return addrs, err
}

// LookupTXT implements Resolver.
func (c *client) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, _, err := c.lookupTXTTTL(ctx, name)
	return txt, err
}

// lookupTXTTTL is LookupTXT with the answer's TTL, for the cache.
func (c *client) lookupTXTTTL(ctx context.Context, name string) ([]string, time.Duration, error) {
	n, err := normalizeName(name)
	if err != nil {
		return nil, 0, &Error{Domain: name, Kind: Invalid, Rcode: -1, Err: err, qtype: "TXT"}
	}
	fqdn := n + "."
	r, rcode, err := c.query(ctx, fqdn, mdns.TypeTXT)
	if err != nil {
		return nil, 0, &Error{Domain: name, Kind: Temporary, Rcode: rcode, Err: err, qtype: "TXT"}
	}
	if r.Rcode == mdns.RcodeNameError {
		return nil, 0, &Error{Domain: name, Kind: NXDomain, Rcode: r.Rcode, qtype: "TXT", ttl: seconds(negativeTTL(r))}
	}
	txt, ttl, err := parseTXT(r, fqdn)
	if err != nil {
		return nil, 0, &Error{Domain: name, Kind: Temporary, Rcode: r.Rcode, Err: err, qtype: "TXT"}
	}
	if len(txt) == 0 {
		return nil, 0, &Error{Domain: name, Kind: NoHost, Rcode: r.Rcode, qtype: "TXT", ttl: seconds(negativeTTL(r))}
	}
	return txt, seconds(ttl), nil
}

// lookupIPTTL is LookupIP with the answer's TTL, for the cache.
func (c *client) lookupIPTTL(ctx context.Context, host string) ([]netip.Addr, time.Duration, error) {
	name, err := normalizeName(host)
	if err != nil {
		return nil, 0, &Error{Domain: host, Kind: Invalid, Rcode: -1, Err: err, qtype: "A/AAAA"}
	}
	return c.lookupIP(ctx, name, host)
}

// addrAnswer is the outcome of one A or AAAA query.
type addrAnswer struct {
	addrs []netip.Addr
	ttl   uint32 // of addrs
	neg   uint32 // negative TTL when there are none
	rcode int
	err   error // temporary failure
}

// lookupIP asks for A and AAAA at once and returns IPv4 addresses first.
// name is normalised; given is the caller's spelling, for errors. Errors are
// *Error.
func (c *client) lookupIP(ctx context.Context, name, given string) ([]netip.Addr, time.Duration, error) {
	fqdn := name + "."
	var a, aaaa addrAnswer
	done := make(chan struct{})
	c.w.run(func() {
		a = c.addrQuery(ctx, fqdn, mdns.TypeA)
		close(done)
	})
	aaaa = c.addrQuery(ctx, fqdn, mdns.TypeAAAA)
	<-done

	if len(a.addrs)+len(aaaa.addrs) > 0 {
		addrs := append(a.addrs[:len(a.addrs):len(a.addrs)], aaaa.addrs...)
		ttl := uint32(math.MaxUint32)
		if len(a.addrs) > 0 {
			ttl = a.ttl
		}
		if len(aaaa.addrs) > 0 {
			ttl = min(ttl, aaaa.ttl)
		}
		d := seconds(ttl)
		if a.err != nil || aaaa.err != nil {
			d = min(d, partialTTL)
		}
		return addrs, d, nil
	}
	for _, x := range []addrAnswer{a, aaaa} {
		if x.err != nil {
			return nil, 0, &Error{Domain: given, Kind: Temporary, Rcode: x.rcode, Err: x.err, qtype: "A/AAAA"}
		}
	}
	neg := seconds(min(a.neg, aaaa.neg))
	if a.rcode == mdns.RcodeNameError || aaaa.rcode == mdns.RcodeNameError {
		return nil, 0, &Error{Domain: given, Kind: NXDomain, Rcode: mdns.RcodeNameError, qtype: "A/AAAA", ttl: neg}
	}
	return nil, 0, &Error{Domain: given, Kind: NoHost, Rcode: a.rcode, qtype: "A/AAAA", ttl: neg}
}

func (c *client) addrQuery(ctx context.Context, fqdn string, qtype uint16) addrAnswer {
	r, rcode, err := c.query(ctx, fqdn, qtype)
	if err != nil {
		return addrAnswer{rcode: rcode, err: err}
	}
	if r.Rcode == mdns.RcodeNameError {
		return addrAnswer{rcode: r.Rcode, neg: negativeTTL(r)}
	}
	addrs, ttl, err := parseAddrs(r, fqdn, qtype)
	if err != nil {
		return addrAnswer{rcode: r.Rcode, err: err}
	}
	if len(addrs) == 0 {
		return addrAnswer{rcode: r.Rcode, neg: negativeTTL(r)}
	}
	return addrAnswer{rcode: r.Rcode, addrs: addrs, ttl: ttl}
}

// query asks the servers in turn until one gives a usable answer: NOERROR or
// NXDOMAIN (RFC 1035 §4.1.1). SERVFAIL, REFUSED and the like move on to the
// next server; a server that did not answer at all is asked once more after
// the others. On failure it returns the last reply's rcode (-1 if none) and
// why.
func (c *client) query(ctx context.Context, fqdn string, qtype uint16) (*mdns.Msg, int, error) {
	q := new(mdns.Msg)
	q.SetQuestion(fqdn, qtype) // a random ID from crypto/rand (RFC 5452 §9.2)
	q.RecursionDesired = true
	// RFC 6840 §5.7: the AD bit in a query asks a validating resolver to
	// say whether the answer is authenticated. TLSA queries also set DO
	// (RFC 3225), as DANE needs DNSSEC (RFC 7672 §2.1).
	q.AuthenticatedData = true
	q.SetEdns0(ednsSize, qtype == mdns.TypeTLSA)
	packed, err := q.Pack()
	if err != nil {
		return nil, -1, fmt.Errorf("cannot build query: %v", err)
	}

	rcode := -1
	var lastErr error
	unanswered := make([]bool, len(c.servers))
	for round := 0; round < rounds; round++ {
		for i, srv := range c.servers {
			if round > 0 && !unanswered[i] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, rcode, err
			}
			r, err := c.exchange(ctx, srv, q, packed)
			if err != nil {
				if ctx.Err() != nil {
					return nil, rcode, ctx.Err()
				}
				lastErr = fmt.Errorf("asking %s: %w", srv, err)
				unanswered[i] = !errors.Is(err, errHostile)
				continue
			}
			unanswered[i] = false
			if r.Rcode == mdns.RcodeSuccess || r.Rcode == mdns.RcodeNameError {
				return r, r.Rcode, nil
			}
			rcode = r.Rcode
			lastErr = fmt.Errorf("%s answered %s", srv, rcodeName(r.Rcode))
		}
	}
	return nil, rcode, lastErr
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return "rcode " + strconv.Itoa(rc)
}

// exchange sends q to one server over UDP, and again over TCP if the reply is
// truncated (RFC 7766 §5).
func (c *client) exchange(ctx context.Context, srv string, q *mdns.Msg, packed []byte) (*mdns.Msg, error) {
	r, err := c.exchangeUDP(ctx, srv, q, packed)
	if err != nil || !r.Truncated {
		return r, err
	}
	return c.exchangeTCP(ctx, srv, q, packed)
}

// attempt prepares conn for one query: a deadline of c.timeout or ctx's,
// whichever is first, and an early wake-up when ctx is cancelled.
func (c *client) attempt(ctx context.Context, conn net.Conn) (stop func() bool) {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

func (c *client) exchangeUDP(ctx context.Context, srv string, q *mdns.Msg, packed []byte) (*mdns.Msg, error) {
	conn, err := c.udpConn(ctx, srv)
	if err != nil {
		return nil, err
	}
	stop := c.attempt(ctx, conn)
	r, clean, err := c.roundTrip(conn, q, packed)
	// A socket is reused only after a clean exchange: no error, no stray
	// datagram, not cancelled (stop reports that the wake-up did not fire).
	if stop() && clean {
		c.keep(srv, conn)
	} else {
		conn.Close()
	}
	return r, err
}

// keep puts conn on srv's free list, or closes it when srv has none (not on
// loopback: a nil channel is never ready) or it is full.
func (c *client) keep(srv string, conn net.Conn) {
	select {
	case c.idle[srv] <- conn:
	default:
		conn.Close()
	}
}

// udpConn returns a socket connected to srv: one kept from an earlier query
// to a loopback server, or a new one.
func (c *client) udpConn(ctx context.Context, srv string) (net.Conn, error) {
	select {
	case conn := <-c.idle[srv]:
		// What dialUDP checks first: a caller that gave up sends nothing.
		if err := live(ctx); err != nil {
			c.keep(srv, conn)
			return nil, err
		}
		return conn, nil
	default:
		return dialUDP(ctx, srv)
	}
}

// roundTrip sends the query on conn and waits for its reply. clean is false
// when anything besides the reply arrived or the read failed.
func (c *client) roundTrip(conn net.Conn, q *mdns.Msg, packed []byte) (r *mdns.Msg, clean bool, err error) {
	if _, err := conn.Write(packed); err != nil {
		return nil, false, err
	}
	// The socket is connected, so the kernel drops datagrams from other
	// addresses; what still arrives may be a late reply to an earlier query,
	// a spoofing attempt or garbage. Skip those and keep waiting for ours
	// (RFC 5452 §9.1), a bounded number of times.
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	var stray error
	for strays := 0; strays < maxStrayPackets; {
		n, err := conn.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("no reply within %v: %w", c.timeout, os.ErrDeadlineExceeded)
			}
			if stray != nil {
				return nil, false, fmt.Errorf("%w (%d unusable packets ignored, last: %w)", err, strays, stray)
			}
			return nil, false, err
		}
		r := new(mdns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			// A truncated reply may be cut mid-record; its header is enough
			// to know that TCP will give the whole answer.
			if r.Truncated && r.Response && r.Id == q.Id {
				return r, strays == 0, nil
			}
			stray = hostile("cannot parse reply: %v", err)
			strays++
			continue
		}
		if err := checkReply(q, r); err != nil {
			stray = err
			strays++
			continue
		}
		return r, strays == 0, nil
	}
	return nil, false, fmt.Errorf("%w (gave up after %d unusable packets)", stray, maxStrayPackets)
}

// udpBufs holds read buffers of UDP replies: one per query was most of
// the resolver's allocation (4 KiB × ~40,000 queries for a campaign to
// 10,000 new domains). A buffer goes back once the reply is unpacked;
// miekg/dns copies what it unpacks, nothing keeps a reference into it.
var udpBufs = sync.Pool{New: func() any {
	b := make([]byte, udpReadBuf)
	return &b
}}

// dialUDP opens a fresh socket (a new random source port, RFC 5452 §4)
// connected to srv. A server given as an address literal, as
// parseServer makes them all, is connected without the resolver's address
// parsing and dial machinery: a "connect" of UDP only sets the peer, it
// never blocks. Each query to a server off the host pays for it, and a
// campaign to 10,000 new domains makes ~40,000 of them.
func dialUDP(ctx context.Context, srv string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(srv); err == nil {
		// What DialContext checks first: a caller that gave up, or whose
		// deadline passed, sends nothing.
		if err := live(ctx); err != nil {
			return nil, err
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return nil, err // not a nil *UDPConn in a non-nil interface
		}
		return c, nil
	}
	var d net.Dialer
	return d.DialContext(ctx, "udp", srv)
}

// live is nil while ctx may still be waited on: not cancelled, deadline
// not passed.
func live(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *client) exchangeTCP(ctx context.Context, srv string, q *mdns.Msg, packed []byte) (*mdns.Msg, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", srv)
	if err != nil {
		return nil, fmt.Errorf("TCP after truncated UDP reply: %w", err)
	}
	defer conn.Close()
	defer c.attempt(ctx, conn)()
	// RFC 1035 §4.2.2: over TCP each message is preceded by its length.
	out := make([]byte, 2+len(packed))
	binary.BigEndian.PutUint16(out, uint16(len(packed)))
	copy(out[2:], packed)
	if _, err := conn.Write(out); err != nil {
		return nil, fmt.Errorf("TCP: %w", err)
	}
	var lenBuf [2]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		return nil, fmt.Errorf("TCP: reading reply: %w", err)
	}
	n := int(binary.BigEndian.Uint16(lenBuf[:]))
	if n < 12 { // RFC 1035 §4.1.1: the header alone is 12 octets
		return nil, hostile("TCP reply of %d octets, shorter than a DNS header", n)
	}
	buf := make([]byte, n) // at most 64 KiB: the length field is 16 bits
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, fmt.Errorf("TCP: reading reply: %w", err)
	}
	r := new(mdns.Msg)
	if err := r.Unpack(buf); err != nil {
		return nil, hostile("cannot parse TCP reply: %v", err)
	}
	// On TCP there is no stray traffic: a reply that does not match is wrong.
	if err := checkReply(q, r); err != nil {
		return nil, err
	}
	return r, nil
}

// seconds converts a TTL; RFC 2181 §8 says TTLs with the top bit set are to
// be read as 0.
func seconds(ttl uint32) time.Duration {
	if ttl > math.MaxInt32 {
		return 0
	}
	return time.Duration(ttl) * time.Second
}

// Close ends the client's idle lookup goroutines and closes the sockets it
// kept for reuse. A lookup made afterwards still gets its answer.
func (c *client) Close() error {
	c.w.close()
	for _, ch := range c.idle {
		for drained := false; !drained; {
			select {
			case conn := <-ch:
				conn.Close()
			default:
				drained = true
			}
		}
	}
	return nil
}
