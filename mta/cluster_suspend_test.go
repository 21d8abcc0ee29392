package mta_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// sendTenantTo injects one message per recipient into node n, each with
// the X-Penstock-Tenant header of tenant.
func (n *clusterNode) sendTenantTo(tenant string, rcpts []string) {
	n.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(rcpts))
	for _, to := range rcpts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := "X-Penstock-Tenant: " + tenant + "\r\n" + message("sender@penstock.test", to, to, 512)
			if err := sendSMTP(n.smtp, "sender@penstock.test", []string{to}, body); err != nil {
				errs <- fmt.Errorf("node %s, %s: %w", n.name, to, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		n.t.Fatal(err)
	}
}

// post calls the node's API and decodes its JSON answer.
func (n *clusterNode) post(path string) (int, map[string]any) {
	n.t.Helper()
	resp, err := http.Post("http://"+n.http+path, "application/json", nil)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// A tenant suspended on node n1 is suspended on n2 too: n2's mail of that
// tenant waits with the tenant's status while another tenant's goes; the
// resume on n2 releases the held mail of both nodes.
func TestClusterTenantSuspend(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "susp"}, []string{"susp.test"}, "mx.susp.cluster.test")
	if err != nil {
		t.Fatal(err)
	}
	srv := redistest.Start(t)
	e := clusterEnv{world: w, redisURL: srv.URL(), scenario: "susp"}
	dir := t.TempDir()
	n1 := startNode(t, e, "n1", "127.0.0.11", filepath.Join(dir, "n1"))
	n2 := startNode(t, e, "n2", "127.0.0.12", filepath.Join(dir, "n2"))
	for _, n := range []*clusterNode{n1, n2} {
		n.waitMode("shared", 3*clusterLeaseTTL+5*time.Second)
	}

	if code, res := n1.post("/api/v1/tenants/hold/suspend"); code != 200 || res["suspended"] != true {
		t.Fatalf("suspend on n1: HTTP %d %v", code, res)
	}
	n2.waitSusp("tenant/hold", 10*time.Second)
	held2 := rcpts("n2-hold-", "susp.test", 3)
	other := rcpts("n2-other-", "susp.test", 3)
	n2.sendTenantTo("hold", held2)
	n2.sendTenantTo("other", other)
	held1 := rcpts("n1-hold-", "susp.test", 3)
	n1.sendTenantTo("hold", held1)
	waitDelivered(t, p, 3, 30*time.Second)
	for _, n := range []*clusterNode{n1, n2} {
		waitFor(t, 15*time.Second, "node "+n.name+"'s held mail with the tenant's status", func() bool {
			ex := n.explain("susp.test")
			return ex.Site != nil && ex.Site.ByStatus[queue.StatusTenantSuspended] == 3
		})
	}
	st := p.Stats()
	if m := missing(st, other); len(m) > 0 {
		t.Fatalf("the other tenant's mail did not arrive: %v", m)
	}
	if d := p.Delivered(); d != 3 {
		t.Fatalf("%d delivered while tenant hold is suspended, want the other tenant's 3", d)
	}

	code, res := n2.post("/api/v1/tenants/hold/resume")
	if code != 200 || res["recipients"] != float64(3) {
		t.Fatalf("resume on n2: HTTP %d %v, want n2's 3 recipients made due", code, res)
	}
	all := append(append(held1, held2...), other...)
	waitDelivered(t, p, int64(len(all)), 30*time.Second)
	waitFor(t, 10*time.Second, "every recipient", func() bool { return len(missing(p.Stats(), all)) == 0 })
	n1.waitSusp("", 10*time.Second)
}
