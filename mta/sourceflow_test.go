package mta_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// sourceOf finds a source's flow state in explain's site view.
func sourceOf(ex queue.Explanation, ip string) (flow.SourceDecision, bool) {
	if ex.Site == nil {
		return flow.SourceDecision{}, false
	}
	for _, d := range ex.Site.Sources {
		if d.Source == ip {
			return d, true
		}
	}
	return flow.SourceDecision{}, false
}

// TestFlowPerSource: a provider throttles mail from 127.0.0.2 only (the
// pool's other source is 127.0.0.3). Source 127.0.0.2 goes into backoff
// and explain names it; the site stays normal and 127.0.0.3 keeps its
// full connection limit; once the provider lets 127.0.0.2 in again it
// recovers on its own. Then both sources are throttled: the site waits
// as a whole, the status detail naming both.
func TestFlowPerSource(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var throttle atomic.Value
	throttle.Store(map[string]bool{"127.0.0.2": true})
	p, err := w.AddProvider(sim.Behavior{Name: "yahoo", MailReply: func(ip string) string {
		if throttle.Load().(map[string]bool)[ip] {
			return "421 4.7.0 [TSS04] Messages from " + ip + " temporarily deferred due to unexpected volume or user complaints"
		}
		return ""
	}}, []string{"yahoo.test"}, "mta5.am0.yahoodns.net")
	if err != nil {
		t.Fatal(err)
	}
	const conns = 3
	h := newHarness(t, w, func(c *config.Config) {
		fastFlow(c)
		c.Sources = []config.Source{{Name: "ip2", IP: "127.0.0.2"}, {Name: "ip3", IP: "127.0.0.3"}}
		c.Pools = []config.Pool{{Name: "main", Sources: []config.PoolSource{{Source: "ip2"}, {Source: "ip3"}}}}
		c.Delivery.DefaultPool = "main"
		c.FlowControl.Patterns = []config.FlowPattern{{Match: `\[TSS04\]`, Action: "backoff", Duration: config.Duration(2 * time.Second)}}
		c.Delivery.Retry = []config.Duration{config.Duration(300 * time.Millisecond)}
		withRules(rule("yahoo", "*.yahoodns.net", "source", conns, 2, 0))(c)
	})
	const n = 300
	h.sendMany(n, 20, func(i int) string { return fmt.Sprintf("u%d@yahoo.test", i) })

	var ex queue.Explanation
	// Backoff at the first [TSS04]; errors that go on may suspend it.
	waitFor(t, 30*time.Second, "source 127.0.0.2 in backoff", func() bool {
		h.api("GET", "/api/v1/explain?domain=yahoo.test", &ex)
		d, ok := sourceOf(ex, "127.0.0.2")
		return ok && (d.State == flow.Backoff || d.State == flow.Suspended)
	})
	d, _ := sourceOf(ex, "127.0.0.2")
	if !strings.Contains(d.Diagnosis, "reputation of source 127.0.0.2 at") || !strings.Contains(ex.Verdict, "Source 127.0.0.2 in "+d.State) {
		t.Errorf("the diagnosis does not name the source: diagnosis %q verdict %q", d.Diagnosis, ex.Verdict)
	}
	if ex.Site.Flow.State != flow.Normal {
		t.Errorf("site state %s: one source's throttle moved the whole site", ex.Site.Flow.State)
	}
	// The metrics count the source in backoff (and not the site).
	resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(body)
	troubled := strings.Contains(m, `penstock_flow_sources{state="backoff"} 1`) || strings.Contains(m, `penstock_flow_sources{state="suspended"} 1`)
	if !troubled || !strings.Contains(m, `penstock_flow_sources{state="normal"} 1`) || !strings.Contains(m, `penstock_flow_sites{state="backoff"} 0`) {
		t.Errorf("metrics do not show the source's backoff:\n%s", grepLines(m, "penstock_flow_"))
	}
	waitDelivered(t, p, n/2, 60*time.Second)
	st := p.Stats()
	if got := st.MaxOpenBySource["127.0.0.3"]; got != conns {
		t.Errorf("the healthy source had at most %d connections open, its limit is %d: it did not keep full speed", got, conns)
	}
	if got := len(st.ArrivalsBySource["127.0.0.2"]); got != 0 {
		t.Fatalf("%d messages arrived from the throttled source", got)
	}
	t.Logf("%d messages from 127.0.0.3, %d attempts refused from 127.0.0.2", len(st.ArrivalsBySource["127.0.0.3"]), st.RcptRejected[421])

	// The provider takes 127.0.0.2 again: it recovers on its own.
	throttle.Store(map[string]bool{})
	h.sendMany(200, 20, func(i int) string { return fmt.Sprintf("v%d@yahoo.test", i) })
	waitDelivered(t, p, n+200, 60*time.Second)
	// Recovery needs evidence (deliveries from the source after its last
	// error), so mail keeps coming: a few messages each half second.
	lastSend, more := time.Now(), 0
	waitFor(t, 40*time.Second, "source 127.0.0.2 back to normal", func() bool {
		for _, r := range flowRecords(h.records(), "yahoodns", flow.Normal) {
			if r.SourceIP == "127.0.0.2" {
				return true
			}
		}
		if time.Since(lastSend) > 500*time.Millisecond {
			h.sendMany(6, 2, func(i int) string { return fmt.Sprintf("w%d-%d@yahoo.test", more, i) })
			lastSend, more = time.Now(), more+1
		}
		return false
	})
	if len(p.Stats().ArrivalsBySource["127.0.0.2"]) == 0 {
		t.Errorf("the recovered source sent nothing")
	}
	for _, r := range flowRecords(h.records(), "yahoodns", "") {
		if r.SourceIP == "" && r.State != flow.Normal {
			t.Errorf("the site itself changed state: %+v", r)
		}
	}

	// Both sources throttled: the site waits as a whole, naming both.
	throttle.Store(map[string]bool{"127.0.0.2": true, "127.0.0.3": true})
	h.sendMany(100, 20, func(i int) string { return fmt.Sprintf("x%d@yahoo.test", i) })
	waitFor(t, 30*time.Second, "the site held for every source", func() bool {
		h.api("GET", "/api/v1/explain?domain=yahoo.test", &ex)
		return ex.Site != nil && ex.Site.Wait != nil && ex.Site.Wait.Status == queue.StatusFlowControl &&
			strings.Contains(ex.Site.Wait.Detail, "every source of the pool")
	})
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		if !strings.Contains(ex.Site.Wait.Detail, "reputation of source "+ip) {
			t.Errorf("wait detail does not name %s: %s", ip, ex.Site.Wait.Detail)
		}
	}
}

// grepLines keeps the lines that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
