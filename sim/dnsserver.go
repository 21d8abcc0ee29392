package sim

// This file is the simulated world's DNS: a real DNS server (miekg/dns) on a
// loopback address that answers MX, A, AAAA, CNAME and TXT queries from an
// in-memory table the test or demo fills in, and can be told to fail a name or
// everything. It is authoritative for every name it knows and answers NXDOMAIN
// for every other; it never recurses and never talks to the outside world.
//
// It must not import package dns (our resolver): the resolver's tests use this
// server.

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// MXRecord is one MX record served by DNSServer.
type MXRecord struct {
	Host string // exchange host name; "." is a null MX (RFC 7505)
	Pref uint16
}

// RcodeDrop, given to SetRcode or SetFailAll, makes the server read the query
// and never answer, so the client times out.
const RcodeDrop = -1

// maxCNAMEHops bounds how far the server follows its own CNAMEs, so a loop
// set up by a test ends in a long chain instead of a hang.
const maxCNAMEHops = 16

// DNSServer is a DNS server on loopback serving UDP and TCP on one port. All
// methods are safe for concurrent use.
type DNSServer struct {
	udp, tcp *dns.Server
	addr     string

	mu    sync.RWMutex
	names map[string]*dnsName // key: lowercased FQDN

	failAll atomic.Int64
	ttl     atomic.Uint32
	queries atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// dnsName is everything the server knows about one owner name. A name present
// in the table exists: a query for a type it lacks gets NOERROR with no
// answer (NODATA), as from a real zone.
type dnsName struct {
	mx    []MXRecord
	a     []netip.Addr
	aaaa  []netip.Addr
	txt   []string
	tlsa  []TLSARecord
	ad    bool   // answers for this name carry the AD bit
	cname string // FQDN, lowercased; "" if none
	rcode int    // forced reply code for this name; 0 = answer normally
}

// NewDNSServer starts a DNS server on addr, such as "127.0.0.1:0", serving
// UDP and TCP on the same port. The address must be a loopback IP address:
// the simulated world never listens beyond this machine.
func NewDNSServer(addr string) (*DNSServer, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("sim: DNS server address %q: %v", addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("sim: DNS server address %q: need a loopback IP address such as 127.0.0.1:0", addr)
	}

	// With port 0 the kernel picks a free UDP port; the same TCP port may be
	// taken, so try again a bounded number of times.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		pc, err = net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("sim: DNS server: %v", err)
		}
		tcpAddr := net.JoinHostPort(host, fmt.Sprint(pc.LocalAddr().(*net.UDPAddr).Port))
		ln, err = net.Listen("tcp", tcpAddr)
		if err == nil {
			break
		}
		pc.Close()
		if port != "0" || attempt >= 20 {
			return nil, fmt.Errorf("sim: DNS server: %v", err)
		}
	}

	s := &DNSServer{
		addr:  ln.Addr().String(),
		names: make(map[string]*dnsName),
	}
	s.ttl.Store(300)
	h := dns.HandlerFunc(s.serve)
	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(udpUp) }}
	s.tcp = &dns.Server{Listener: ln, Handler: h, NotifyStartedFunc: func() { close(tcpUp) }}
	failed := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		}()
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for _, up := range []chan struct{}{udpUp, tcpUp} {
		select {
		case <-up:
		case err := <-failed:
			s.Close()
			return nil, fmt.Errorf("sim: DNS server: %v", err)
		case <-timeout.C:
			s.Close()
			return nil, errors.New("sim: DNS server did not start within 5s")
		}
	}
	return s, nil
}

// Addr is the server's address, "127.0.0.1:port", the same for UDP and TCP.
func (s *DNSServer) Addr() string { return s.addr }

// Close stops the server and waits for its goroutines to finish.
func (s *DNSServer) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err1 := s.udp.ShutdownContext(ctx)
		err2 := s.tcp.ShutdownContext(ctx)
		s.closeErr = errors.Join(err1, err2)
	})
	return s.closeErr
}

