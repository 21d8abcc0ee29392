package mta_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// arrivals counts, at the receiver, the messages of each sender in order
// and whether any body still carried the tenant header.
type arrivals struct {
	mu      sync.Mutex
	order   []string // envelope sender of each message, in arrival order
	leaked  int      // bodies with an X-Penstock-Tenant field
	scanned int
}

func (a *arrivals) hook(from string, _ []string, body []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.order = append(a.order, from)
	a.scanned++
	if bytes.Contains(bytes.ToLower(body), []byte("x-penstock-tenant")) {
		a.leaked++
	}
}

func (a *arrivals) snapshot() ([]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.order...), a.leaked
}

// sendTenant injects n messages over SMTP for a tenant named by the
// X-Penstock-Tenant header, from sender, to rcpt(i).
func sendTenant(t *testing.T, h *harness, tenant, sender string, n, c int, rcpt func(i int) string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				to := rcpt(i)
				body := "X-Penstock-Tenant: " + tenant + "\r\n" + message(sender, to, fmt.Sprintf("%s-%d", tenant, i), 512)
				if err := h.send(sender, []string{to}, body); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestTenantFairShare: tenant "big" queues 10 times the mail of tenant
// "small" at one slow site (one connection, each message held 60 ms at the
// dot). Sent first come, first served, small's 10 messages would wait for
// the ~100 of big queued before them; with the fair share they interleave:
// while small's 10 go out, big gets about as many, not all of its backlog.
// The receiver tells the tenants apart by envelope sender, and never sees
// the X-Penstock-Tenant header.
func TestTenantFairShare(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var got arrivals
	p, err := w.AddProvider(sim.Behavior{Name: "fair", StallAt: sim.AtDot, StallFor: 60 * time.Millisecond, BodyHook: got.hook},
		[]string{"fair.test"}, "mx.fair.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, withRules(rule("fair", "*.fair.test", "source", 1, 1000, 0)))
	sendTenant(t, h, "big", "big@sender.test", 100, 10, func(i int) string { return fmt.Sprintf("b%d@fair.test", i) })
	before, _ := got.snapshot()
	if len(before) > 60 {
		t.Fatalf("%d of big's messages already delivered: no backlog to share against", len(before))
	}
	sendTenant(t, h, "small", "small@sender.test", 10, 5, func(i int) string { return fmt.Sprintf("s%d@fair.test", i) })
	waitFor(t, 30*time.Second, "small's 10 messages", func() bool {
		order, _ := got.snapshot()
		n := 0
		for _, f := range order {
			if f == "small@sender.test" {
				n++
			}
		}
		return n == 10
	})
	order, _ := got.snapshot()
	bigDuring := 0
	for _, f := range order[len(before):] {
		if f == "big@sender.test" {
			bigDuring++
		}
	}
	// An equal share: about 10 of big's while small's 10 went; the slack
	// covers big's messages sent while small's were being injected.
	if bigDuring > 25 {
		t.Fatalf("big got %d messages while small's 10 went (big's backlog was %d): not a fair share", bigDuring, 100-len(before))
	}
	t.Logf("big's backlog %d; while small's 10 went out big got %d", 100-len(before), bigDuring)
	waitDelivered(t, p, 110, 60*time.Second)
	if _, leaked := got.snapshot(); leaked > 0 {
		t.Fatalf("%d delivered messages still carried the X-Penstock-Tenant header", leaked)
	}
}

// TestTenantQuota: a [[tenant]] with messages_per_hour 120 (a burst of 1)
// sends one message; its others wait with the tenant's status while
// another tenant's mail at the same site goes on.
func TestTenantQuota(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var got arrivals
	p, err := w.AddProvider(sim.Behavior{Name: "tq", BodyHook: got.hook}, []string{"tq.test"}, "mx.tq.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, both(withRules(rule("tq", "*.tq.test", "source", 2, 100, 0)), func(c *config.Config) {
		c.Tenants = []config.Tenant{{Name: "slow", MessagesPerHour: 120}}
		c.ApplyDefaults()
	}))
	start := time.Now()
	sendTenant(t, h, "slow", "slow@sender.test", 4, 2, func(i int) string { return fmt.Sprintf("s%d@tq.test", i) })
	sendTenant(t, h, "other", "other@sender.test", 6, 2, func(i int) string { return fmt.Sprintf("o%d@tq.test", i) })
	waitDelivered(t, p, 7, 15*time.Second)
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "the tenant's status", func() bool {
		h.api("GET", "/api/v1/explain?domain=tq.test", &ex)
		return ex.Site != nil && ex.Site.ByStatus[queue.StatusTenantQuota] == 3
	})
	if time.Since(start) < 29*time.Second {
		if d := p.Delivered(); d != 7 {
			t.Fatalf("%d delivered, want the other tenant's 6 and 1 of slow's", d)
		}
	}
	if hs := ex.Site.Holds; len(hs) != 1 || hs[0].Status != queue.StatusTenantQuota || hs[0].Limit != 120 ||
		hs[0].Key != "rate|tenant|slow" || hs[0].Until.Before(start) || !strings.Contains(hs[0].Detail, `tenant "slow": 120 messages per hour`) {
		t.Errorf("explain's tenant holds: %+v", hs)
	}
	var sawDetail bool
	for _, r := range ex.Recipients {
		if r.Status == queue.StatusTenantQuota {
			sawDetail = true
		}
	}
	if !sawDetail {
		t.Errorf("explain's recipients lack the tenant's status: %+v", ex.Recipients)
	}
	order, leaked := got.snapshot()
	if leaked > 0 || !strings.Contains(strings.Join(order, ","), "other@sender.test") {
		t.Errorf("arrivals %v, %d with the header", order, leaked)
	}
}

