package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/spool"
)

// Scheduling cost per recipient, as the queue grows. Every recipient goes
// through site.push (Enqueue, or a retry rescheduled) and site.claim (a
// session picks the earliest due job); these benchmarks measure that pair
// with a steady number of jobs queued, spread over a number of sites, so
// that the cost per job can be compared from 10k to 1M jobs and from 10 to
// 10,000 sites (docs/ARCHITECTURE.md §7: it must not grow with either):
//
//	go test -run '^$' -bench 'Schedule|EnqueueClaim' -count 6 ./queue/ | tee sched.txt
//	benchstat sched.txt
//
// The benchmark plays the site's runner (no goroutines, no network): jobs
// are due in the past in random order, so every claim pops the heap's top
// and every push sifts a random due time into it.

var benchSizes = []struct {
	name string
	jobs int
}{{"10k", 10_000}, {"100k", 100_000}, {"1M", 1_000_000}}

var benchSiteCounts = []int{1, 10, 1000, 10000}

// benchQueueNew builds a queue without spool or network, closed when the
// benchmark ends (New starts a goroutine that would keep it, and its
// million jobs, alive).
func benchQueueNew(tb testing.TB) *Queue {
	q := New(&Config{}, Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.Close(ctx)
	})
	return q
}

// heldSite registers a site whose runner is the benchmark itself.
func heldSite(q *Queue, key string) *site {
	s := newSite(q, key, []dns.MX{{Host: key, Pref: 10}})
	s.running = true // push starts no runner goroutine
	q.mu.Lock()
	q.sites[key] = s
	q.mu.Unlock()
	return s
}

// resolvedDomain routes domain to s without a lookup (as after the MX answer).
func resolvedDomain(q *Queue, domain string, s *site) {
	q.mu.Lock()
	q.domains[domain] = &domainState{name: unique.Make(domain), site: s, expires: time.Now().Add(24 * time.Hour)}
	q.mu.Unlock()
}

// benchEntry is the entry of a benchmark's message (never spooled, never
// sent: claim reads only the entry).
func benchEntry(m *spool.Message) *entry {
	e := entryOf(m)
	e.pending = 1
	return e
}

func benchMessage(i, sites int, now time.Time) *spool.Message {
	return &spool.Message{
		ID: spool.ID(i + 1), Sender: "bounce@news.example.com", Received: now, Expires: now.Add(120 * time.Hour),
		Recipients: []spool.Recipient{{Addr: "user" + strconv.Itoa(i) + "@d" + strconv.Itoa(i%sites) + ".example"}},
	}
}

// fill queues jobs spread evenly over the sites, each with its own entry and
// message (as in production: claim reads the message's expiry), due at a
// random time in the past hour.
func fill(q *Queue, sites []*site, jobs int, rng *rand.Rand) {
	now := time.Now()
	for i := range jobs {
		m := benchMessage(i, len(sites), now)
		e := benchEntry(m)
		j := &job{e: e, rcpts: []int{0}, domain: unique.Make("d" + strconv.Itoa(i%len(sites)) + ".example"), index: -1,
			due: dueOf(now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))))}
		sites[i%len(sites)].push(j)
	}
}

func benchSites(q *Queue, n int) []*site {
	sites := make([]*site, n)
	for i := range sites {
		sites[i] = heldSite(q, fmt.Sprintf("mx%d.example", i))
		resolvedDomain(q, "d"+strconv.Itoa(i)+".example", sites[i])
	}
	return sites
}

// BenchmarkSchedule: one claim (pop the earliest due job) and one push
// (reschedule it at a random due time) per op, jobs held constant.
func BenchmarkSchedule(b *testing.B) {
	for _, sz := range benchSizes {
		for _, ns := range benchSiteCounts {
			if ns > sz.jobs/10 {
				continue
			}
			b.Run(fmt.Sprintf("jobs=%s/sites=%d", sz.name, ns), func(b *testing.B) {
				q := benchQueueNew(b)
				rng := rand.New(rand.NewPCG(1, 2))
				sites := benchSites(q, ns)
				fill(q, sites, sz.jobs, rng)
				now := time.Now()
				dues := make([]time.Duration, 4096)
				for i := range dues {
					dues[i] = time.Duration(rng.Int64N(int64(time.Hour)))
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					s := sites[i%ns]
					j, _ := s.claim(limits{}, "conn|src|bench")
					if j == nil {
						b.Fatal("no job due")
					}
					s.forget(j)
					j.due = dueOf(now.Add(-dues[i%len(dues)]))
					s.push(j)
				}
			})
		}
	}
}

