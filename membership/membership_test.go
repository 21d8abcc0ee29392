package membership_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/membership"
)

// The first beat creates the epoch, the others find it; a beat renews the
// node's leases and says which were missing; every beat and Read show the
// same members with the same liveness; Leave removes the node and its
// leases at once.
func TestBeatReadLeave(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	reg := func(node string) *membership.Registry {
		r, err := membership.New(c, membership.Options{Node: node, TTL: 5 * time.Second,
			Info: membership.Info{Sources: []string{"out " + node}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := reg("a"), reg("b")
	lease := membership.Lease{Set: "penstock:lease:k", Member: "a#1"}
	ba, err := a.Beat(ctx, "", "shared", []membership.Lease{lease})
	if err != nil {
		t.Fatal(err)
	}
	if ba.State != membership.EpochCreated || ba.Epoch == "" || len(ba.Found) != 1 || ba.Found[0] {
		t.Fatalf("first beat %+v: want the epoch created and the lease added", ba)
	}
	bb, err := b.Beat(ctx, "", "degraded", nil)
	if err != nil {
		t.Fatal(err)
	}
	if bb.State != membership.EpochOther || bb.Epoch != ba.Epoch {
		t.Fatalf("b's first beat: state %v epoch %q, want another epoch, %q", bb.State, bb.Epoch, ba.Epoch)
	}
	if got := membership.Live(bb.Members); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("live after b's beat %v", got)
	}
	ba, err = a.Beat(ctx, ba.Epoch, "shared", []membership.Lease{lease})
	if err != nil || ba.State != membership.EpochSame || !ba.Found[0] {
		t.Fatalf("a's second beat %+v %v: want the same epoch and the lease found", ba, err)
	}
	ms, err := membership.Read(ctx, c, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[1].Node != "b" || ms[1].Mode != "degraded" || ms[0].Sources[0] != "out a" || ms[0].TTL != 5*time.Second {
		t.Fatalf("read %+v", ms)
	}
	if !slices.Equal(membership.Live(ms), membership.Live(ba.Members)) {
		t.Errorf("Read says %v live, a beat %v", membership.Live(ms), membership.Live(ba.Members))
	}
	if err := a.Leave(ctx, []membership.Lease{lease}); err != nil {
		t.Fatal(err)
	}
	ms, _ = membership.Read(ctx, c, "")
	if len(ms) != 1 || ms[0].Node != "b" {
		t.Errorf("after a left: %+v", ms)
	}
	if n, _ := c.ZCard(ctx, lease.Set).Result(); n != 0 {
		t.Errorf("a's lease still in Redis after Leave")
	}
}
