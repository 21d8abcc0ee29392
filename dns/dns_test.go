package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/sim"
)

// world is a loopback DNS server and a resolver pointed at it.
func world(t testing.TB) (*sim.DNSServer, Resolver) {
	t.Helper()
	s, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r, err := New([]string{s.Addr()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantErr checks that err is an *Error of kind k whose message contains each
// of msgs.
func wantErr(t *testing.T, err error, k Kind, msgs ...string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want *Error of kind %v", err, err, k)
	}
	if e.Kind != k {
		t.Fatalf("got kind %v (%v), want %v", e.Kind, err, k)
	}
	if e.Permanent() != (k != Temporary) {
		t.Errorf("Permanent() = %v for kind %v", e.Permanent(), k)
	}
	for _, m := range msgs {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
	return e
}

func hostNames(hosts []MX) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, fmt.Sprintf("%s/%d", h.Host, h.Pref))
	}
	return out
}

func TestDNSLookupMXOrderAndShuffle(t *testing.T) {
	s, r := world(t)
	s.SetTTL(120)
	s.SetMX("shop.test",
		sim.MXRecord{Host: "backup.shop.test", Pref: 20},
		sim.MXRecord{Host: "A.shop.test.", Pref: 10},
		sim.MXRecord{Host: "b.shop.test", Pref: 10})
	ctx := ctxT(t)
	seen := map[string]int{}
	for range 200 {
		res, err := r.LookupMX(ctx, "Shop.Test.")
		if err != nil {
			t.Fatal(err)
		}
		got := hostNames(res.Hosts)
		if len(got) != 3 || got[2] != "backup.shop.test/20" || res.Implicit || res.TTL != 120*time.Second {
			t.Fatalf("got %v implicit=%v ttl=%v", got, res.Implicit, res.TTL)
		}
		seen[strings.Join(got[:2], " ")]++
		if len(seen) == 2 {
			break
		}
	}
	if seen["a.shop.test/10 b.shop.test/10"] == 0 || seen["b.shop.test/10 a.shop.test/10"] == 0 {
		t.Errorf("equal preferences not shuffled (RFC 5321 §5.1): %v", seen)
	}
}

func TestDNSImplicitMXAndNoHost(t *testing.T) {
	s, r := world(t)
	s.SetTTL(600)
	s.SetA("plain.test", "127.0.0.9")
	ctx := ctxT(t)
	res, err := r.LookupMX(ctx, "plain.test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Implicit || len(res.Hosts) != 1 || res.Hosts[0] != (MX{"plain.test", 0}) || res.TTL != 600*time.Second {
		t.Errorf("implicit MX: %+v", res)
	}
	if SiteKey(res.Hosts) != "plain.test" {
		t.Errorf("site of implicit MX: %q", SiteKey(res.Hosts))
	}

	s.SetMX("empty.test") // exists, no MX, no address
	_, err = r.LookupMX(ctx, "empty.test")
	wantErr(t, err, NoHost, "empty.test", "no MX and no A/AAAA")
}

func TestDNSNullMX(t *testing.T) {
	s, r := world(t)
	s.SetNullMX("nomail.test")
	s.SetA("nomail.test", "127.0.0.9") // an address does not matter: RFC 7505 §3
	_, err := r.LookupMX(ctxT(t), "nomail.test")
	wantErr(t, err, NullMX, "null MX", "nomail.test")
}

func TestDNSNXDomain(t *testing.T) {
	_, r := world(t)
	_, err := r.LookupMX(ctxT(t), "nowhere.test")
	e := wantErr(t, err, NXDomain, "nowhere.test", "NXDOMAIN")
	if e.Rcode != mdns.RcodeNameError {
		t.Errorf("Rcode = %d", e.Rcode)
	}
	_, err = r.LookupIP(ctxT(t), "nowhere.test")
	wantErr(t, err, NXDomain)
}

func TestDNSServfailAndRefusedAreTemporary(t *testing.T) {
	s, r := world(t)
	s.SetMX("sick.test", sim.MXRecord{Host: "mx.sick.test", Pref: 1})
	s.SetRcode("sick.test", mdns.RcodeServerFailure)
	_, err := r.LookupMX(ctxT(t), "sick.test")
	e := wantErr(t, err, Temporary, "SERVFAIL", "sick.test", "MX lookup")
	if e.Rcode != mdns.RcodeServerFailure {
		t.Errorf("Rcode = %d", e.Rcode)
	}
	s.SetFailAll(mdns.RcodeRefused)
	_, err = r.LookupIP(ctxT(t), "mx.sick.test")
	wantErr(t, err, Temporary, "REFUSED")
}

