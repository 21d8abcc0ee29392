package message

import (
	"context"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/spool"
)

// BenchmarkBuildRelayed builds the transactions of a relayed 8 KB message
// with recipients at 10 domains (10 transactions), with the per-message
// cache and without: the cache reads and fixes the message once.
func BenchmarkBuildRelayed(b *testing.B) {
	msg := []byte("From: a@src.example\r\nSubject: x\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 100))
	load := func(spool.ID) ([]byte, error) { return append([]byte(nil), msg...), nil }
	m := relayed(1, 10)
	for _, tc := range []struct {
		name    string
		entries int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			p := New(Options{Load: load, CacheEntries: tc.entries})
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for r := range m.Recipients {
					if _, err := p.Build(context.Background(), m, []int{r}, "a@src.example"); err != nil {
						b.Fatal(err)
					}
				}
				p.Forget(m.ID)
			}
		})
	}
}

// BenchmarkBuildSingle is the pipeline's cost on the common relayed path
// (a 2 KB single-recipient message, nothing cached), the loader aside:
// what this package adds to each send.
func BenchmarkBuildSingle(b *testing.B) {
	msg := []byte("Received: from x\r\nFrom: a@src.example\r\nSubject: x\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 26))
	p := New(Options{Load: func(spool.ID) ([]byte, error) { return msg, nil }})
	m := relayed(1, 1)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := p.Build(context.Background(), m, []int{0}, "a@src.example"); err != nil {
			b.Fatal(err)
		}
	}
}
