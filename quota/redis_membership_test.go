package quota

import (
	"slices"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/membership"
)

// A node that stops without leaving (its goroutines cancelled, nothing
// written: a crash) drops out of the one membership record within its
// lease TTL: the record that `cluster status` reads shows it gone, and the
// live nodes' quota stores, which count shares over the same record, agree.
func TestRedisCrashedNodeLeavesMembership(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const ttl = time.Second
	nodes := newNodes(t, srv, 3, ttl)
	a, b, c := nodes[0], nodes[1], nodes[2]
	watch := redisClient(t, srv)
	record := func() []membership.Member {
		ms, err := membership.Read(ctx, watch, "")
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	if got := membership.Live(record()); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("live in the record before the crash: %v", got)
	}
	c.halt()
	killed := time.Now()
	want := []string{"a", "b"}
	waitCond(t, 4*ttl, "c gone from the record and from a's and b's views", func() bool {
		return slices.Equal(membership.Live(record()), want) && slices.Equal(a.State().Nodes, want) && slices.Equal(b.State().Nodes, want)
	}, a)
	took := time.Since(killed)
	// The record: at most ttl after c's last beat; the stores see it at
	// their next renewal (every ttl/3). Scheduling under -race adds a
	// little.
	if took > ttl+ttl/3+ttl/2 {
		t.Errorf("c left the membership %s after its crash, lease ttl %s", took, ttl)
	}
	// Gone by expiry, not by a leave: its entry is still there, not live.
	ms := record()
	if i := slices.IndexFunc(ms, func(m membership.Member) bool { return m.Node == "c" }); i < 0 || ms[i].Live {
		t.Errorf("c after its crash: %+v, want listed and not live", ms)
	}
	t.Logf("a crashed node left the membership (record and quota views) %s after the crash (lease ttl %s)", took.Round(time.Millisecond), ttl)
}
