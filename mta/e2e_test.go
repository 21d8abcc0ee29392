package mta_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// 1,000 messages to three providers are all delivered and logged.
func TestEndToEndThreeProviders(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var ps []*sim.Provider
	for i, name := range []string{"alpha", "beta", "gamma"} {
		p, err := w.AddProvider(sim.Behavior{Name: name}, []string{name + ".test"}, fmt.Sprintf("mx%d.%s.test", i, name))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	h := newHarness(t, w, nil)
	const n = 1000
	names := []string{"alpha", "beta", "gamma"}
	h.sendMany(n, 20, func(i int) string { return fmt.Sprintf("user%d@%s.test", i, names[i%3]) })
	for i, p := range ps {
		want := int64(n / 3)
		if i == 0 {
			want++
		}
		waitDelivered(t, p, want, 30*time.Second)
		st := p.Stats()
		for rcpt, times := range st.RcptSeen {
			if times != 1 {
				t.Errorf("%s got %d copies", rcpt, times)
			}
		}
	}
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == n })
	recs := h.records()
	if got := countType(recs, events.Reception); got != n {
		t.Errorf("%d Reception records, want %d", got, n)
	}
	for _, r := range recs {
		if r.Type == events.Delivery && (r.MXHost == "" || r.MXIP == "" || r.Code != 250 || r.Site == "" || r.ID == "") {
			t.Fatalf("incomplete Delivery record: %+v", r)
		}
	}
	// Everything delivered: the spool is empty.
	waitFor(t, 5*time.Second, "empty spool", func() bool { return h.m.Spool.Stats().Messages == 0 })
}

// A 4xx is retried and then delivered.
func TestTemporaryFailureRetried(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	seen := map[string]int{}
	p, err := w.AddProvider(sim.Behavior{Name: "grey", RcptReply: func(rcpt string) string {
		mu.Lock()
		defer mu.Unlock()
		seen[rcpt]++
		if seen[rcpt] == 1 {
			return "451 4.7.1 Greylisted, please try again later"
		}
		return ""
	}}, []string{"grey.test"}, "mx.grey.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	h.sendMany(10, 2, func(i int) string { return fmt.Sprintf("u%d@grey.test", i) })
	waitDelivered(t, p, 10, 20*time.Second)
	waitFor(t, 5*time.Second, "records", func() bool { return countType(h.records(), events.Delivery) == 10 })
	recs := h.records()
	if got := countType(recs, events.TransientFailure); got != 10 {
		t.Fatalf("%d TransientFailure records, want 10", got)
	}
	for _, r := range recs {
		if r.Type == events.TransientFailure {
			if r.Code != 451 || r.EnhancedCode != "4.7.1" || !strings.HasPrefix(r.Status, queue.StatusRetry) || r.Class == "" {
				t.Fatalf("bad TransientFailure record %+v", r)
			}
		}
		if r.Type == events.Delivery && r.Attempt != 2 {
			t.Fatalf("delivered at attempt %d, want 2", r.Attempt)
		}
	}
}

// A 550 bounces at once with a Bounce record.
func TestPermanentFailureBounces(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "strict", RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "nobody") {
			return "550 5.1.1 <" + rcpt + ">: Recipient address rejected: User unknown"
		}
		return ""
	}}, []string{"strict.test"}, "mx.strict.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	if err := h.send("s@penstock.test", []string{"nobody@strict.test", "alice@strict.test"}, message("s@penstock.test", "x", "b1", 500)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, p, 1, 10*time.Second)
	waitFor(t, 5*time.Second, "bounce record", func() bool { return countType(h.records(), events.Bounce) == 1 })
	for _, r := range h.records() {
		if r.Type == events.Bounce && r.Sender != "" {
			if r.Recipient != "nobody@strict.test" || r.Code != 550 || r.EnhancedCode != "5.1.1" || r.Class != "hard" || r.Reason != "user_unknown" {
				t.Fatalf("bad Bounce record %+v", r)
			}
		}
	}
	if st := p.Stats(); st.Attempts != 1 {
		t.Fatalf("the provider saw %d transactions, want 1 (no retry of a hard bounce)", st.Attempts)
	}
}

