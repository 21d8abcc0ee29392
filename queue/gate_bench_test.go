package queue

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
)

// BenchmarkGateSources: the scheduling work of one message through the
// gates, as a site's runner does it before a session (flow control's
// decision, the rule's limits, a connection lease from a pool of 20
// sources, the message claim), then the lease and the job given back.
// "healthy": every source normal; "one-backoff": one source in backoff
// and one suspended, so the pool's weights are re-normalised each time.
//
//	go test -run '^$' -bench GateSources -count 6 ./queue/
func BenchmarkGateSources(b *testing.B) {
	for _, troubled := range []bool{false, true} {
		name := "healthy"
		if troubled {
			name = "one-backoff"
		}
		b.Run("sources=20/"+name, func(b *testing.B) {
			pool := make([]Source, 20)
			for i := range pool {
				pool[i] = Source{Name: "ip" + strconv.Itoa(i), IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Weight: 1 + i%3}
			}
			fc := flow.New(flow.Config{Patterns: flow.ShippedPatterns()}, flow.Options{})
			cfg := benchRulesConfig(b, pool, 100_000_000)
			q := New(cfg, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Quotas: quota.NewLocal(quota.RealClock()), Flow: fc})
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				q.Close(ctx)
			})
			s := benchSites(q, 1)[0]
			fill(q, []*site{s}, 10_000, rand.New(rand.NewPCG(1, 2)))
			now := time.Now()
			for _, src := range pool {
				fc.Record(flow.Event{Time: now, Site: s.key, Path: src.IP.String() + ">192.0.2.1", OK: true})
			}
			if troubled {
				fc.Record(flow.Event{Time: now, Site: s.key, Path: "10.0.0.1>192.0.2.1", Err: true, Code: 421, Enhanced: "4.7.0", Text: "[TSS04] deferred"})
				fc.Record(flow.Event{Time: now, Site: s.key, Path: "10.0.0.1>192.0.2.1", OK: true}) // no pacing hold
				fc.Adopt(flow.Change{Time: now, Site: s.key, Source: "10.0.0.2", From: flow.Normal, To: flow.Suspended, Until: now.Add(time.Hour)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			defer func() {
				// CPU per message: the machine is shared, wall time is not.
				if cpu0 >= 0 {
					b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
				}
			}()
			for i := 0; i < b.N; i++ {
				j, lease, ok := benchGate(q, s, cfg)
				if !ok {
					b.Fatal("gate refused")
				}
				lease.Release()
				s.forget(j)
				j.due = dueOf(now.Add(-time.Duration(i%4096) * time.Millisecond))
				s.push(j)
			}
		})
	}
}

// benchRulesConfig is a configuration with one source-scoped rule for
// every site and pool as the default pool.
func benchRulesConfig(tb testing.TB, pool []Source, perHour int) *Config {
	rules, err := mxrule.New([]mxrule.Rule{{Name: "bench", Patterns: []string{"*"}, Scope: mxrule.ScopeSource, MaxConnections: 1000, MessagesPerHour: perHour}})
	if err != nil {
		tb.Fatal(err)
	}
	return &Config{Rules: rules, Pools: map[string][]Source{"": pool}, MaxMXAddrs: 5}
}
