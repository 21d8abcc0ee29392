package eventsout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// benchEvents reads n delivery-log-like records through a Tail, as the
// outputs do.
func benchEvents(b *testing.B, n int) []Event {
	b.Helper()
	dir := b.TempDir()
	var log strings.Builder
	for i := range n {
		fmt.Fprintf(&log, `{"type":"Delivery","time":"2026-12-07T05:00:00.123456789Z","id":"%016x","sender":"bounce@example.com","recipient":"user%d@example.net","site":"example.net","mx_host":"mx1.example.net","mx_ip":"127.0.0.1","source_ip":"127.0.0.2","rule":"bench","code":250,"enhanced_code":"2.0.0","text":"2.0.0 Ok: queued as ABC%d","attempt":1,"size":2048,"tls":true}`+"\n", i, i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(log.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	tl := NewTail(dir)
	tl.Refresh()
	evs, _, _, _, err := tl.Read(Cursor{}, n)
	if err != nil || len(evs) != n {
		b.Fatalf("%d events, %v", len(evs), err)
	}
	return evs
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSend sends b.N events in batches of batch through s and reports
// this process's CPU per event (the receiver's is not in it).
func benchSend(b *testing.B, s Sender, batch int) {
	evs := benchEvents(b, batch)
	ctx := context.Background()
	if err := s.Send(ctx, evs); err != nil { // connect, migrate
		b.Skipf("receiver: %v", err)
	}
	b.ResetTimer()
	cpu0 := cpuNow()
	for sent := 0; sent < b.N; sent += batch {
		if err := s.Send(ctx, evs[:min(batch, b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuNow()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/event")
}

func BenchmarkSendAMQP(b *testing.B) {
	ex := "penstock_bench" // the exchange penstock bench uses: not one more per run
	s := newAMQP(config.Stream{Name: "b", Type: config.StreamAMQP, URL: "amqp://guest:guest@127.0.0.1:5672/", Exchange: ex})
	defer s.Close()
	benchSend(b, s, 100)
}

func BenchmarkSendNATS(b *testing.B) {
	s := newNATS(config.Stream{Name: "b", Type: config.StreamNATS, URL: "nats://127.0.0.1:4222",
		SubjectPrefix: "penstock_bench", JetStream: "PENSTOCK_BENCH"})
	defer s.Close()
	benchSend(b, s, 100)
}

func BenchmarkSendPostgres(b *testing.B) {
	schema := fmt.Sprintf("penstock_b%d_%d", os.Getpid(), time.Now().UnixNano())
	s := newPostgres(config.Postgres{DSN: pgBase, Schema: schema, BatchSize: 1000})
	defer func() {
		p := s.(*Postgres)
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		}
		p.mu.Unlock()
		s.Close()
	}()
	// Each batch gets fresh event ids: a re-sent one is not the case measured.
	evs := benchEvents(b, 1000)
	ctx := context.Background()
	if err := s.Send(ctx, evs[:1]); err != nil {
		b.Skipf("receiver: %v", err)
	}
	batches := make([][]Event, 0, b.N/1000+1)
	for sent := 0; sent < b.N; sent += 1000 {
		bt := make([]Event, min(1000, b.N-sent))
		for i := range bt {
			bt[i] = evs[i]
			bt[i].ID = fmt.Sprintf("b%d-%d", sent, i)
		}
		batches = append(batches, bt)
	}
	b.ResetTimer()
	cpu0 := cpuNow()
	for _, bt := range batches {
		if err := s.Send(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuNow()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/event")
}

func BenchmarkRead(b *testing.B) {
	const n = 20000
	dir := b.TempDir()
	var log strings.Builder
	for i := range n {
		fmt.Fprintf(&log, `{"type":"Delivery","time":"2026-12-07T05:00:00Z","id":"%016x","recipient":"user%d@example.net","text":"2.0.0 Ok"}`+"\n", i, i)
	}
	os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(log.String()), 0o644)
	tl := NewTail(dir)
	tl.Refresh()
	b.ResetTimer()
	c := Cursor{}
	for i := 0; i < b.N; {
		evs, next, _, _, err := tl.Read(c, 100)
		if err != nil {
			b.Fatal(err)
		}
		i += len(evs)
		c = next
		if len(evs) == 0 {
			c = Cursor{}
		}
	}
}
