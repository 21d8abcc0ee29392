package spool

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Benchmarks of the spool as the MTA uses it, all durable (fsync on):
//
//	go test -run '^$' -bench . ./spool/
//
// PENSTOCK_SPOOL_BENCH_RCPTS sets the campaign size of BenchmarkLoad
// (default 100000; 1000000 for the design target).

const benchWriters = 20

func cpuUsed() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallelism makes RunParallel use benchWriters goroutines.
func parallelism() int {
	return (benchWriters + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0)
}

func relayMessage() *Message {
	now := time.Now()
	return &Message{Sender: "sender@example.com", Received: now, Expires: now.Add(120 * time.Hour),
		Pool: "default", Size: 2048, Recipients: []Recipient{{Addr: "rcpt@example.org"}}}
}

// BenchmarkPutParallel: 20 goroutines Put 2 KB messages, durable.
func BenchmarkPutParallel(b *testing.B) {
	s := openT(b, b.TempDir())
	msg := body(2048, "2 KB message body ")
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(parallelism())
	st0, cpu0, t0 := s.Stats(), cpuUsed(), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(context.Background(), relayMessage(), msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, s, st0, cpu0, t0, "puts")
}

// BenchmarkUpdate: 20 goroutines each rewrite their own message's state
// (a retry scheduled), durable.
func BenchmarkUpdate(b *testing.B) {
	s := openT(b, b.TempDir())
	ms := make([]*Message, benchWriters*runtime.GOMAXPROCS(0)*parallelism())
	for i := range ms {
		ms[i] = relayMessage()
	}
	if err := s.PutMany(context.Background(), ms, nil); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(parallelism())
	st0, cpu0, t0 := s.Stats(), cpuUsed(), time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := ms[next.Add(1)-1] // one message per goroutine: no concurrent Update of an ID
		for pb.Next() {
			r := &m.Recipients[0]
			r.Attempts++
			r.NextAttempt = time.Now().Add(15 * time.Minute)
			r.LastCode, r.LastEnhanced, r.LastText = 451, "4.7.1", "Try again later"
			if err := s.Update(m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, s, st0, cpu0, t0, "updates")
}

func reportRate(b *testing.B, s *Spool, st0 Stats, cpu0 time.Duration, t0 time.Time, unit string) {
	wall, cpu := time.Since(t0), cpuUsed()-cpu0
	st := s.Stats()
	n := float64(b.N)
	b.ReportMetric(n/wall.Seconds(), unit+"/s")
	b.ReportMetric(n/float64(st.Commits-st0.Commits), unit+"/commit")
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/"+unit[:len(unit)-1])
}

// campaign stores n campaign recipients, perMsg to a message, through
// PutMany calls of 10,000 recipients, with ~40 bytes of variables each.
func campaign(b *testing.B, s *Spool, n, perMsg int) (metaBytes int) {
	b.Helper()
	now := time.Now()
	const perCall = 10000
	for done := 0; done < n; {
		var ms []*Message
		for c := 0; c < perCall && done < n; {
			m := &Message{Sender: "bounce-camp-2026-11@news.example.com", Received: now,
				Expires: now.Add(72 * time.Hour), DeliveryID: "camp-2026-11-spring", Pool: "bulk"}
			for k := 0; k < perMsg && done < n; k++ {
				m.Recipients = append(m.Recipients, Recipient{
					Addr: fmt.Sprintf("user%07d@example%d.com", done, done%1000),
					Vars: []byte(fmt.Sprintf(`{"first":"Name%07d","code":"X%07d"}`, done, done)),
				})
				done++
				c++
			}
			rec, _, _ := encodeMeta(m)
			metaBytes += len(rec)
			ms = append(ms, m)
		}
		if err := s.PutMany(context.Background(), ms, nil); err != nil {
			b.Fatal(err)
		}
	}
	return metaBytes
}

// BenchmarkCampaignBytes stores 100,000 campaign recipients and reports what
// each costs on disk. bbolt grows its file ahead of need (in 16 MB steps at
// this size), so the honest figure is "used-B/rcpt": the database's
// high-water mark (pages in use or free, tx.Size) after the writes, divided
// by the recipients. "file-B/rcpt" is the file's size, growth slack included;
// "record-B/rcpt" is the encoded meta alone, without the B+tree.
func BenchmarkCampaignBytes(b *testing.B) {
	const n = 100000
	for _, perMsg := range []int{1, 100} {
		b.Run(fmt.Sprintf("rcpts-per-msg=%d", perMsg), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				dir := b.TempDir()
				s, err := Open(dir, Options{})
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				recBytes := campaign(b, s, n, perMsg)
				took := time.Since(t0)
				var used int64
				_ = s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				fi, err := os.Stat(dir + "/" + fileName)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(used)/n, "used-B/rcpt")
				b.ReportMetric(float64(fi.Size())/n, "file-B/rcpt")
				b.ReportMetric(float64(recBytes)/n, "record-B/rcpt")
				b.ReportMetric(n/took.Seconds(), "ingest-rcpts/s")
			}
		})
	}
}

// BenchmarkLoad measures a restart: Open (which also counts the stored
// messages) then Load of a campaign of PENSTOCK_SPOOL_BENCH_RCPTS recipients,
// one per message, as the queue would receive them. The file is in the page
// cache, as after a process restart; after a reboot the disk read adds to it.
// heap-B/rcpt is the Go heap the loaded messages keep; used-B/rcpt is as in
// BenchmarkCampaignBytes.
func BenchmarkLoad(b *testing.B) {
	n := 100000
	if v := os.Getenv("PENSTOCK_SPOOL_BENCH_RCPTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("PENSTOCK_SPOOL_BENCH_RCPTS=%q: want a positive count", v)
		}
	}
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	campaign(b, s, n, 1)
	var used int64
	_ = s.db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(t0)
		keep := make([]*Message, 0, n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		t1 := time.Now()
		err = s.Load(func(m *Message) error { keep = append(keep, m); return nil })
		loaded := time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(keep) != n {
			b.Fatalf("loaded %d of %d", len(keep), n)
		}
		b.ReportMetric(float64(opened.Milliseconds()), "open-ms")
		b.ReportMetric(float64(loaded.Milliseconds()), "load-ms")
		b.ReportMetric(float64(n)/loaded.Seconds(), "rcpts/s")
		b.ReportMetric(float64(used)/float64(n), "used-B/rcpt")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-B/rcpt")
		runtime.KeepAlive(keep)
		s.Close()
		b.StartTimer()
	}
}
