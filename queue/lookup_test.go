package queue

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/sim"
)

// gatedResolver holds every MX lookup until open is closed.
type gatedResolver struct {
	*fakeResolver
	open chan struct{}
}

func (r gatedResolver) LookupMX(ctx context.Context, domain string) (dns.MXResult, error) {
	select {
	case <-r.open:
	case <-ctx.Done():
		return dns.MXResult{}, ctx.Err()
	}
	return r.fakeResolver.LookupMX(ctx, domain)
}

// Mail to many new domains at once (a restart, a campaign's first minute)
// waits for its MX lookups in a queue served by at most maxLookups
// goroutines, not a goroutine per domain; once the resolver answers, all
// of it goes out.
func TestLookupsQueueBehindFewGoroutines(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.any.test"})
	gate := gatedResolver{fakeResolver: f.res, open: make(chan struct{})}
	f.q.deps.Resolver = gate
	const domains = 4 * maxLookups
	for i := range domains {
		f.send(t, fmt.Sprintf("a@d%d.test", i))
	}
	if n := goroutinesIn("queue.(*Queue).resolve(", "queue.(*lookupQueue).work("); n == 0 || n > maxLookups {
		t.Errorf("%d lookup goroutines for %d new domains, want 1 to %d", n, domains, maxLookups)
	}
	close(gate.open)
	for i, o := range f.out.wait(t, domains) {
		if !o.Delivered {
			t.Fatalf("outcome %d: %+v, want delivered", i, o)
		}
	}
}

// A temporary MX lookup failure holds the domain's mail; the next lookup
// comes from a timer, and when it succeeds the mail goes out.
func TestMXLookupRetriedAfterTemporaryFailure(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.gamma.test"})
	cfg := *f.q.config()
	cfg.DNSRetry = 50 * time.Millisecond // the first retry waits min(5 s, this)
	f.q.SetConfig(&cfg)
	f.res.mu.Lock()
	f.res.temp["gamma.test"] = true
	f.res.mu.Unlock()
	f.send(t, "x@gamma.test")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(f.q.Explain(context.Background(), "gamma.test").Verdict, StatusMXFailed) {
		if time.Now().After(deadline) {
			t.Fatal("the failed lookup never held the mail")
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll of the queue's own view
	}
	f.res.mu.Lock()
	delete(f.res.temp, "gamma.test")
	f.res.mu.Unlock()
	if out := f.out.wait(t, 1); !out[0].Delivered {
		t.Fatalf("%+v, want delivered after the lookup was retried", out[0])
	}
}
