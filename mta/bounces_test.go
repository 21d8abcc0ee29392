package mta_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/sim"
)

func createCampaign(t *testing.T, h *harness, rcpts []string) api.DeliveryView {
	t.Helper()
	var list []map[string]any
	for _, r := range rcpts {
		list = append(list, map[string]any{"address": r})
	}
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{
		"from": "bounces@penstock.test", "template": testTemplate, "recipients": list}))
	if code != 201 {
		t.Fatalf("create: HTTP %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	return v
}

func waitDone(t *testing.T, h *harness, id string) api.DeliveryView {
	t.Helper()
	var v api.DeliveryView
	waitFor(t, 30*time.Second, "delivery done", func() bool {
		_, b := h.call("GET", "/api/v1/deliveries/"+id, "", "", nil)
		json.Unmarshal(b, &v)
		return v.Done
	})
	return v
}

// Unknown users are quarantined by the first campaign and suppressed in the
// second.
func TestQuarantineAndSuppression(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "list", RcptReply: func(r string) string {
		if strings.HasPrefix(r, "gone") {
			return "550 5.1.1 <" + r + ">: Recipient address rejected: User unknown in local recipient table"
		}
		return ""
	}}, []string{"list.test"}, "mx.list.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	var rcpts []string
	for i := 0; i < 40; i++ {
		l := fmt.Sprintf("u%d", i)
		if i%4 == 0 {
			l = fmt.Sprintf("gone%d", i)
		}
		rcpts = append(rcpts, l+"@list.test")
	}
	v := waitDone(t, h, createCampaign(t, h, rcpts).ID)
	if v.Counts.Bounced != 10 || v.Counts.Delivered != 30 {
		t.Fatalf("first campaign: %+v", v.Counts)
	}
	e, ok := h.m.Quarantine.Get("gone0@list.test")
	if !ok || e.Status != quarantine.Quarantined || e.Reason != "user_unknown" {
		t.Fatalf("gone0 after a 550 5.1.1: %+v %v", e, ok)
	}
	attempts := p.Stats().Attempts
	v = waitDone(t, h, createCampaign(t, h, rcpts).ID)
	if v.Counts.Suppressed != 10 || v.Counts.Delivered != 30 || v.Counts.Bounced != 0 {
		t.Fatalf("second campaign: %+v", v.Counts)
	}
	if got := p.Stats().Attempts - attempts; got != 30 {
		t.Fatalf("the provider saw %d transactions in the second campaign, want 30", got)
	}
	if n := countType(h.records(), events.Suppressed); n != 10 {
		t.Fatalf("%d Suppressed records, want 10", n)
	}
	// SMTP injection suppresses too, and the rest of the message goes on.
	if err := h.send("s@penstock.test", []string{"gone0@list.test", "u1@list.test"}, message("s@penstock.test", "u1@list.test", "mix", 300)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the other recipient delivered", func() bool { return p.Stats().RcptSeen["u1@list.test"] == 3 })
}

// A full mailbox is retried, and quarantined only after max_errors
// significant errors.
func TestMailboxFullThreshold(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	_, err := w.AddProvider(sim.Behavior{Name: "full", RcptReply: func(string) string {
		return "452 4.2.2 The email account that you tried to reach is over quota"
	}}, []string{"full.test"}, "mx.full.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.Quarantine.MaxErrors = 2
		c.Quarantine.SignificantErrorDelay = config.Duration(50 * time.Millisecond)
		c.BounceRules = []config.BounceRule{{Name: "full-fast", Enhanced: "4.2.2", Reason: "mailbox_full", Class: "soft", Retry: config.Duration(100 * time.Millisecond)}}
		c.FlowControl.Enabled = false
		c.ApplyDefaults()
	})
	if err := h.send("s@penstock.test", []string{"a@full.test"}, message("s@penstock.test", "a@full.test", "full", 300)); err != nil {
		t.Fatal(err)
	}
	var seen []quarantine.Status
	waitFor(t, 20*time.Second, "quarantine after the threshold", func() bool {
		e, ok := h.m.Quarantine.Get("a@full.test")
		if ok && (len(seen) == 0 || seen[len(seen)-1] != e.Status) {
			seen = append(seen, e.Status)
		}
		return ok && e.Status == quarantine.Quarantined
	})
	if seen[0] != quarantine.WithErrors {
		t.Fatalf("statuses %v: the first soft error quarantined at once", seen)
	}
	// Counted on the entry itself: the quarantine hears an attempt before
	// its record reaches the delivery log, so counting log records here
	// raced with the log.
	if e, _ := h.m.Quarantine.Get("a@full.test"); e.Errors < 3 {
		t.Fatalf("quarantined after %d significant errors, want at least max_errors+1 = 3", e.Errors)
	}
}