// startResponder runs a scripted DNS responder on loopback: udp is given each
// query and returns the datagrams to send back (none: drop it); tcp, if not
// nil, serves TCP on the same port.
func startResponder(t *testing.T, udp func(q *mdns.Msg) [][]byte, tcp func(q *mdns.Msg) []byte) string {
	t.Helper()
	return startResponderFrom(t, func(q *mdns.Msg, _ *net.UDPAddr) [][]byte { return udp(q) }, tcp)
}

// startResponderFrom is startResponder whose udp is also told where each
// query came from.
func startResponderFrom(t *testing.T, udp func(q *mdns.Msg, from *net.UDPAddr) [][]byte, tcp func(q *mdns.Msg) []byte) string {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if tcp == nil {
			break
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed
			}
			q := new(mdns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			for _, p := range udp(q, from.(*net.UDPAddr)) {
				pc.WriteTo(p, from)
			}
		}
	}()
	if ln != nil {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					b := make([]byte, int(l[0])<<8|int(l[1]))
					if _, err := io.ReadFull(c, b); err != nil {
						return
					}
					q := new(mdns.Msg)
					if q.Unpack(b) != nil {
						return
					}
					c.Write(tcp(q))
				}()
			}
		}()
	}
	return pc.LocalAddr().String()
}

