package sim

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func startDNS(t *testing.T) *DNSServer {
	t.Helper()
	s, err := NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func askDNS(t *testing.T, s *DNSServer, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, s.Addr())
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.Type(qtype), network, err)
	}
	return r
}

func TestDNSServerAnswers(t *testing.T) {
	s := startDNS(t)
	s.SetMX("Example.TEST", MXRecord{"mx1.example.test", 10}, MXRecord{"MX2.example.test.", 20})
	s.SetA("mx1.example.test", "127.0.0.2", "::1")
	s.SetTTL(42)

	for _, network := range []string{"udp", "tcp"} {
		r := askDNS(t, s, network, "EXAMPLE.test", dns.TypeMX)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("%s MX: %v", network, r)
		}
		mx := r.Answer[1].(*dns.MX)
		if mx.Mx != "mx2.example.test." || mx.Preference != 20 || mx.Hdr.Ttl != 42 {
			t.Errorf("%s MX: got %v", network, mx)
		}
	}
	if r := askDNS(t, s, "udp", "mx1.example.test", dns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
		t.Errorf("A: %v", r)
	}
	if r := askDNS(t, s, "udp", "mx1.example.test", dns.TypeAAAA); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "::1" {
		t.Errorf("AAAA: %v", r)
	}
	// Known name, missing type: NODATA with an SOA for negative caching.
	if r := askDNS(t, s, "udp", "mx1.example.test", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("NODATA: %v", r)
	}
	if r := askDNS(t, s, "udp", "nowhere.test", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown name: %v", r)
	}
	if got := s.Queries(); got != 6 {
		t.Errorf("Queries() = %d, want 6", got)
	}
}

func TestDNSServerNullMXAndCNAME(t *testing.T) {
	s := startDNS(t)
	s.SetNullMX("null.test")
	r := askDNS(t, s, "udp", "null.test", dns.TypeMX)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "." || r.Answer[0].(*dns.MX).Preference != 0 {
		t.Errorf("null MX: %v", r)
	}
	s.SetCNAME("alias.test", "real.test")
	s.SetMX("real.test", MXRecord{"mx.real.test", 5})
	r = askDNS(t, s, "udp", "alias.test", dns.TypeMX)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].(*dns.MX).Mx != "mx.real.test." {
		t.Errorf("CNAME: %v", r)
	}
	// A CNAME loop ends in a bounded chain.
	s.SetCNAME("loop1.test", "loop2.test")
	s.SetCNAME("loop2.test", "loop1.test")
	r = askDNS(t, s, "tcp", "loop1.test", dns.TypeMX)
	if len(r.Answer) != maxCNAMEHops+1 {
		t.Errorf("loop: %d records", len(r.Answer))
	}
}

func TestDNSServerFailures(t *testing.T) {
	s := startDNS(t)
	s.SetMX("ok.test", MXRecord{"mx.ok.test", 10})
	s.SetMX("bad.test", MXRecord{"mx.bad.test", 10})
	s.SetRcode("bad.test", dns.RcodeServerFailure)
	if r := askDNS(t, s, "udp", "bad.test", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("SetRcode: %v", r)
	}
	s.SetFailAll(dns.RcodeRefused)
	if r := askDNS(t, s, "udp", "ok.test", dns.TypeMX); r.Rcode != dns.RcodeRefused {
		t.Errorf("SetFailAll: %v", r)
	}
	s.SetFailAll(RcodeDrop)
	q := new(dns.Msg)
	q.SetQuestion("ok.test.", dns.TypeMX)
	c := &dns.Client{Timeout: 100 * time.Millisecond}
	if _, _, err := c.Exchange(q, s.Addr()); err == nil {
		t.Error("RcodeDrop: got an answer")
	}
	s.SetFailAll(0)
	if r := askDNS(t, s, "udp", "ok.test", dns.TypeMX); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after SetFailAll(0): %v", r)
	}
}

func TestDNSServerTruncatesUDP(t *testing.T) {
	s := startDNS(t)
	var mx []MXRecord
	for i := range 150 {
		mx = append(mx, MXRecord{fmt.Sprintf("mx%d.big.test", i), uint16(i)})
	}
	s.SetMX("big.test", mx...)
	r := askDNS(t, s, "udp", "big.test", dns.TypeMX)
	if !r.Truncated {
		t.Errorf("UDP reply of %d records not truncated", len(r.Answer))
	}
	r = askDNS(t, s, "tcp", "big.test", dns.TypeMX)
	if r.Truncated || len(r.Answer) != 150 {
		t.Errorf("TCP: truncated=%v, %d records", r.Truncated, len(r.Answer))
	}
}

func TestDNSServerRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:53", "nonsense"} {
		if s, err := NewDNSServer(addr); err == nil {
			s.Close()
			t.Errorf("NewDNSServer(%q) accepted", addr)
		}
	}
}

func TestDNSServerConcurrent(t *testing.T) {
	s := startDNS(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("d%d.test", i)
			for j := range 50 {
				s.SetMX(name, MXRecord{fmt.Sprintf("mx%d.test", j), 10})
				q := new(dns.Msg)
				q.SetQuestion(name+".", dns.TypeMX)
				c := &dns.Client{Timeout: 2 * time.Second}
				if r, _, err := c.Exchange(q, s.Addr()); err != nil || len(r.Answer) != 1 {
					t.Errorf("%s: %v %v", name, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if s.Queries() != 400 {
		t.Errorf("Queries() = %d, want 400", s.Queries())
	}
}

func BenchmarkDNSServer(b *testing.B) {
	s, err := NewDNSServer("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.SetMX("bench.test", MXRecord{"mx.bench.test", 10})
	c := &dns.Client{Timeout: 2 * time.Second}
	conn, err := c.Dial(s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	q := new(dns.Msg)
	q.SetQuestion("bench.test.", dns.TypeMX)
	for b.Loop() {
		if _, _, err := c.ExchangeWithConn(q, conn); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDNSServerTXT: a record longer than 255 bytes is served as several
// character-strings of one record, which join back to the original. (Over
// UDP without EDNS0 the 600-byte record does not fit: TC, then TCP.)
func TestDNSServerTXT(t *testing.T) {
	s := startDNS(t)
	long := strings.Repeat("k", 600)
	s.SetTXT("sel._domainkey.example.test", "v=DKIM1; p="+long, "other")
	if r := askDNS(t, s, "udp", "sel._domainkey.example.test", dns.TypeTXT); !r.Truncated {
		t.Errorf("udp without EDNS0: want TC, got %v", r)
	}
	for _, network := range []string{"tcp"} {
		r := askDNS(t, s, network, "sel._domainkey.example.test", dns.TypeTXT)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
			t.Fatalf("%s TXT: %v", network, r)
		}
		txt := r.Answer[0].(*dns.TXT)
		if len(txt.Txt) != 3 || len(txt.Txt[0]) != 255 || strings.Join(txt.Txt, "") != "v=DKIM1; p="+long {
			t.Errorf("%s: strings %d, first %d bytes; want 3 joining to the record", network, len(txt.Txt), len(txt.Txt[0]))
		}
		if got := r.Answer[1].(*dns.TXT).Txt; len(got) != 1 || got[0] != "other" {
			t.Errorf("%s: second record %q", network, got)
		}
	}
	if r := askDNS(t, s, "udp", "sel._domainkey.example.test", dns.TypeMX); len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("MX of a TXT-only name: want NODATA, got %v", r)
	}
}
