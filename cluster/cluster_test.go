package cluster_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/redisbus"
)

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// join starts the named nodes as cluster.Join does for a node process,
// each with its own client, and waits until all share the quotas.
func join(t *testing.T, srv *redistest.Server, ttl time.Duration, names ...string) []*cluster.Joined {
	t.Helper()
	var out []*cluster.Joined
	for _, name := range names {
		j, err := cluster.Join(config.Cluster{Redis: srv.URL(), Node: name, LeaseTTL: config.Duration(ttl)},
			[]string{"out1 192.0.2.1"}, time.Now(), func(flow.Change) {}, nil, logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		out = append(out, j)
	}
	for _, j := range out {
		waitFor(t, 3*ttl+10*time.Second, "node "+j.Node()+" in shared mode", func() bool { return !j.Degraded() })
	}
	return out
}

// waitFor re-checks cond every 20 ms until d: for state that lives in
// Redis and announces nothing.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

// Three nodes join; Members lists them live with their sources and quota
// mode; a node that stops without a word is gone after the TTL, one that
// closes is gone at once. Status counts the leases per node and rule.
func TestMembershipAndStatus(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	nodes := join(t, srv, 500*time.Millisecond, "n1", "n2", "n3")
	watch, _ := cluster.Dial(srv.URL())
	t.Cleanup(func() { watch.Close() })
	// The mode a beat shows is the one before it: wait for a beat in
	// shared mode of every node.
	waitFor(t, 10*time.Second, "every node's beat in shared mode", func() bool {
		ms, _ := cluster.Members(ctx, watch, "")
		for _, m := range ms {
			if m.Mode != "shared" {
				return false
			}
		}
		return len(ms) == 3
	})
	ms, err := cluster.Members(ctx, watch, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || !ms[0].Live || ms[0].Node != "n1" || ms[2].Sources[0] != "out1 192.0.2.1" || ms[1].Mode != "shared" {
		t.Fatalf("members %+v", ms)
	}

	// Leases as quota.Redis writes them.
	q1 := nodes[0]
	for _, key := range []string{"conn|rule|gmail", "conn|rule|gmail", "conn|src|yahoo|site|10.0.0.1"} {
		if _, _, ok, err := q1.TryConn(ctx, key, 10); !ok || err != nil {
			t.Fatalf("TryConn %s: %v", key, err)
		}
	}
	st, err := cluster.ReadStatus(ctx, watch, "")
	if err != nil {
		t.Fatal(err)
	}
	per := st.PerRule()
	if per["gmail"]["n1"] != 2 || per["yahoo"]["n1"] != 1 {
		t.Fatalf("per rule %v", per)
	}
	var out bytes.Buffer
	if err := st.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"n1", "n2", "n3", "live", "gmail", "yahoo", "3 live node(s)", "out1 192.0.2.1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, out.String())
		}
	}
	t.Logf("\n%s", out.String())

	// The CLI reads [cluster] from a configuration file.
	cfg := filepath.Join(t.TempDir(), "penstock.toml")
	os.WriteFile(cfg, []byte("[cluster]\nredis = \""+srv.URL()+"\"\nnode = \"n1\"\n"), 0o600)
	var so, se bytes.Buffer
	if rc := cluster.CLI([]string{"status", "-config", cfg}, &so, &se); rc != 0 || !strings.Contains(so.String(), "gmail") {
		t.Fatalf("CLI rc %d: %s %s", rc, so.String(), se.String())
	}

	// n2 closes: gone at once.
	nodes[1].Close()
	ms, _ = cluster.Members(ctx, watch, "")
	for _, m := range ms {
		if m.Node == "n2" {
			t.Fatalf("n2 still listed after Close: %+v", m)
		}
	}
}

// A crashed node (heartbeats stop) is listed as gone after the TTL.
func TestMemberGoneAfterTTL(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	c, _ := cluster.Dial(srv.URL())
	t.Cleanup(func() { c.Close() })
	// A heartbeat written by hand stands for a node that died right after.
	tm, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// "<server ms> <ttl ms> <info>", as membership.Registry.Beat writes it.
	if err := c.HSet(ctx, "penstock:nodes", "ghost", strconv.FormatInt(tm.UnixMilli(), 10)+` 1000 {"pid":1}`).Err(); err != nil {
		t.Fatal(err)
	}
	ms, err := cluster.Members(ctx, c, "")
	if err != nil || len(ms) != 1 || !ms[0].Live {
		t.Fatalf("members %+v %v", ms, err)
	}
	waitFor(t, 5*time.Second, "the ghost to be gone", func() bool {
		ms, _ := cluster.Members(ctx, c, "")
		return len(ms) == 1 && !ms[0].Live
	})
}

// A flow change on one node reaches the others (not itself) through
// pub/sub at once; a node that subscribes later adopts the saved state.
func TestFlowBridge(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	type got struct {
		node string
		ch   flow.Change
	}
	adopted := make(chan got, 16)
	start := func(name string) *cluster.Bridge {
		c, _ := cluster.Dial(srv.URL())
		t.Cleanup(func() { c.Close() })
		bus := redisbus.New(c, logger())
		t.Cleanup(func() { bus.Close() })
		n, err := cluster.StartBridge(c, bus, cluster.BridgeOptions{Node: name, Logger: logger(),
			Adopt: func(ch flow.Change) { adopted <- got{name, ch} }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, _ := start("a"), start("b")
	// Subscriptions are asynchronous: publish until b has one (bounded).
	ch := flow.Change{Time: time.Now(), Site: "mx.yahoo.test", From: flow.Normal, To: flow.Backoff,
		Until: time.Now().Add(time.Minute), Reason: "reply matched pattern [TSS04]"}
	deadline := time.After(10 * time.Second)
	sent := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	a.PublishFlow(ch)
	var g got
wait:
	for {
		select {
		case g = <-adopted:
			break wait
		case <-tick.C:
			a.PublishFlow(ch)
		case <-deadline:
			t.Fatal("b never adopted a's change")
		}
	}
	if g.node != "b" || g.ch.Site != ch.Site || g.ch.To != flow.Backoff || !g.ch.Until.Equal(ch.Until) {
		t.Fatalf("adopted %+v", g)
	}
	t.Logf("b adopted a's backoff %s after the publication", time.Since(sent).Round(time.Microsecond))

	// A late node learns the state from the saved states.
	start("c")
	select {
	case g = <-adopted:
		for g.node != "c" {
			select {
			case g = <-adopted:
			case <-time.After(5 * time.Second):
				t.Fatal("c did not adopt the saved state")
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("c did not adopt the saved state")
	}
	if g.ch.Site != ch.Site || g.ch.To != flow.Backoff {
		t.Fatalf("c adopted %+v", g.ch)
	}
}