// TestTenantSuspendSurvivesRestart: a suspended tenant's mail waits with
// the tenant's status while another tenant's goes, still waits after a
// restart, and is delivered once the tenant is resumed.
func TestTenantSuspendSurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "ts"}, []string{"ts.test"}, "mx.ts.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	var res map[string]any
	if code := h.api("POST", "/api/v1/tenants/hold/suspend", &res); code != 200 || res["suspended"] != true {
		t.Fatalf("suspend: HTTP %d %v", code, res)
	}
	sendTenant(t, h, "hold", "hold@sender.test", 3, 3, func(i int) string { return fmt.Sprintf("h%d@ts.test", i) })
	sendTenant(t, h, "other", "other@sender.test", 3, 3, func(i int) string { return fmt.Sprintf("o%d@ts.test", i) })
	waitDelivered(t, p, 3, 15*time.Second)
	held := func() {
		t.Helper()
		var ex queue.Explanation
		waitFor(t, 10*time.Second, "the tenant's suspension status", func() bool {
			h.api("GET", "/api/v1/explain?domain=ts.test", &ex)
			return ex.Site != nil && ex.Site.ByStatus[queue.StatusTenantSuspended] == 3
		})
	}
	held()
	h.stop()
	h.start()
	held()
	if d := p.Delivered(); d != 3 {
		t.Fatalf("%d delivered while the tenant is suspended, want the other tenant's 3", d)
	}
	if code := h.api("POST", "/api/v1/tenants/hold/resume", &res); code != 200 || res["recipients"] != float64(3) {
		t.Fatalf("resume: HTTP %d %v", code, res)
	}
	waitDelivered(t, p, 6, 15*time.Second)
}

// TestCampaignQuota: a campaign created with messages_per_hour 120 (a
// burst of 1) and a tenant sends one message; its other recipients wait
// with the campaign's status while a message of no campaign to the same
// site goes; a negative rate is refused naming the field; the tenant is
// on the campaign's messages (never in their bodies).
func TestCampaignQuota(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var got arrivals
	p, err := w.AddProvider(sim.Behavior{Name: "cq", BodyHook: got.hook}, []string{"cq.test"}, "mx.cq.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	tpl := map[string]any{"from": "news@penstock.test", "subject": "s", "text": "t"}
	if code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{
		"from": "b@penstock.test", "template": tpl, "messages_per_hour": -1})); code != 400 || !strings.Contains(string(b), "messages_per_hour") {
		t.Errorf("negative rate: HTTP %d %s", code, b)
	}
	var recips []map[string]any
	for i := range 4 {
		recips = append(recips, map[string]any{"address": fmt.Sprintf("c%d@cq.test", i)})
	}
	start := time.Now()
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{
		"from": "camp@penstock.test", "template": tpl, "messages_per_hour": 120, "tenant": "acme", "recipients": recips}))
	if code != 201 {
		t.Fatalf("create: HTTP %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	if v.MessagesPerHour != 120 || v.Tenant != "acme" {
		t.Errorf("delivery view %+v", v)
	}
	sendTenant(t, h, "other", "other@sender.test", 2, 2, func(i int) string { return fmt.Sprintf("o%d@cq.test", i) })
	waitDelivered(t, p, 3, 15*time.Second)
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "the campaign's status", func() bool {
		h.api("GET", "/api/v1/explain?domain=cq.test", &ex)
		return ex.Site != nil && ex.Site.ByStatus[queue.StatusCampaignQuota] == 3
	})
	if hs := ex.Site.Holds; len(hs) != 1 || hs[0].Key != "rate|campaign|"+v.ID || hs[0].Limit != 120 {
		t.Errorf("explain's holds: %+v", hs)
	}
	if time.Since(start) < 29*time.Second {
		if d := p.Delivered(); d != 3 {
			t.Fatalf("%d delivered, want the other 2 and 1 of the campaign's", d)
		}
	}
}