func pack(t testing.TB, m *mdns.Msg) []byte {
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func reply(q *mdns.Msg, rrs ...string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(q)
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func TestDNSTimeoutIsTemporary(t *testing.T) {
	addr := startResponder(t, func(*mdns.Msg) [][]byte { return nil }, nil)
	r, err := New([]string{addr}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.LookupMX(ctxT(t), "slow.test")
	took := time.Since(start)
	e := wantErr(t, err, Temporary, "no reply within 200ms", addr)
	if !errors.Is(err, os.ErrDeadlineExceeded) || e.Rcode != -1 {
		t.Errorf("err %v, rcode %d", err, e.Rcode)
	}
	if took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("took %v", took)
	}

	// The caller's context ends the lookup early.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	r, _ = New([]string{addr}, 5*time.Second)
	start = time.Now()
	_, err = r.LookupIP(ctx, "slow.test")
	wantErr(t, err, Temporary)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}

func TestDNSFailsOverToNextServer(t *testing.T) {
	dead := startResponder(t, func(*mdns.Msg) [][]byte { return nil }, nil)
	s, _ := world(t)
	s.SetMX("ok.test", sim.MXRecord{Host: "mx.ok.test", Pref: 5})
	r, err := New([]string{dead, s.Addr()}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.LookupMX(ctxT(t), "ok.test")
	if err != nil || len(res.Hosts) != 1 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestDNSLookupIP(t *testing.T) {
	s, r := world(t)
	s.SetA("mx.two.test", "::1", "127.0.0.3", "127.0.0.2", "127.0.0.3")
	addrs, err := r.LookupIP(ctxT(t), "MX.Two.Test")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1")}
	if !slices.Equal(addrs, want) {
		t.Errorf("got %v, want %v (IPv4 first, deduplicated)", addrs, want)
	}
	s.SetMX("noaddr.test", sim.MXRecord{Host: "x.test", Pref: 1})
	_, err = r.LookupIP(ctxT(t), "noaddr.test")
	wantErr(t, err, NoHost, "has no A/AAAA")
}

func TestDNSTruncatedGoesTCPAndCapsMX(t *testing.T) {
	s, r := world(t)
	var mx []sim.MXRecord
	for i := range 150 {
		mx = append(mx, sim.MXRecord{Host: fmt.Sprintf("mx%03d.big.test", i), Pref: uint16(1000 - i)})
	}
	s.SetMX("big.test", mx...)
	res, err := r.LookupMX(ctxT(t), "big.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hosts) != maxMXHosts || res.Hosts[0] != (MX{"mx149.big.test", 851}) {
		t.Errorf("got %d hosts, first %v", len(res.Hosts), res.Hosts[0])
	}
}

func TestDNSCNAMEChains(t *testing.T) {
	s, r := world(t)
	s.SetCNAME("alias.test", "mid.test")
	s.SetCNAME("mid.test", "real.test")
	s.SetMX("real.test", sim.MXRecord{Host: "mx.real.test", Pref: 1})
	res, err := r.LookupMX(ctxT(t), "alias.test")
	if err != nil || len(res.Hosts) != 1 || res.Hosts[0].Host != "mx.real.test" {
		t.Fatalf("%+v %v", res, err)
	}
	for i := range 10 {
		s.SetCNAME(fmt.Sprintf("c%d.test", i), fmt.Sprintf("c%d.test", i+1))
	}
	s.SetMX("c10.test", sim.MXRecord{Host: "mx.c10.test", Pref: 1})
	_, err = r.LookupMX(ctxT(t), "c0.test")
	wantErr(t, err, Temporary, "CNAME chain", "longer than 8")
	// A loop is a chain that never ends.
	s.SetCNAME("loop.test", "loop.test")
	_, err = r.LookupIP(ctxT(t), "loop.test")
	wantErr(t, err, Temporary, "CNAME chain")
}

func TestDNSHostileReplies(t *testing.T) {
	cases := []struct {
		name string
		udp  func(q *mdns.Msg) [][]byte
		tcp  func(q *mdns.Msg) []byte
		kind Kind
		msg  string
	}{
		{"wrong ID", func(q *mdns.Msg) [][]byte {
			m := reply(q, q.Question[0].Name+" 60 IN MX 10 mx.evil.test.")
			m.Id++
			return [][]byte{pack(t, m)}
		}, nil, Temporary, "does not match query ID"},
		{"garbage", func(q *mdns.Msg) [][]byte {
			return [][]byte{[]byte("\x00\x01garbage that is no DNS message at all")}
		}, nil, Temporary, "cannot parse reply"},
		{"wrong question", func(q *mdns.Msg) [][]byte {
			m := reply(q, "other.test. 60 IN MX 10 mx.evil.test.")
			m.Question[0].Name = "other.test."
			return [][]byte{pack(t, m)}
		}, nil, Temporary, "reply is for \"other.test.\""},
		{"not a reply", func(q *mdns.Msg) [][]byte {
			m := reply(q)
			m.Response = false
			return [][]byte{pack(t, m)}
		}, nil, Temporary, "QR bit clear"},
		{"flood", func(q *mdns.Msg) [][]byte {
			var out [][]byte
			for range 40 {
				out = append(out, []byte("\xff\xffjunk"))
			}
			return out
		}, nil, Temporary, "gave up after 16"},
		{"absurd MX names", func(q *mdns.Msg) [][]byte {
			return [][]byte{pack(t, reply(q,
				q.Question[0].Name+` 60 IN MX 10 evil\032host.test.`,
				q.Question[0].Name+` 60 IN MX 20 \000.test.`,
				q.Question[0].Name+` 60 IN MX 30 a\.b.test.`))}
		}, nil, Temporary, "no usable MX host"},
		{"TCP wrong ID", func(q *mdns.Msg) [][]byte {
			m := reply(q)
			m.Truncated = true
			return [][]byte{pack(t, m)}
		}, func(q *mdns.Msg) []byte {
			m := reply(q, q.Question[0].Name+" 60 IN MX 10 mx.evil.test.")
			m.Id++
			b := pack(t, m)
			return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
		}, Temporary, "does not match query ID"},
		{"TCP short", func(q *mdns.Msg) [][]byte {
			m := reply(q)
			m.Truncated = true
			return [][]byte{pack(t, m)}
		}, func(q *mdns.Msg) []byte { return []byte{0, 3, 1, 2, 3} }, Temporary, "shorter than a DNS header"},
		{"TCP refused", func(q *mdns.Msg) [][]byte {
			m := reply(q)
			m.Truncated = true
			return [][]byte{pack(t, m)}
		}, nil, Temporary, "TCP after truncated UDP reply"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startResponder(t, tc.udp, tc.tcp)
			r, err := New([]string{addr}, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.LookupMX(ctxT(t), "victim.test")
			wantErr(t, err, tc.kind, tc.msg, "victim.test")
		})
	}
}

func TestDNSHostileRepliesPartlyUsable(t *testing.T) {
	addr := startResponder(t, func(q *mdns.Msg) [][]byte {
		n := q.Question[0].Name
		switch q.Question[0].Qtype {
		case mdns.TypeMX:
			// A stray packet first, then a reply mixing good and absurd
			// names, a "." that breaks RFC 7505, and an unasked owner.
			return [][]byte{[]byte("junk"), pack(t, reply(q,
				n+` 60 IN MX 10 evil\032host.test.`,
				n+` 60 IN MX 0 .`,
				n+` 30 IN MX 20 Good.Test.`,
				n+` 90 IN MX 5 good.test.`,
				`elsewhere.test. 5 IN MX 1 injected.test.`))}
		case mdns.TypeA:
			return [][]byte{pack(t, reply(q, n+" 60 IN A 0.0.0.0", n+" 60 IN A 127.0.0.7"))}
		}
		return [][]byte{pack(t, reply(q))}
	}, nil)
	r, err := New([]string{addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.LookupMX(ctxT(t), "mixed.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := hostNames(res.Hosts); !slices.Equal(got, []string{"good.test/5"}) || res.TTL != 30*time.Second {
		t.Errorf("got %v ttl %v", got, res.TTL)
	}
	addrs, err := r.LookupIP(ctxT(t), "mixed.test")
	if err != nil || len(addrs) != 1 || addrs[0] != netip.MustParseAddr("127.0.0.7") {
		t.Errorf("addrs %v %v (0.0.0.0 must be dropped)", addrs, err)
	}
}

func TestDNSInvalidNames(t *testing.T) {
	s, r := world(t)
	long := strings.Repeat("a", 64) + ".test"
	huge := strings.Repeat("abcdefghi.", 26) + "test"
	for _, name := range []string{"", ".", "a..b", ".a.b", long, huge, "bad name.test", "x@y.test", "a\x00b.test", "\xff.test"} {
		_, err := r.LookupMX(ctxT(t), name)
		wantErr(t, err, Invalid, "not a valid domain name")
		_, err = r.LookupIP(ctxT(t), name)
		wantErr(t, err, Invalid)
	}
	if n := s.Queries(); n != 0 {
		t.Errorf("%d queries sent for invalid names", n)
	}
}

func TestDNSInternationalisedName(t *testing.T) {
	s, r := world(t)
	s.SetMX("xn--bcher-kva.test", sim.MXRecord{Host: "mx.xn--bcher-kva.test", Pref: 1})
	res, err := r.LookupMX(ctxT(t), "BÜCHER.test")
	if err != nil || res.Hosts[0].Host != "mx.xn--bcher-kva.test" {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestDNSSiteKey(t *testing.T) {
	got := SiteKey([]MX{{"B.mx.test.", 10}, {"a.mx.test", 20}, {"b.mx.test", 5}, {"", 1}})
	if got != "a.mx.test,b.mx.test" {
		t.Errorf("SiteKey = %q", got)
	}
	if SiteKey(nil) != "" {
		t.Error("SiteKey(nil) not empty")
	}
}

func TestDNSNewNameservers(t *testing.T) {
	good := func(in []string, want ...string) {
		t.Helper()
		r, err := New(in, time.Second)
		if err != nil {
			t.Fatalf("New(%q): %v", in, err)
		}
		if got := r.(*client).servers; !slices.Equal(got, want) {
			t.Errorf("New(%q) servers %q, want %q", in, got, want)
		}
	}
	bad := func(in ...string) {
		t.Helper()
		if _, err := New(in, time.Second); err == nil || !strings.Contains(err.Error(), "need an IP address") {
			t.Errorf("New(%q): err %v", in, err)
		}
	}
	good([]string{"127.0.0.1"}, "127.0.0.1:53")
	good([]string{"127.0.0.1:5353", "::1", "[::1]:54", "[::1]"}, "127.0.0.1:5353", "[::1]:53", "[::1]:54", "[::1]:53")
	bad("dns.example.com")
	bad("127.0.0.1:", "")
	bad("1.2.3.4:99999")

	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	os.WriteFile(conf, []byte("# test\nnameserver 127.0.0.53\nnameserver ::1\noptions timeout:3\n"), 0o644)
	r, err := newFromResolvConf(conf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.(*client); !slices.Equal(c.servers, []string{"127.0.0.53:53", "[::1]:53"}) || c.timeout != 3*time.Second {
		t.Errorf("from resolv.conf: %q %v", c.servers, c.timeout)
	}
	os.WriteFile(conf, []byte("search example.com\n"), 0o644)
	if _, err := newFromResolvConf(conf, 0); err == nil || !strings.Contains(err.Error(), "lists none") {
		t.Errorf("empty resolv.conf: %v", err)
	}
	if _, err := newFromResolvConf(filepath.Join(dir, "missing"), 0); err == nil || !strings.Contains(err.Error(), "set [dns] nameservers") {
		t.Errorf("missing resolv.conf: %v", err)
	}
}

func TestDNSErrorTexts(t *testing.T) {
	for _, tc := range []struct {
		e    *Error
		want string
	}{
		{&Error{Domain: "x.test", Kind: NXDomain}, `dns: "x.test" does not exist (NXDOMAIN)`},
		{&Error{Domain: "x.test", Kind: NoHost, qtype: "MX"}, `dns: "x.test" has no MX and no A/AAAA records: no host accepts its mail`},
		{&Error{Domain: "x.test", Kind: Temporary, Err: errors.New("boom"), qtype: "MX"}, `dns: MX lookup for "x.test" failed, will retry: boom`},
		{&Error{Domain: "x.test", Kind: Temporary}, `dns: DNS lookup for "x.test" failed, will retry: <nil>`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if Kind(99).String() != "kind(99)" || NullMX.String() != "null-mx" {
		t.Error("Kind.String")
	}
}

// TXT records come back joined per record (a DKIM key longer than 255
// octets is several character-strings), through the cache too; a name
// without them is NoHost, an unknown one NXDOMAIN.
func TestDNSLookupTXT(t *testing.T) {
	s, r := world(t)
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 400)
	s.SetTXT("sel._domainkey.fbl.test", long)
	s.SetTXT("multi.test", "one", "two")
	c := NewCache(r, 10, nil)
	for _, res := range []Resolver{r, c, c} {
		txt, err := res.LookupTXT(ctxT(t), "Sel._DomainKey.fbl.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(txt) != 1 || txt[0] != long {
			t.Fatalf("got %d records, first %.40q..., want the 418-octet key joined", len(txt), txt)
		}
	}
	txt, err := r.LookupTXT(ctxT(t), "multi.test")
	if err != nil || len(txt) != 2 {
		t.Fatalf("multi.test: %q %v", txt, err)
	}
	s.SetA("host.test", "127.0.0.1")
	_, err = r.LookupTXT(ctxT(t), "host.test")
	wantErr(t, err, NoHost, "no TXT")
	_, err = c.LookupTXT(ctxT(t), "nowhere.test")
	wantErr(t, err, NXDomain)
}

func TestTLSAAndAD(t *testing.T) {
	srv, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.SetMX("secure.test", sim.MXRecord{Pref: 10, Host: "mx.secure.test"})
	srv.SetA("mx.secure.test", "127.0.0.1")
	srv.SetAD("secure.test", true)
	srv.SetTLSA("_25._tcp.mx.secure.test", sim.TLSARecord{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2, 3}})
	srv.SetAD("_25._tcp.mx.secure.test", true)
	srv.SetMX("plain.test", sim.MXRecord{Pref: 10, Host: "mx.secure.test"})
	r, err := New([]string{srv.Addr()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if mx, err := r.LookupMX(ctx, "secure.test"); err != nil || !mx.AD {
		t.Fatalf("secure MX: %+v %v", mx, err)
	}
	if mx, err := r.LookupMX(ctx, "plain.test"); err != nil || mx.AD {
		t.Fatalf("plain MX: %+v %v", mx, err)
	}
	tr, err := NewTLSA([]string{srv.Addr()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tr.LookupTLSA(ctx, "_25._tcp.mx.secure.test")
	if err != nil || !res.AD || len(res.Records) != 1 || res.Records[0].Usage != 3 || string(res.Records[0].Data) != "\x01\x02\x03" {
		t.Fatalf("TLSA: %+v %v", res, err)
	}
	res, err = tr.LookupTLSA(ctx, "_25._tcp.nothing.test")
	if err != nil || len(res.Records) != 0 || res.AD {
		t.Fatalf("no TLSA: %+v %v", res, err)
	}
}
