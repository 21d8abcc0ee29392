package quota

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Quota checks per message as the number of sites grows: one key per site
// (scope source), as the dispatcher asks before each connection (TryConn,
// Release) and before each message (TakeMessage). The cost must not grow
// with the number of keys (docs/ARCHITECTURE.md §7):
//
//	go test -run '^$' -bench 'Keys' -count 6 ./quota/ | benchstat /dev/stdin
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("conn|src|default|mx%d.example.com|*", i)
	}
	return keys
}

var benchKeyCounts = []int{10, 1000, 10000}

func BenchmarkTryConnKeys(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchKeyCounts {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			q := NewLocal(RealClock())
			keys := benchKeys(n)
			for _, k := range keys { // every key known, one slot held
				if _, _, ok, err := q.TryConn(ctx, k, 20); !ok || err != nil {
					b.Fatal("TryConn refused")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				l, _, ok, err := q.TryConn(ctx, keys[i%n], 20)
				if !ok || err != nil {
					b.Fatal("TryConn refused")
				}
				l.Release()
			}
		})
	}
}

func BenchmarkTakeMessageKeys(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchKeyCounts {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			q := NewLocal(RealClock())
			keys := benchKeys(n)
			for i := range keys {
				keys[i] = "rate" + keys[i][len("conn"):]
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// A limit high enough that every call takes a token: the
				// cost measured is the check, not a refusal.
				q.TakeMessage(ctx, keys[i%n], 1<<30)
			}
		})
	}
}

// BenchmarkTakeShaping: the cost of the connection-open rate and of the
// daily count (97 buckets summed per call) on one key.
func BenchmarkTakeShaping(b *testing.B) {
	ctx := context.Background()
	b.Run("rate", func(b *testing.B) {
		q := NewLocal(RealClock())
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			q.TakeRate(ctx, "open|rule|r", Rate{N: 1 << 30, Per: time.Second})
		}
	})
	b.Run("daily", func(b *testing.B) {
		q := NewLocal(RealClock())
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			q.TakeDaily(ctx, "day|rule|r", 1<<30)
		}
	})
}
