package tlsstatus

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestBoardReplacesAndSorts(t *testing.T) {
	b := New(10)
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	b.SetHost(HostOutcome{Host: "mx.b.test", Time: t0, TLS: false, Failure: "STARTTLS not offered"})
	b.SetHost(HostOutcome{Host: "MX.a.test.", Time: t0, TLS: true, Version: "TLS1.3"})
	b.SetHost(HostOutcome{Host: "mx.b.test", Time: t0.Add(time.Minute), TLS: true, Verified: true})
	hs := b.Hosts()
	if len(hs) != 2 || hs[0].Host != "mx.a.test" || hs[1].Host != "mx.b.test" || !hs[1].TLS || hs[1].Failure != "" {
		t.Fatalf("hosts: %+v", hs)
	}
	mx := []string{"mx.a.test"}
	b.SetDomain(DomainPolicy{Domain: "A.test", Source: "sts", Mode: "enforce", MX: mx, Seen: t0})
	mx[0] = "changed" // the caller's slice: not the board's
	ds := b.Domains()
	if len(ds) != 1 || ds[0].Domain != "a.test" || ds[0].MX[0] != "mx.a.test" {
		t.Fatalf("domains: %+v", ds)
	}
}

// A full table drops the entry seen longest ago, never the new one.
func TestBoardBounded(t *testing.T) {
	b := New(3)
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for i, h := range []string{"h1", "h0", "h2"} {
		b.SetHost(HostOutcome{Host: h, Time: t0.Add(time.Duration(i) * time.Second)})
	}
	b.SetHost(HostOutcome{Host: "h3", Time: t0.Add(time.Hour)})
	got := hostNames(b)
	if fmt.Sprint(got) != "[h0 h2 h3]" {
		t.Fatalf("after overflow: %v", got)
	}
	for i := range 3 {
		b.SetDomain(DomainPolicy{Domain: fmt.Sprintf("d%d.test", i), Seen: t0.Add(time.Duration(i) * time.Second)})
	}
	b.SetDomain(DomainPolicy{Domain: "d9.test", Seen: t0.Add(time.Hour)})
	if ds := b.Domains(); len(ds) != 3 || ds[0].Domain != "d1.test" {
		t.Fatalf("domains after overflow: %+v", ds)
	}
}

func TestBoardConcurrent(t *testing.T) {
	b := New(50)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				b.SetHost(HostOutcome{Host: fmt.Sprintf("h%d-%d", g, i), Time: time.Now()})
				b.SetDomain(DomainPolicy{Domain: fmt.Sprintf("d%d", i), Seen: time.Now()})
				b.Hosts()
			}
		}()
	}
	wg.Wait()
	if n := len(b.Hosts()); n != 50 {
		t.Fatalf("%d hosts kept, want the bound 50", n)
	}
}

func TestNilBoard(t *testing.T) {
	var b *Board
	b.SetHost(HostOutcome{Host: "x"})
	b.SetDomain(DomainPolicy{Domain: "x"})
	if b.Hosts() != nil || b.Domains() != nil {
		t.Fatal("nil board returned entries")
	}
}

// Recording an entry again makes it the newest: the one dropped is the
// entry recorded longest ago, whatever order the keys came in first.
func TestBoardDropsLeastRecentlyRecorded(t *testing.T) {
	b := New(3)
	for _, h := range []string{"h1", "h2", "h3", "h1", "h4", "h2"} {
		b.SetHost(HostOutcome{Host: h})
	}
	got := hostNames(b)
	// h2 was dropped for h4 (h1 had been recorded again), then h3 for h2.
	if fmt.Sprint(got) != "[h1 h2 h4]" {
		t.Fatalf("kept %v, want [h1 h2 h4]", got)
	}
	// A full table keeps working as one: every key kept is found again.
	for i := range 10 {
		b.SetDomain(DomainPolicy{Domain: fmt.Sprintf("d%d.test", i%5)})
	}
	var ds []string
	for _, d := range b.Domains() {
		ds = append(ds, d.Domain)
	}
	if fmt.Sprint(ds) != "[d2.test d3.test d4.test]" {
		t.Fatalf("domains kept %v", ds)
	}
}

// BenchmarkSetDomainFull is a campaign to more domains than the table
// holds: every new domain drops one. Before the list it was a scan of the
// whole table (10,000 entries) at each one.
func BenchmarkSetDomainFull(b *testing.B) {
	board := New(DefaultMax)
	names := make([]string, 4*DefaultMax)
	for i := range names {
		names[i] = fmt.Sprintf("d%d.test", i)
	}
	for _, n := range names[:DefaultMax] {
		board.SetDomain(DomainPolicy{Domain: n})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		board.SetDomain(DomainPolicy{Domain: names[i%len(names)]})
	}
}

// hostNames is the board's hosts, by name.
func hostNames(b *Board) []string {
	var out []string
	for _, h := range b.Hosts() {
		out = append(out, h.Host)
	}
	return out
}