// A 5xx reply no rule recognises ends the delivery at once (RFC 5321: 5yz
// is permanent) but, being unknown, is soft: never held against the
// address in the quarantine.
func TestUnknownPermanentReplyBouncesWithoutQuarantine(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "vague", RcptReply: func(rcpt string) string {
		return "550 Go away"
	}}, []string{"vague.test"}, "mx.vague.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	if err := h.send("s@penstock.test", []string{"bob@vague.test"}, message("s@penstock.test", "bob@vague.test", "v", 300)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bounce record", func() bool { return countType(h.records(), events.Bounce) == 1 })
	for _, r := range h.records() {
		if r.Type == events.Bounce && (r.Reason != "unknown" || r.Class != "soft") {
			t.Fatalf("bounce %+v, want reason unknown, class soft", r)
		}
	}
	if st := p.Stats(); st.Attempts != 1 {
		t.Fatalf("%d transactions, want 1: a 5xx is not retried", st.Attempts)
	}
	if e, ok := h.m.Quarantine.Get("bob@vague.test"); ok && (e.Status == quarantine.Quarantined || e.Errors > 0) {
		t.Fatalf("an unrecognised reply was held against the address: %+v", e)
	}
}

// Null MX and NXDOMAIN bounce at once; SERVFAIL defers with its status.
func TestDNSOutcomes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.DNS.SetNullMX("nullmx.test")
	w.DNS.SetRcode("broken.test", mdns.RcodeServerFailure)
	h := newHarness(t, w, nil)
	for _, to := range []string{"a@nullmx.test", "b@nxdomain.test", "c@broken.test"} {
		if err := h.send("s@penstock.test", []string{to}, message("s@penstock.test", to, "dns", 300)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "two bounces", func() bool { return countType(h.records(), events.Bounce) == 2 })
	for _, r := range h.records() {
		if r.Type == events.Bounce && r.Recipient == "c@broken.test" {
			t.Fatal("SERVFAIL bounced")
		}
	}
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "MX lookup failed status", func() bool {
		h.api("GET", "/api/v1/explain?address=c@broken.test", &ex)
		return len(ex.Recipients) == 1 && ex.Recipients[0].Status == queue.StatusMXFailed
	})
	if !strings.Contains(ex.Verdict, queue.StatusMXFailed) {
		t.Fatalf("verdict %q", ex.Verdict)
	}
	// The domain heals: the deferred recipient is delivered.
	p, err := w.AddProvider(sim.Behavior{Name: "healed"}, []string{"broken.test"}, "mx.broken.test")
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetRcode("broken.test", 0)
	_ = p
	// (the lookup is retried after [dns] retry; this test does not wait
	// for it: TestMXFailureRecovers covers recovery with a short retry)
}

// A message from a network not in allowed_networks is refused.
func TestRelayDenied(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, func(c *config.Config) { c.SMTP.AllowedNetworks = []string{"127.0.0.2/32"} })
	c, err := dialFrom("127.0.0.1", h.m.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Mail("s@penstock.test")
	if err == nil {
		err = c.Rcpt("x@example.test")
	}
	if err == nil || !strings.HasPrefix(err.Error(), "550 ") || !strings.Contains(err.Error(), "5.7.1") || !strings.Contains(err.Error(), "relaying denied") {
		t.Fatalf("want 550 5.7.1 relaying denied, got %v", err)
	}
	// From the allowed address it is accepted.
	c2, err := dialFrom("127.0.0.2", h.m.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Mail("s@penstock.test"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Rcpt("x@example.test"); err != nil {
		t.Fatal(err)
	}
}

// Connection reuse: a site's due messages share connections.
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "reuse"}, []string{"reuse.test"}, "mx.reuse.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.MXRules = append(c.MXRules, config.MXRule{Name: "reuse", MX: config.Patterns{"*.reuse.test"}, MaxConnections: 2, MaxMessagesPerConnection: 1000})
		c.ApplyDefaults()
	})
	h.sendMany(300, 10, func(i int) string { return fmt.Sprintf("u%d@reuse.test", i) })
	waitDelivered(t, p, 300, 30*time.Second)
	st := p.Stats()
	if st.MaxOpen > 2 {
		t.Fatalf("%d connections at once, rule allows 2", st.MaxOpen)
	}
	if st.Connections >= 300 {
		t.Fatalf("%d connections for 300 messages: no reuse", st.Connections)
	}
	t.Logf("300 messages over %d connections, max %d per connection", st.Connections, st.MaxMsgsPerConn)
	_ = context.Background
}

