package mta_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// emfileDialer fails its first fail dials as socket() does when the process
// has no descriptor left, then dials for real.
type emfileDialer struct {
	fail  int64
	dials atomic.Int64
}

func (d *emfileDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.dials.Add(1) <= d.fail {
		return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// TestLocalProblemDescriptorsExhausted replays the incident: our process ran
// out of file descriptors, every dial failed with EMFILE, and flow control
// blamed a healthy remote site and put it in backoff. Our own exhaustion
// must be labelled local and never move the site's flow state.
func TestLocalProblemDescriptorsExhausted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "healthy"}, []string{"healthy.test"}, "mx.healthy.test")
	if err != nil {
		t.Fatal(err)
	}
	d := &emfileDialer{fail: 40} // well over min_attempts (10) with fastFlow
	h := &harness{t: t, world: w, cfg: testConfig(t, w, t.TempDir()), opts: mta.Options{Dialer: d}}
	fastFlow(h.cfg)
	h.start()
	const n = 20
	h.sendMany(n, 4, func(i int) string { return fmt.Sprintf("u%d@healthy.test", i) })
	waitForEvery(t, 30*time.Second, 100*time.Millisecond, "40 failed dials", func() bool {
		return d.dials.Load() > d.fail || len(flowRecords(h.records(), "healthy", "")) > 0
	})
	if fc := flowRecords(h.records(), "healthy", ""); len(fc) > 0 {
		t.Fatalf("flow control moved the site for our own EMFILE: %s %s", fc[0].State, fc[0].Detail)
	}
	waitDelivered(t, p, n, 30*time.Second)

	recs := h.records()
	if fc := flowRecords(recs, "healthy", ""); len(fc) > 0 {
		t.Fatalf("flow control moved the site for our own EMFILE: %s %s", fc[0].State, fc[0].Detail)
	}
	var ex queue.Explanation
	h.api("GET", "/api/v1/explain?domain=healthy.test", &ex)
	if ex.Site == nil || ex.Site.Flow.State != "normal" || ex.Site.Flow.Errors != 0 {
		t.Fatalf("site flow after EMFILE: %+v", ex.Site)
	}
	failures := 0
	for _, r := range recs {
		if r.Type == events.TransientFailure && strings.Contains(r.Text, "too many open files") {
			failures++
			if r.Reason != "not_connected" || !strings.Contains(r.Text, "local") {
				t.Errorf("EMFILE failure recorded as %s: %q", r.Reason, r.Text)
			}
		}
	}
	if failures == 0 {
		t.Fatal("no TransientFailure names the EMFILE")
	}
}
