package cluster_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/redisbus"
	"github.com/penstock-mta/penstock/spool"
)

// suspNode is a node's queue on its own spool and, while it is up, its
// bridge to the cluster's Redis.
type suspNode struct {
	t      *testing.T
	name   string
	q      *queue.Queue
	sp     *spool.Spool
	url    string
	bridge *cluster.Bridge
	bus    *redisbus.Bus
}

func newSuspNode(t *testing.T, name, url string) *suspNode {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(dir+"/spool", spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := events.Open(dir+"/log", events.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	q := queue.New(&queue.Config{Rules: rules}, queue.Deps{Spool: sp, Log: lg, Logger: logger()})
	n := &suspNode{t: t, name: name, q: q, sp: sp, url: url}
	t.Cleanup(func() {
		n.down()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		q.Close(ctx)
		lg.Close()
		sp.Close()
	})
	n.up()
	return n
}

// up joins the cluster: a new client, bus and bridge.
func (n *suspNode) up() {
	n.t.Helper()
	c, err := cluster.Dial(n.url)
	if err != nil {
		n.t.Fatal(err)
	}
	n.bus = redisbus.New(c, logger())
	n.bridge, err = cluster.StartBridge(c, n.bus, cluster.BridgeOptions{Node: n.name, Logger: logger()})
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.bridge.ShareSuspensions(n.q); err != nil {
		n.t.Fatal(err)
	}
}

// down leaves the cluster (the node is away; its queue stays).
func (n *suspNode) down() {
	if n.bridge != nil {
		n.bridge.Close()
		n.bus.Close()
		n.bridge = nil
	}
}

func (n *suspNode) set(kind, name string, on bool) {
	n.t.Helper()
	if _, err := n.q.SetSuspended(kind, name, "ops-"+n.name, on); err != nil {
		n.t.Fatal(err)
	}
}

// waitSet waits until the node's suspensions are want.
func (n *suspNode) waitSet(want map[string]string) {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for got := n.q.Suspensions(); !maps.Equal(got, want); got = n.q.Suspensions() {
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s's suspensions after 15s: %v, want %v", n.name, got, want)
		}
		<-tick.C
	}
}

// A suspension or resume on one node reaches the others; made while Redis
// is down it applies locally and is shared once Redis is back, even when
// Redis came back empty; a node away while a suspension is resumed
// elsewhere sees the resume when it rejoins.
func TestClusterSuspendShared(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	a := newSuspNode(t, "a", srv.URL())
	b := newSuspNode(t, "b", srv.URL())
	// b learns it from the channel, or from the hash it reads when its
	// subscription is up, whichever comes first. (Repeating the change
	// until b had it raced: a repeat still on its way to Redis when b
	// resumed came after the resume, and won, as the later change should.)
	a.set(queue.SuspendTenant, "t1", true)
	waitFor(t, 15*time.Second, "b to learn a's suspension of tenant t1", func() bool {
		return b.q.Suspensions()["tenant/t1"] == "ops-a"
	})
	b.set(queue.SuspendTenant, "t1", false)
	a.waitSet(map[string]string{})

	// Redis away: each node's change applies there only.
	srv.Stop()
	a.set(queue.SuspendDelivery, "c1", true)
	b.set(queue.SuspendTenant, "t2", true)
	if got := b.q.Suspensions(); len(got) != 1 {
		t.Fatalf("b's suspensions with Redis down: %v, want its own t2 only", got)
	}
	// Back, empty: both changes reach both nodes.
	srv.Restart()
	both := map[string]string{"delivery/c1": "ops-a", "tenant/t2": "ops-b"}
	a.waitSet(both)
	b.waitSet(both)

	// Redis restarted empty with nothing pending: that is no resume; the
	// nodes give their suspensions back to it.
	srv.Stop()
	srv.Restart()
	watch, err := cluster.Dial(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, 15*time.Second, "the suspensions back in Redis", func() bool {
		h, err := watch.HGetAll(context.Background(), "penstock:suspended").Result()
		if err != nil {
			return false
		}
		delete(h, "token")
		delete(h, "version")
		return maps.Equal(h, both)
	})
	a.waitSet(both)
	b.waitSet(both)

	// b away while a resumes t2: b learns it when it rejoins, and its
	// spool forgets t2 too.
	b.down()
	a.set(queue.SuspendTenant, "t2", false)
	b.up()
	b.waitSet(map[string]string{"delivery/c1": "ops-a"})
	var kept []string
	b.sp.KV("suspended").ForEach("", func(k string, _ []byte) error {
		kept = append(kept, k)
		return nil
	})
	if len(kept) != 1 || kept[0] != "delivery/c1" {
		t.Errorf("b's spool keeps %v, want delivery/c1", kept)
	}
}