// SetMX replaces domain's MX records. With no records the domain exists with
// no MX (NODATA), which makes a client fall back to the implicit MX.
func (s *DNSServer) SetMX(domain string, mx ...MXRecord) {
	recs := make([]MXRecord, len(mx))
	for i, r := range mx {
		recs[i] = MXRecord{Host: canonical(r.Host), Pref: r.Pref}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(domain).mx = recs
}

// SetNullMX makes domain publish a null MX (RFC 7505 §3: one MX record, preference
// 0, exchange "."): the domain accepts no mail.
func (s *DNSServer) SetNullMX(domain string) {
	s.SetMX(domain, MXRecord{Host: ".", Pref: 0})
}

// SetA replaces host's addresses: IPv4 ones are served as A records, IPv6 ones
// as AAAA. It panics on a string that is not an IP address, as a test's typo
// should fail loudly.
func (s *DNSServer) SetA(host string, ips ...string) {
	var a, aaaa []netip.Addr
	for _, v := range ips {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			panic(fmt.Sprintf("sim: SetA(%q): %q is not an IP address", host, v))
		}
		ip = ip.Unmap()
		if ip.Is4() {
			a = append(a, ip)
		} else {
			aaaa = append(aaaa, ip)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.name(host)
	n.a, n.aaaa = a, aaaa
}

// SetTXT replaces name's TXT records, one per string (a DKIM key record,
// say, at "sel._domainkey.example.test"). A string longer than 255 octets is
// served as several character-strings of one record (RFC 1035 §3.3.14), which
// clients join.
func (s *DNSServer) SetTXT(name string, txt ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(name).txt = append([]string(nil), txt...)
}

// TLSARecord is a TLSA record (RFC 6698 §2.1) served by SetTLSA; Data is
// the certificate association data (not hex).
type TLSARecord struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// SetTLSA replaces name's TLSA records ("_25._tcp.mx.example.test").
func (s *DNSServer) SetTLSA(name string, recs ...TLSARecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(name).tlsa = append([]TLSARecord(nil), recs...)
}

// SetAD makes every answer about name (whatever the type, including "no
// records") carry the AD bit, as a validating resolver sets it for data
// that DNSSEC authenticated (RFC 4035 §3.2.3). The simulated world signs
// nothing: the bit is what a test says.
func (s *DNSServer) SetAD(name string, ad bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(name).ad = ad
}

// SetCNAME makes name an alias of target. The server follows its own CNAMEs
// in answers (up to 16 hops, so a loop yields a long chain), as an
// authoritative server does for in-zone targets.
func (s *DNSServer) SetCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(name).cname = canonical(target)
}

// SetRcode makes every query for name, whatever its type, answer rcode (for
// example dns.RcodeServerFailure or dns.RcodeNameError); RcodeDrop leaves the
// queries unanswered, and 0 restores normal answers.
func (s *DNSServer) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name(name).rcode = rcode
}

// SetFailAll makes every query answer rcode, as when our resolver is dying;
// RcodeDrop leaves every query unanswered; 0 turns it off.
func (s *DNSServer) SetFailAll(rcode int) { s.failAll.Store(int64(rcode)) }

// SetTTL sets the TTL of every record served from now on (default 300s),
// including the SOA sent with negative answers, whose minimum field is the
// negative-caching TTL (RFC 2308 §5).
func (s *DNSServer) SetTTL(ttl uint32) { s.ttl.Store(ttl) }

// Queries is the number of queries received so far, answered or not.
func (s *DNSServer) Queries() int64 { return s.queries.Load() }

// name returns the entry for n, creating it. s.mu must be held for writing.
func (s *DNSServer) name(n string) *dnsName {
	key := canonical(n)
	e := s.names[key]
	if e == nil {
		e = &dnsName{}
		s.names[key] = e
	}
	return e
}

