package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/membership"
)

// clients returns the connections named name in CLIENT LIST, each as its
// fields (id, sub, psub, ...).
func clients(t *testing.T, c *redis.Client, name string) []map[string]string {
	t.Helper()
	list, err := c.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for line := range strings.Lines(list) {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == name {
			out = append(out, f)
		}
	}
	return out
}

// subscribers keeps the connections that hold a subscription.
func subscribers(conns []map[string]string) []map[string]string {
	var out []map[string]string
	for _, f := range conns {
		if f["sub"] != "0" || f["psub"] != "0" {
			out = append(out, f)
		}
	}
	return out
}

// channels is how many channels and patterns a connection subscribes.
func channels(f map[string]string) int {
	s, _ := strconv.Atoi(f["sub"])
	p, _ := strconv.Atoi(f["psub"])
	return s + p
}

// One node process holds one subscription connection, on which both the
// quota store (releases, rejoin notices) and the flow bridge listen, and
// one entry in one membership record.
func TestJoinOneSubscriptionOneMembership(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	join(t, srv, time.Second, "n1", "n2")
	watch, _ := cluster.Dial(srv.URL())
	t.Cleanup(func() { watch.Close() })

	conns := clients(t, watch, cluster.ClientName("n1"))
	subs := subscribers(conns)
	if len(subs) != 1 {
		t.Fatalf("node n1 holds %d subscription connections, want 1: %v", len(subs), conns)
	}
	// quota's release pattern and rejoin channel, and the flow channel.
	if n := channels(subs[0]); n != 3 {
		t.Errorf("n1's subscription connection subscribes %d channels and patterns, want 3: %v", n, subs[0])
	}

	// Every hash that names n1 as a field: the membership record alone.
	var named []string
	iter := watch.Scan(ctx, 0, cluster.DefaultPrefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if typ, _ := watch.Type(ctx, k).Result(); typ != "hash" {
			continue
		}
		if ok, _ := watch.HExists(ctx, k, "n1").Result(); ok {
			named = append(named, k)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if len(named) != 1 || named[0] != membership.Key("") {
		t.Errorf("n1 is a member in %v, want only %s", named, membership.Key(""))
	}
	t.Logf("n1: %d connection(s) to Redis, 1 subscribing to %d channels and patterns; membership in %v", len(conns), channels(subs[0]), named)
}

// CLIENT KILL of a node's subscription connection: the bus reconnects and
// both kinds of messages arrive again, a flow change (not saved, so only
// pub/sub can carry it) and another node's release (it wakes a waiter).
func TestJoinSubscriptionReconnect(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	adopted := make(chan flow.Change, 64)
	start := func(name string, adopt func(flow.Change)) *cluster.Joined {
		j, err := cluster.Join(config.Cluster{Redis: srv.URL(), Node: name, LeaseTTL: config.Duration(2 * time.Second)},
			nil, time.Now(), adopt, nil, logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		return j
	}
	a := start("a", func(flow.Change) {})
	b := start("b", func(ch flow.Change) {
		select {
		case adopted <- ch:
		default:
		}
	})
	for _, j := range []*cluster.Joined{a, b} {
		waitFor(t, 20*time.Second, j.Node()+" in shared mode", func() bool { return !j.Degraded() })
	}
	watch, _ := cluster.Dial(srv.URL())
	t.Cleanup(func() { watch.Close() })

	// flowReaches publishes recovery changes of fresh sites from a until b
	// adopts one (bounded): only pub/sub carries them.
	n := 0
	flowReaches := func(what string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		prefix := fmt.Sprintf("%s.test-", what)
		for {
			n++
			a.PublishFlow(flow.Change{Time: time.Now(), Site: prefix + strconv.Itoa(n), From: flow.Backoff, To: flow.Normal})
			select {
			case ch := <-adopted:
				if strings.HasPrefix(ch.Site, prefix) {
					return
				}
			case <-tick.C:
			case <-deadline:
				t.Fatalf("%s: b adopted none of a's flow changes", what)
			}
		}
	}
	flowReaches("before")

	name := cluster.ClientName("b")
	subs := subscribers(clients(t, watch, name))
	if len(subs) != 1 {
		t.Fatalf("b holds %d subscription connections, want 1", len(subs))
	}
	killed := subs[0]["id"]
	if err := watch.ClientKillByFilter(ctx, "ID", killed).Err(); err != nil {
		t.Fatal(err)
	}
	// Redis announces nothing: look at its client list until b is
	// subscribed again, on a new connection, to everything.
	waitFor(t, 10*time.Second, "b's subscriptions on a new connection", func() bool {
		subs := subscribers(clients(t, watch, name))
		return len(subs) == 1 && subs[0]["id"] != killed && channels(subs[0]) == 3
	})
	flowReaches("after")

	// A release on a wakes b's waiter. A wake-up from the resubscription
	// itself (it wakes every waiter) is not the proof: start over then.
	const key = "conn|rule|reconnect"
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("b's waiter was woken before every release: no proof the release notice arrived")
		}
		la, _, ok, err := a.TryConn(ctx, key, 1)
		if !ok || err != nil {
			t.Fatalf("a denied: %v", err)
		}
		if _, _, ok, _ := b.TryConn(ctx, key, 1); ok {
			t.Fatal("b granted beyond the limit")
		}
		ch := b.Wait(key)
		select {
		case <-ch:
			la.Release()
			continue
		default:
		}
		la.Release()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("b not woken by a's release after the reconnection")
		}
		break
	}
}
