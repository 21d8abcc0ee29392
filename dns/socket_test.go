package dns

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/sim"
)

// portResponder is a loopback DNS server that answers the n-th query (from
// 0) as its script says and records the source port each query came from,
// in order.
type portResponder struct {
	addr  string
	mu    sync.Mutex
	ports []int
}

// startPortResponder starts one. script returns the datagrams to send for
// query n: nil sends one MX record, an empty non-nil slice drops the query.
func startPortResponder(t *testing.T, script func(n int, q *mdns.Msg) [][]byte) *portResponder {
	t.Helper()
	pr := &portResponder{}
	pr.addr = startResponderFrom(t, func(q *mdns.Msg, from *net.UDPAddr) [][]byte {
		pr.mu.Lock()
		n := len(pr.ports)
		pr.ports = append(pr.ports, from.Port)
		pr.mu.Unlock()
		if out := script(n, q); out != nil {
			return out
		}
		return [][]byte{pack(t, reply(q, q.Question[0].Name+" 60 IN MX 10 mx.example.test."))}
	}, nil)
	return pr
}

func (pr *portResponder) seen() []int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]int(nil), pr.ports...)
}

func distinct(ports []int) int {
	m := map[int]bool{}
	for _, p := range ports {
		m[p] = true
	}
	return len(m)
}

func TestDNSReusesSocketsToLoopbackServer(t *testing.T) {
	pr := startPortResponder(t, func(int, *mdns.Msg) [][]byte { return nil })
	r, err := New([]string{pr.addr}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const lookups = 40
	for i := range lookups {
		if _, err := r.LookupMX(ctxT(t), "d"+string(rune('a'+i%26))+".test"); err != nil {
			t.Fatal(err)
		}
	}
	ports := pr.seen()
	if len(ports) != lookups || distinct(ports) != 1 {
		t.Errorf("%d queries from %d source ports, want %d from one: sequential queries to a loopback server share a socket", len(ports), distinct(ports), lookups)
	}
}

func TestDNSFreshSocketPerQueryOffHost(t *testing.T) {
	for srv, want := range map[string]bool{
		"127.0.0.1:53":             true,
		"127.0.0.53:53":            true,
		"[::1]:53":                 true,
		"[::ffff:127.0.0.1]:53":    true,
		"192.0.2.1:53":             false,
		"10.0.0.1:53":              false,
		"[2001:db8::1]:53":         false,
		"[::ffff:198.51.100.7]:53": false,
	} {
		if got := reusable(srv); got != want {
			t.Errorf("reusable(%s) = %v, want %v", srv, got, want)
		}
	}
	c := newClient([]string{"192.0.2.1:53", "127.0.0.1:53"}, time.Second)
	if c.idle["192.0.2.1:53"] != nil || c.idle["127.0.0.1:53"] == nil {
		t.Errorf("free lists: %v", c.idle)
	}

	// A client whose server has no free list, as one off the host, asks
	// every query from a new port. (Tests reach loopback only, so the
	// server here is on loopback with its list taken away.)
	pr := startPortResponder(t, func(int, *mdns.Msg) [][]byte { return nil })
	c = newClient([]string{pr.addr}, 2*time.Second)
	delete(c.idle, pr.addr)
	const lookups = 10
	for range lookups {
		if _, err := c.LookupMX(ctxT(t), "fresh.test"); err != nil {
			t.Fatal(err)
		}
	}
	if ports := pr.seen(); distinct(ports) != lookups {
		t.Errorf("%d queries from %d source ports, want one each", len(ports), distinct(ports))
	}
}

// A socket that saw anything but its reply, or no reply in time, is
// closed: what is left in it must not meet a later query.
func TestDNSNoReuseAfterStrayOrTimeout(t *testing.T) {
	pr := startPortResponder(t, func(n int, q *mdns.Msg) [][]byte {
		switch n {
		case 1: // a stray before the reply
			bad := reply(q, q.Question[0].Name+" 60 IN MX 10 mx.evil.test.")
			bad.Id++
			return [][]byte{pack(t, bad), pack(t, reply(q, q.Question[0].Name+" 60 IN MX 10 mx.example.test."))}
		case 3: // dropped: the query times out and is asked again
			return [][]byte{}
		}
		return nil
	})
	r, err := New([]string{pr.addr}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := r.LookupMX(ctxT(t), "x.test"); err != nil {
			t.Fatal(err)
		}
	}
	ports := pr.seen()
	// 0: new socket, kept. 1: the same socket, closed for the stray. 2: a
	// new one, kept. 3: the same, times out, closed. 4: the retry, new.
	if len(ports) != 5 {
		t.Fatalf("queries seen from ports %v, want 5", ports)
	}
	if ports[1] != ports[0] || ports[3] != ports[2] {
		t.Errorf("ports %v: a clean socket was not reused", ports)
	}
	if ports[2] == ports[1] || ports[4] == ports[3] {
		t.Errorf("ports %v: a socket was reused after a stray or a timeout", ports)
	}
}

// BenchmarkLookup is a new domain's lookups, uncached, against a loopback
// server: MX, then A and AAAA of its host at once.
func BenchmarkLookup(b *testing.B) {
	s, r := world(b)
	s.SetMX("bench.test", sim.MXRecord{Host: "mx.bench.test", Pref: 10})
	s.SetA("mx.bench.test", "127.0.0.2")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.LookupMX(ctx, "bench.test"); err != nil {
			b.Fatal(err)
		}
		if _, err := r.LookupIP(ctx, "mx.bench.test"); err != nil {
			b.Fatal(err)
		}
	}
}
