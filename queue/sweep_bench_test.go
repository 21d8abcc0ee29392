package queue

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/sim"
)

// BenchmarkSweepHeap is the memory a campaign's long tail of domains
// leaves in the queue, and what Sweep gives back: 20,000 domains, one
// message each, through the simulated provider; the heap in use once every
// site is idle, and again after idleSweeps sweeps. One scenario per
// iteration: run it with -benchtime 1x.
//
//	go test -run '^$' -bench SweepHeap -benchtime 1x ./queue
func BenchmarkSweepHeap(b *testing.B) {
	const domains = 20000
	for range b.N {
		b.StopTimer()
		f := newFixture(b, sim.Behavior{Name: "mx.any.test"})
		f.q.lingerFor = 10 * time.Millisecond
		for i := range domains {
			f.send(b, fmt.Sprintf("a@d%d.test", i))
		}
		f.out.wait(b, domains)
		deadline := time.Now().Add(time.Minute)
		for f.busySites() > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("%d sites still busy", f.busySites())
			}
			time.Sleep(50 * time.Millisecond) // a bounded wait for the sessions to close
		}
		before := heapInUse()
		at := time.Now()
		b.StartTimer()
		dropped := f.sweeps(&at, idleSweeps)
		b.StopTimer()
		after := heapInUse()
		if dropped != domains {
			b.Fatalf("dropped %d sites, want %d", dropped, domains)
		}
		b.ReportMetric(before, "MiB-before")
		b.ReportMetric(after, "MiB-after")
	}
}

// busySites counts the sites with something to do.
func (f *fixture) busySites() int {
	f.q.mu.Lock()
	defer f.q.mu.Unlock()
	n := 0
	for _, s := range f.q.sites {
		s.mu.Lock()
		if !s.idleLocked() {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// heapInUse is the heap in use after two collections, in MiB.
func heapInUse() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse) / (1 << 20)
}
