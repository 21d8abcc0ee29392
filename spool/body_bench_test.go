package spool

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkBody: every delivery reads its message's body (a read
// transaction and a copy). 20 readers, 2 KB bodies, a backlog of 10,000
// messages.
func BenchmarkBody(b *testing.B) {
	s := openT(b, b.TempDir())
	msg := body(2048, "2 KB message body ")
	const backlog = 10000
	ms := make([]*Message, backlog)
	bodies := make([][]byte, backlog)
	for i := range ms {
		ms[i], bodies[i] = relayMessage(), msg
	}
	if err := s.PutMany(context.Background(), ms, bodies); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			got, err := s.Body(ms[rng.IntN(backlog)].ID)
			if err != nil || len(got) != len(msg) {
				b.Errorf("Body: %d bytes, %v", len(got), err)
				return
			}
		}
	})
}