// /metrics exports the counters and gauges, with rule labels only.
func TestMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "m", RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "gone") {
			return "550 5.1.1 no such user"
		}
		return ""
	}}, []string{"metrics.test"}, "mx.metrics.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	h.sendMany(20, 4, func(i int) string { return fmt.Sprintf("u%d@metrics.test", i) })
	waitDelivered(t, p, 20, 10*time.Second)
	if err := h.send("s@penstock.test", []string{"gone@metrics.test"}, message("s@penstock.test", "gone@metrics.test", "m", 100)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the bounce", func() bool { return countType(h.records(), events.Bounce) == 1 })
	var body string
	waitFor(t, 5*time.Second, "delivered counter", func() bool {
		resp, err := http.Get("http://" + h.m.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return strings.Contains(body, `penstock_delivery_delivered_total{rule="default"} 20`)
	})
	// Every status is a series even when nothing waits (the documented
	// penstock_queue_recipients{status} was missing when the queue was empty).
	for _, st := range queue.Statuses() {
		if !strings.Contains(body, fmt.Sprintf("penstock_queue_recipients{status=%q} 0", st)) {
			t.Errorf("metrics lack the %q series", st)
		}
	}
	// Every metric the README names exists.
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`penstock_[a-z_]+[a-z]`).FindAllString(string(readme), -1) {
		if strings.HasPrefix(name, "penstock_eventsout_") {
			continue // one series per configured output; this node has none
		}
		if !strings.Contains(body, "\n"+name+" ") && !strings.Contains(body, "\n"+name+"{") && !strings.Contains(body, "\n"+name+"_bucket{") {
			t.Errorf("the README documents %s; /metrics has no such series", name)
		}
	}
	for _, want := range []string{"penstock_smtpserver_recipients_injected_total 21", "penstock_spool_messages",
		"penstock_flow_sites{state=\"normal\"}", "penstock_smtpserver_ack_seconds_count 21", "penstock_delivery_time_to_delivery_seconds_count 20",
		`penstock_smtpserver_rejected_total{reason="too_many_errors"} 0`, "penstock_smtpserver_stress 0",
		"penstock_smtpserver_auth_throttled_clients 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(body, "metrics.test") {
		t.Error("a recipient domain appears in a metric label")
	}
}

