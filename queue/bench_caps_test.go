package queue

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/tenants"
)

// stepClock moves a second forward at every reading, so that every rate
// token is granted and the benchmark measures the path, not the waiting.
type stepClock struct{ ns atomic.Int64 }

func (c *stepClock) Now() time.Time { return time.Unix(0, c.ns.Add(int64(time.Second))) }

// BenchmarkScheduleShaped: the scheduling CPU of one message with 200 MX
// rules, with and without 50 [[cap]]s (each site selected by two of them,
// one by its rule, one by its MX host, both with messages_per_hour and
// max_connections) and 1,000 tenants (each with messages_per_hour and a
// weight, the mail of every site spread over all of them), as a session
// sees it: per message a claim with the
// rule's hourly token (and the caps' tokens) and a push back; per
// connection of 100 messages the rule match, the caps' selection and the
// connection leases. Compare caps=0 (today's path) with caps=50 by
// cpu-ns/op, the process's CPU time per message (ns/op is wall clock,
// inflated when the machine is shared):
//
//	go test -run '^$' -bench ScheduleShaped -count 6 ./queue/ | tee shaped.txt
func BenchmarkScheduleShaped(b *testing.B) {
	const nRules, nSites, nJobs, perConn = 200, 200, 10000, 100
	var rs []mxrule.Rule
	for i := range nRules {
		rs = append(rs, mxrule.Rule{Name: "r" + strconv.Itoa(i), Patterns: []string{"*.p" + strconv.Itoa(i) + ".test"},
			Scope: mxrule.ScopeSource, MaxConnections: 1000, MaxMessagesPerConnection: perConn, MessagesPerHour: 100000})
	}
	rules, err := mxrule.New(rs)
	if err != nil {
		b.Fatal(err)
	}
	ts := tenants.Set{}
	for i := range 1000 {
		ts["t"+strconv.Itoa(i)] = tenants.NewLimit("t"+strconv.Itoa(i), 1000000, 1+i%3)
	}
	for _, bc := range []struct{ caps, tenants int }{{0, 0}, {50, 0}, {50, 1000}} {
		nCaps := bc.caps
		var cs []caps.Cap
		for i := range nCaps {
			c := caps.Cap{Name: "c" + strconv.Itoa(i), MaxConnections: 100000, MessagesPerHour: 1000000}
			if i%2 == 0 { // a provider group of 8 rules
				for k := range 8 {
					c.Rules = append(c.Rules, "r"+strconv.Itoa((i/2*8+k)%nRules))
				}
			} else {
				c.MX = []string{"*.p" + strconv.Itoa(i/2*8%nRules) + "*.test"}
				c.Sources = []string{"ip1"}
			}
			cs = append(cs, c)
		}
		capSet, err := caps.New(cs)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rules=%d/caps=%d/tenants=%d", nRules, nCaps, bc.tenants), func(b *testing.B) {
			q := benchQueueNew(b)
			q.deps.Quotas = quota.NewLocal(&stepClock{})
			cfg := &Config{Rules: rules, Caps: capSet}
			if bc.tenants > 0 {
				cfg.Tenants = ts
			}
			q.SetConfig(cfg)
			rng := rand.New(rand.NewPCG(1, 2))
			sites := make([]*site, nSites)
			for i := range sites {
				key := "mx.p" + strconv.Itoa(i) + ".test"
				sites[i] = newSite(q, key, []dns.MX{{Host: key, Pref: 10}})
				sites[i].running = true
			}
			fill(q, sites, nJobs, rng)
			if bc.tenants > 0 {
				// Every job's message belongs to one of the tenants, each
				// with a messages_per_hour and a weight.
				for _, s := range sites {
					for _, j := range s.jobs {
						j.e.tag = unique.Make(msgTag{tenant: "t" + strconv.Itoa(int(j.e.id)%bc.tenants)})
					}
				}
			}
			now := time.Now()
			src := Source{Name: "ip1"}
			lims := make([]limits, nSites)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			for i := 0; i < b.N; i++ {
				si := (i / perConn) % nSites
				s := sites[si]
				if i%perConn == 0 {
					// A new connection: match, select, lease.
					m := cfg.Rules.Match(s.hostNames())
					lim := limits{match: m, perHour: m.Rule.MessagesPerHour}
					l, _, _, err := q.deps.Quotas.TryConn(q.ctx, quota.SourceKey(m.Rule.Name, s.mxKey, "192.0.2.1").String(), m.Rule.MaxConnections)
					if err != nil {
						b.Fatal(err)
					}
					lim.caps = cfg.Caps.ForSite(m.Rule.Name, s.hostNames()).ForSource(src.Name)
					cl, _, _, ok := s.takeCapConns(q.ctx, l, lim.caps)
					if !ok {
						b.Fatal("cap refused")
					}
					cl.Release()
					lims[si] = lim
				}
				j, _ := s.claim(lims[si], "conn|src|"+lims[si].match.Rule.Name+"|"+s.mxKey+"|192.0.2.1")
				if j == nil {
					b.Fatal("no job claimed")
				}
				s.forget(j)
				j.due = dueOf(now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))))
				s.push(j)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}