// A DSN and an ARF report sent to the bounce listener are matched to the
// message and recipient and change the quarantine; a malformed one is kept.
func TestAsyncBounceAndComplaint(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	returnPaths := map[string]string{}
	_, err := w.AddProvider(sim.Behavior{Name: "late", BodyHook: func(from string, rcpts []string, body []byte) {
		mu.Lock()
		returnPaths[rcpts[0]] = from
		mu.Unlock()
	}}, []string{"late.test"}, "mx.late.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.Bounce.Listen = "127.0.0.1:0"
		c.Bounce.Domain = "bounces.penstock.test"
	})
	h.sendMany(2, 1, func(i int) string { return fmt.Sprintf("u%d@late.test", i) })
	var rp0, rp1 string
	waitFor(t, 10*time.Second, "both delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		rp0, rp1 = returnPaths["u0@late.test"], returnPaths["u1@late.test"]
		return rp0 != "" && rp1 != ""
	})
	if !strings.HasPrefix(rp0, "b+") || !strings.HasSuffix(rp0, "@bounces.penstock.test") || rp0 == rp1 {
		t.Fatalf("return paths not VERP: %q %q", rp0, rp1)
	}
	report := "From: MAILER-DAEMON@mx.late.test\r\nTo: " + rp0 + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.late.test\r\n\r\n" +
		"Final-Recipient: rfc822; u0@late.test\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 <u0@late.test>: mailbox does not exist\r\n--B--\r\n"
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp0}, report); err != nil {
		t.Fatalf("DSN to the bounce listener: %v", err)
	}
	arf := "From: fbl@late.test\r\nTo: " + rp1 + "\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n" +
		"--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n" +
		"--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n" +
		"Original-Rcpt-To: <u1@late.test>\r\n\r\n" +
		"--F\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: sender@penstock.test\r\nSubject: m1\r\n\r\n--F--\r\n"
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp1}, arf); err != nil {
		t.Fatalf("ARF to the bounce listener: %v", err)
	}
	if err := sendSMTP(h.m.BounceAddr(), "", []string{rp1}, "Subject: ???\r\n\r\nnot a report at all\r\n"); err != nil {
		t.Fatalf("a malformed report was refused: %v", err)
	}
	if err := sendSMTP(h.m.BounceAddr(), "", []string{"someone@elsewhere.test"}, "Subject: x\r\n\r\nx\r\n"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("mail for another domain: %v, want 550", err)
	}
	waitFor(t, 10*time.Second, "quarantine updated", func() bool {
		e0, _ := h.m.Quarantine.Get("u0@late.test")
		e1, _ := h.m.Quarantine.Get("u1@late.test")
		return e0.Status == quarantine.Quarantined && e1.Status == quarantine.Denylisted
	})
	var async, complaint bool
	for _, r := range h.records() {
		if r.Type == events.Bounce && r.Status == "asynchronous bounce" && r.Recipient == "u0@late.test" && r.Code == 550 && r.ID != "" {
			async = true
		}
		if r.Type == events.Complaint && r.Recipient == "u1@late.test" && r.ID != "" {
			complaint = true
		}
	}
	if !async || !complaint {
		t.Fatalf("records: async bounce %v, complaint %v", async, complaint)
	}
}

// A relayed message that finally fails earns its sender an RFC 3464 report.
func TestDSNToSender(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	_, err := w.AddProvider(sim.Behavior{Name: "no", RcptReply: func(r string) string { return "550 5.1.1 no such user" }}, []string{"no.test"}, "mx.no.test")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []byte
	var gotFrom string
	home, err := w.AddProvider(sim.Behavior{Name: "home", BodyHook: func(from string, rcpts []string, body []byte) {
		mu.Lock()
		got, gotFrom = append([]byte(nil), body...), from
		mu.Unlock()
	}}, []string{"home.test"}, "mx.home.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) { c.Delivery.DSN = true })
	if err := h.send("alice@home.test", []string{"x@no.test"}, message("alice@home.test", "x@no.test", "dsn-me", 300)); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, home, 1, 10*time.Second)
	mu.Lock()
	body, from := string(got), gotFrom
	mu.Unlock()
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "Final-Recipient: rfc822; x@no.test", "Status: 5.1.1", "Action: failed", "Subject: dsn-me"} {
		if !strings.Contains(body, want) {
			t.Errorf("DSN lacks %q:\n%s", want, body)
		}
	}
	if from != "" {
		t.Fatalf("DSN sent from %q, want the null sender", from)
	}
}
