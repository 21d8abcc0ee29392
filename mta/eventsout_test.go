package mta_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// A webhook receiver that blocks every request does not slow delivery: all
// mail is delivered and logged while the receiver holds its first request;
// once it answers, every event reaches it.
func TestWebhookSlowReceiverDoesNotSlowDelivery(t *testing.T) {
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "alpha"}, []string{"alpha.test"}, "mx.alpha.test")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var blocked atomic.Int64
	var mu sync.Mutex
	ids := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		blocked.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		var evs []map[string]any
		if err := json.Unmarshal(body, &evs); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		for _, ev := range evs {
			ids[ev["event_id"].(string)] = fmt.Sprint(ev["type"], ev["recipient"])
		}
		mu.Unlock()
	}))
	defer srv.Close()
	h := newHarness(t, w, func(c *config.Config) {
		c.Webhooks = []config.Webhook{{Name: "slow", URL: srv.URL, Events: []string{"Delivery"},
			BatchSize: 10, BatchTime: config.Duration(10 * time.Millisecond), Timeout: config.Duration(time.Minute)}}
		c.ApplyDefaults()
	})
	const n = 60
	h.sendMany(n, 6, func(i int) string { return fmt.Sprintf("user%d@alpha.test", i) })
	waitDelivered(t, p, n, 30*time.Second)
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == n })
	// The output follows the log's files on its own clock: wait for its
	// first request (it then blocks there).
	waitFor(t, 10*time.Second, "the webhook's first request", func() bool { return blocked.Load() > 0 })
	st := h.m.EventsOutStatus()
	if len(st) != 1 || st[0].Sent != 0 || st[0].Lag == 0 {
		t.Fatalf("while the receiver blocks: status %+v, want nothing sent and a lag", st)
	}
	// Visible while blocked: the API status route and the metrics.
	var status struct {
		Outputs []struct {
			Name string `json:"name"`
			Lag  int64  `json:"lag"`
		} `json:"event_outputs"`
	}
	if code := h.api("GET", "/api/v1/status", &status); code != 200 || len(status.Outputs) != 1 ||
		status.Outputs[0].Name != "slow" || status.Outputs[0].Lag == 0 {
		t.Errorf("API status %d: %+v", code, status)
	}
	resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `penstock_eventsout_lag{output="slow"}`) ||
		!strings.Contains(string(body), `penstock_eventsout_failures_total{output="slow"} 0`) {
		t.Errorf("metrics lack the output's lag and failures")
	}
	close(release)
	waitFor(t, 20*time.Second, "every Delivery at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) == n
	})
	waitFor(t, 10*time.Second, "lag 0", func() bool { return h.m.EventsOutStatus()[0].Lag == 0 })
}
