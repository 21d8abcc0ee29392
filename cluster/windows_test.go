package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/redisbus"
)

// TestSharedErrorWindows: two nodes on the real Redis each see half the
// attempts flow control needs (min_attempts 20) at an error ratio above
// its threshold; each alone stays normal, together they trip the
// threshold on both, for the source's window and without touching the
// other source. Redis gone, each node judges by its own window again and
// the detail says so.
func TestSharedErrorWindows(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := flow.Config{MinAttempts: 20, ErrorRatio: 0.5, Window: time.Minute}
	var ctrls []*flow.Controller
	for _, name := range []string{"a", "b"} {
		fc := flow.New(cfg, flow.Options{})
		fc.ShareWindows()
		c, err := cluster.Dial(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		bus := redisbus.New(c, logger())
		t.Cleanup(func() { bus.Close() })
		n, err := cluster.StartBridge(c, bus, cluster.BridgeOptions{Node: name, Logger: logger(), Windows: fc, SyncInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		ctrls = append(ctrls, fc)
	}
	const site = "mta5.am0.yahoodns.net"
	stateOf := func(fc *flow.Controller, src string) flow.SourceDecision {
		for _, d := range fc.SourcesAll(site, time.Now()) {
			if d.Source == src {
				return d
			}
		}
		return flow.SourceDecision{}
	}
	for _, fc := range ctrls {
		for i := range 10 {
			ok := i%5 == 4 // 8 errors in 10 attempts, never 5 in a row
			fc.Record(flow.Event{Site: site, Path: "192.0.2.1>198.51.100.7", OK: ok, Err: !ok, Code: 451, Enhanced: "4.7.1", Text: "try later"})
			fc.Record(flow.Event{Site: site, Path: "192.0.2.2>198.51.100.7", OK: true})
		}
		if d := stateOf(fc, "192.0.2.1"); d.State != flow.Normal || d.Attempts != 10 {
			t.Fatalf("one node's half tripped it or lost counts: %+v", d)
		}
	}
	waitFor(t, 10*time.Second, "both nodes in backoff for source 192.0.2.1", func() bool {
		return stateOf(ctrls[0], "192.0.2.1").State == flow.Backoff && stateOf(ctrls[1], "192.0.2.1").State == flow.Backoff
	})
	for i, fc := range ctrls {
		d := stateOf(fc, "192.0.2.1")
		if d.Attempts != 20 || d.Errors != 16 || !strings.Contains(d.Detail, "shared by the cluster") {
			t.Errorf("node %d: %d errors in %d attempts, detail %s", i, d.Errors, d.Attempts, d.Detail)
		}
		if o := stateOf(fc, "192.0.2.2"); o.State != flow.Normal || o.Attempts != 20 {
			t.Errorf("node %d: the other source %+v", i, o)
		}
		if s := fc.Check(site, time.Now()); s.State != flow.Normal || s.Attempts != 40 {
			t.Errorf("node %d: site %s with %d attempts", i, s.State, s.Attempts)
		}
	}
	// Redis away: local windows, flagged.
	srv.Stop()
	waitFor(t, 10*time.Second, "the degraded flag", func() bool {
		d := stateOf(ctrls[0], "192.0.2.1")
		return d.Attempts == 10 && strings.Contains(d.Detail, "this node's alone")
	})
}