// BenchmarkEnqueueClaim: the whole path of a new message into the
// scheduler (Enqueue: group by domain, route to the resolved domain's
// site, push) and out of it (claim), jobs held constant.
func BenchmarkEnqueueClaim(b *testing.B) {
	for _, sz := range benchSizes {
		for _, ns := range benchSiteCounts {
			if ns > sz.jobs/10 {
				continue
			}
			b.Run(fmt.Sprintf("jobs=%s/sites=%d", sz.name, ns), func(b *testing.B) {
				q := benchQueueNew(b)
				rng := rand.New(rand.NewPCG(3, 4))
				sites := benchSites(q, ns)
				fill(q, sites, sz.jobs, rng)
				now := time.Now()
				// Prebuilt messages (not timed), due now: behind the older
				// jobs of their site in the heap.
				const pre = 1 << 16
				ms := make([]*spool.Message, pre)
				for i := range ms {
					ms[i] = benchMessage(sz.jobs+i, ns, now)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if i%pre == 0 && i > 0 {
						b.StopTimer()
						for k := range ms {
							ms[k] = benchMessage(sz.jobs+i+k, ns, now)
						}
						b.StartTimer()
					}
					q.Enqueue(ms[i%pre])
					s := sites[i%ns]
					j, _ := s.claim(limits{}, "conn|src|bench")
					if j == nil {
						b.Fatal("no job due")
					}
					s.forget(j)
				}
			})
		}
	}
}

// BenchmarkScheduleFresh is BenchmarkSchedule for new mail: Enqueue gives
// a fresh recipient the due time of its NextAttempt, the zero time, so
// every job in the heap has the same key. push and pop then stop at once
// (O(1)); the price is the order: among equal keys container/heap pops
// the job pushed last, so a due backlog is sent newest first.
func BenchmarkScheduleFresh(b *testing.B) {
	for _, sz := range benchSizes {
		ns := 10
		b.Run(fmt.Sprintf("jobs=%s/sites=%d", sz.name, ns), func(b *testing.B) {
			q := benchQueueNew(b)
			sites := benchSites(q, ns)
			now := time.Now()
			for i := range sz.jobs {
				e := benchEntry(benchMessage(i, ns, now))
				sites[i%ns].push(&job{e: e, rcpts: []int{0}, domain: unique.Make("d" + strconv.Itoa(i%ns) + ".example"), index: -1})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := sites[i%ns]
				j, _ := s.claim(limits{}, "conn|src|bench")
				if j == nil {
					b.Fatal("no job due")
				}
				s.forget(j)
				s.push(j)
			}
		})
	}
}

// keyedHeap is a prototype for the proposal in BENCHMARKS.md ("Next
// steps"): the due time and an enqueue sequence number stored in the heap
// slice itself, so that sifting compares contiguous memory instead of
// dereferencing every job it passes, and equal due times pop in FIFO
// order. Test code only: it measures the proposal, the queue does not use it.
type keyedItem struct {
	due int64
	seq uint64
	j   *job
}

type keyedHeap struct {
	items []keyedItem
	seq   uint64
}

func (h *keyedHeap) less(a, b int) bool {
	x, y := &h.items[a], &h.items[b]
	return x.due < y.due || (x.due == y.due && x.seq < y.seq)
}

func (h *keyedHeap) push(j *job) {
	h.seq++
	h.items = append(h.items, keyedItem{due: int64(j.due), seq: h.seq, j: j})
	for i := len(h.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *keyedHeap) pop() *job {
	n := len(h.items) - 1
	top := h.items[0].j
	h.items[0] = h.items[n]
	h.items[n] = keyedItem{}
	h.items = h.items[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			break
		}
		h.items[i], h.items[c] = h.items[c], h.items[i]
		i = c
	}
	return top
}

// BenchmarkScheduleKeyedHeap is BenchmarkSchedule's one-site case on the
// keyedHeap prototype, with the same random due times and the same read of
// the job's message expiry that claim makes.
func BenchmarkScheduleKeyedHeap(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run(fmt.Sprintf("jobs=%s/sites=1", sz.name), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 2))
			now := time.Now()
			h := &keyedHeap{}
			for i := range sz.jobs {
				e := benchEntry(benchMessage(i, 1, now))
				h.push(&job{e: e, rcpts: []int{0}, index: -1, due: dueOf(now.Add(-time.Duration(rng.Int64N(int64(time.Hour)))))})
			}
			dues := make([]time.Duration, 4096)
			for i := range dues {
				dues[i] = time.Duration(rng.Int64N(int64(time.Hour)))
			}
			var mu sync.Mutex
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mu.Lock()
				j := h.pop()
				mu.Unlock()
				if j.e.expired(now) {
					b.Fatal("expired")
				}
				j.due = dueOf(now.Add(-dues[i%len(dues)]))
				mu.Lock()
				h.push(j)
				mu.Unlock()
			}
		})
	}
}

// BenchmarkTotals reads the process-wide totals with 1M jobs queued over
// 1,000 sites (the dashboard and /status poll it).
func BenchmarkTotals(b *testing.B) {
	q := benchQueueNew(b)
	fill(q, benchSites(q, 1000), 1_000_000, rand.New(rand.NewPCG(1, 2)))
	for b.Loop() {
		if q.Totals().Queued != 1_000_000 {
			b.Fatal("wrong total")
		}
	}
}