// canonical is the lowercased FQDN form of a name, the table's key.
func canonical(n string) string {
	return dns.Fqdn(strings.ToLower(strings.TrimSpace(n)))
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(resp)
		return
	}
	if rc := int(s.failAll.Load()); rc != 0 {
		if rc == RcodeDrop {
			return
		}
		resp.SetRcode(req, rc)
		w.WriteMsg(resp)
		return
	}
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	rcode, answer, drop := s.answer(q)
	if drop {
		return
	}
	resp.Rcode = rcode
	resp.Answer = answer
	s.mu.RLock()
	if n := s.names[canonical(q.Name)]; n != nil && n.ad {
		resp.AuthenticatedData = true
	}
	s.mu.RUnlock()
	ttl := s.ttl.Load()
	if len(answer) == 0 || rcode != dns.RcodeSuccess {
		// RFC 2308 §3: negative answers carry the zone's SOA so resolvers know
		// how long to cache them. The simulated world has no zone cuts, so the
		// SOA is owned by the queried name itself.
		resp.Ns = []dns.RR{&dns.SOA{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  "ns.sim.", Mbox: "hostmaster.sim.",
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: ttl,
		}}
	}
	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		resp.SetEdns0(opt.UDPSize(), false)
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		// RFC 1035 §4.2.1 / RFC 6891 §6.2.3: a UDP reply never exceeds what the
		// client can take; what does not fit is cut and flagged TC, and the
		// client asks again over TCP.
		resp.Truncate(size)
	} else {
		resp.Compress = true
	}
	w.WriteMsg(resp)
}

// answer builds the answer section for q, following CNAMEs in the table.
func (s *DNSServer) answer(q dns.Question) (rcode int, rrs []dns.RR, drop bool) {
	ttl := s.ttl.Load()
	hdr := func(name string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	name := canonical(q.Name)
	owner := q.Name // keep the asker's spelling for the first owner, as servers do
	for hop := 0; ; hop++ {
		n := s.names[name]
		if n == nil {
			return dns.RcodeNameError, rrs, false
		}
		if n.rcode == RcodeDrop {
			return 0, nil, true
		}
		if n.rcode != 0 {
			return n.rcode, rrs, false
		}
		if n.cname != "" && q.Qtype != dns.TypeCNAME {
			rrs = append(rrs, &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: n.cname})
			if hop >= maxCNAMEHops {
				return dns.RcodeSuccess, rrs, false
			}
			name, owner = n.cname, n.cname
			continue
		}
		switch q.Qtype {
		case dns.TypeMX:
			for _, mx := range n.mx {
				rrs = append(rrs, &dns.MX{Hdr: hdr(owner, dns.TypeMX), Preference: mx.Pref, Mx: mx.Host})
			}
		case dns.TypeA:
			for _, ip := range n.a {
				rrs = append(rrs, &dns.A{Hdr: hdr(owner, dns.TypeA), A: ip.AsSlice()})
			}
		case dns.TypeAAAA:
			for _, ip := range n.aaaa {
				rrs = append(rrs, &dns.AAAA{Hdr: hdr(owner, dns.TypeAAAA), AAAA: ip.AsSlice()})
			}
		case dns.TypeTXT:
			for _, t := range n.txt {
				rrs = append(rrs, &dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: chunks(t, 255)})
			}
		case dns.TypeTLSA:
			for _, t := range n.tlsa {
				rrs = append(rrs, &dns.TLSA{Hdr: hdr(owner, dns.TypeTLSA), Usage: t.Usage, Selector: t.Selector,
					MatchingType: t.MatchingType, Certificate: hex.EncodeToString(t.Data)})
			}
		case dns.TypeCNAME:
			if n.cname != "" {
				rrs = append(rrs, &dns.CNAME{Hdr: hdr(owner, dns.TypeCNAME), Target: n.cname})
			}
		}
		return dns.RcodeSuccess, rrs, false
	}
}

// chunks cuts s into character-strings of at most n octets.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}
