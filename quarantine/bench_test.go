package quarantine

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// benchAddr is the i-th of a realistic spread of addresses (about 28 bytes,
// the length of a typical bulk list's address).
func benchAddr(i int) string {
	first := [...]string{"john", "maria", "wei", "olga", "ahmed", "lucia", "kenji", "emma"}
	domains := [...]string{"gmail.com", "yahoo.com", "hotmail.com", "outlook.fr", "gmx.de", "example-corp.com"}
	return fmt.Sprintf("%s.smith%d@%s", first[i%len(first)], i, domains[i%len(domains)])
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	sp := openSpool(b, b.TempDir(), true)
	s, err := New(sp.KV(Bucket), Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fill puts n quarantined entries in the index directly, as load does.
func fill(s *Store, n int) {
	now := time.Now().UnixNano()
	reason := s.intern("user_unknown")
	for i := range n {
		s.set(benchAddr(i), rec{updated: now, lastSig: now, errors: 1, reason: reason, status: statusCode(Quarantined)})
	}
}

func BenchmarkSuppressed(b *testing.B) {
	s := benchStore(b)
	fill(s, 100_000)
	for _, bc := range []struct{ name, addr string }{
		{"hit", benchAddr(4242)},
		{"miss", "nobody.smith@gmail.com"},
		{"miss-uppercase-domain", "nobody.smith@GMail.com"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				s.Suppressed(bc.addr)
			}
		})
	}
	b.Run("miss-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.Suppressed("nobody.smith@gmail.com")
			}
		})
	})
}

func BenchmarkDelivered(b *testing.B) {
	s := benchStore(b)
	fill(s, 100_000)
	b.Run("unknown", func(b *testing.B) {
		for b.Loop() {
			if err := s.Delivered("nobody.smith@gmail.com"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unknown-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = s.Delivered("nobody.smith@gmail.com")
			}
		})
	})
}

// BenchmarkMemory reports the heap the index takes per entry (key, map slot
// and record; texts and history are on disk only).
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				s, err := New(nullKV{}, Config{}, nil)
				if err != nil {
					b.Fatal(err)
				}
				fill(s, n)
				runtime.GC()
				runtime.ReadMemStats(&m1)
				b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "bytes/entry")
				runtime.KeepAlive(s)
			}
		})
	}
}

// BenchmarkLoad measures New on a spool holding n entries (1M only with
// PENSTOCK_BENCH_1M=1: filling it takes a while).
func BenchmarkLoad(b *testing.B) {
	sizes := []int{100_000}
	if os.Getenv("PENSTOCK_BENCH_1M") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			sp := openSpool(b, b.TempDir(), true)
			s, err := New(sp.KV(Bucket), Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			keys := make([]string, n)
			for i := range keys {
				keys[i] = benchAddr(i)
			}
			e := sampleEntry()
			if _, err := s.parallel(keys, func(key string) (bool, error) {
				return true, sp.KV(Bucket).Put(key, encode(&e))
			}); err != nil {
				b.Fatal(err)
			}
			s = nil
			var m0, m1 runtime.MemStats
			for b.Loop() {
				runtime.GC()
				runtime.ReadMemStats(&m0)
				s, err = New(sp.KV(Bucket), Config{}, nil)
				if err != nil || s.Len() != n {
					b.Fatal(err, s.Len())
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			runtime.KeepAlive(s)
			b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "heap-bytes/entry")
			b.ReportMetric(float64(sp.Stats().Bytes)/float64(n), "disk-bytes/entry")
		})
	}
}

// nullKV is an empty store for measuring the index alone.
type nullKV struct{}

func (nullKV) Get(string) ([]byte, error)                       { return nil, fmt.Errorf("nullKV") }
func (nullKV) Put(string, []byte) error                         { return nil }
func (nullKV) Delete(string) error                              { return nil }
func (nullKV) ForEach(string, func(string, []byte) error) error { return nil }