// Validity runs out: a recipient that keeps failing expires with an
// Expiration record, and so does one held by a quota that never got a
// connection.
func TestExpiry(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	_, err := w.AddProvider(sim.Behavior{Name: "greylist", RcptReply: func(string) string { return "451 4.7.1 try later" }}, []string{"exp.test"}, "mx.exp.test")
	if err != nil {
		t.Fatal(err)
	}
	stall, err := w.AddProvider(sim.Behavior{Name: "stall", StallAt: sim.AtDot, StallFor: 3 * time.Second}, []string{"held.test"}, "mx.held.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.Delivery.Validity = config.Duration(time.Second)
		c.FlowControl.Enabled = false
		c.MXRules = append(c.MXRules, config.MXRule{Name: "one", MX: config.Patterns{"mx.held.test"}, MaxConnections: 1})
		c.ApplyDefaults()
	})
	if err := h.send("s@penstock.test", []string{"a@exp.test"}, message("s@penstock.test", "a@exp.test", "exp", 300)); err != nil {
		t.Fatal(err)
	}
	h.sendMany(2, 2, func(i int) string { return fmt.Sprintf("u%d@held.test", i) })
	waitFor(t, 10*time.Second, "expiration of the retried recipient", func() bool {
		for _, r := range h.records() {
			if r.Type == events.Expiration && r.Recipient == "a@exp.test" {
				return true
			}
		}
		return false
	})
	// The second held.test recipient waits behind the one connection.
	waitFor(t, 10*time.Second, "validity over", func() bool {
		h.m.Queue.ExpireHeld(time.Now())
		return countType(h.records(), events.Expiration) == 2
	})
	for _, r := range h.records() {
		if r.Type == events.Expiration && r.Recipient == "a@exp.test" && r.Code != 451 {
			t.Fatalf("expiration without the last reply: %+v", r)
		}
	}
	_ = stall
}

// Bad input at injection gets a clear error and changes nothing queued.
func TestInjectionLimits(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, func(c *config.Config) {
		c.SMTP.MaxMessageSize = 4096
		c.SMTP.MaxRecipients = 3
	})
	err := h.send("s@penstock.test", []string{"a@x.test"}, message("s@penstock.test", "a@x.test", "big", 10000))
	if err == nil || !strings.Contains(err.Error(), "552") || !strings.Contains(err.Error(), "5.3.4") {
		t.Fatalf("oversized message: %v, want 552 5.3.4", err)
	}
	err = h.send("s@penstock.test", []string{"a@x.test", "b@x.test", "c@x.test", "d@x.test"}, message("s@penstock.test", "a@x.test", "many", 100))
	if err == nil || !strings.Contains(err.Error(), "452") {
		t.Fatalf("too many recipients: %v, want 452", err)
	}
	c, err := dialFrom("127.0.0.1", h.m.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("not an address"); err == nil || !strings.HasPrefix(err.Error(), "5") {
		t.Fatalf("malformed MAIL FROM: %v, want 5xx", err)
	}
	if n := h.m.Spool.Stats().Messages; n != 0 {
		t.Fatalf("%d messages stored from refused input", n)
	}
}

// Graceful stop: no new mail is accepted, sessions finish the message on
// the wire, and what is still queued stays in the spool for the next start.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "slow", StallAt: sim.AtDot, StallFor: 200 * time.Millisecond}, []string{"stop.test"}, "mx.stop.test")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := testConfig(t, w, dir)
	cfg.MXRules = []config.MXRule{{Name: "two", MX: config.Patterns{"mx.stop.test"}, MaxConnections: 2}}
	cfg.ApplyDefaults()
	h := &harness{t: t, world: w, cfg: cfg}
	h.start()
	h.sendMany(40, 5, func(i int) string { return fmt.Sprintf("u%d@stop.test", i) })
	addr := h.m.SMTPAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err = h.m.Shutdown(ctx)
	cancel()
	h.m = nil
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := sendSMTP(addr, "s@penstock.test", []string{"late@stop.test"}, "Subject: x\r\n\r\nx\r\n"); err == nil {
		t.Fatal("a stopped node accepted mail")
	}
	before := p.Delivered()
	if before >= 40 {
		t.Fatalf("all 40 delivered before the stop: the test proves nothing (slow the provider down)")
	}
	// Restart on the same spool: the rest goes out, nothing twice.
	h2 := &harness{t: t, world: w, cfg: cfg}
	h2.start()
	waitDelivered(t, p, 40, 30*time.Second)
	for r, n := range p.Stats().RcptSeen {
		if n > 1 {
			t.Errorf("%s delivered %d times across a graceful stop", r, n)
		}
	}
	t.Logf("%d delivered before the stop, the rest after the restart", before)
}
