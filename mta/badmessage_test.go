package mta_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

// captured is what a simulated provider received: envelope sender and
// message, by recipient.
type captured struct {
	mu   sync.Mutex
	from map[string]string
	body map[string]string
}

func (c *captured) hook(from string, rcpts []string, body []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rcpts {
		c.from[r], c.body[r] = from, string(body)
	}
}

func (c *captured) get(rcpt string) (from, body string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.from[rcpt], c.body[rcpt]
}

func newCaptured() *captured {
	return &captured{from: map[string]string{}, body: map[string]string{}}
}

// TestAPIMessageFromWithName replays the API sends whose from carried a
// display name or a comment: they used to reach MAIL FROM whole and be
// retried as soft local failures until validity. The envelope gets the bare
// address, the From header the name, the Message-ID never the comment.
func TestAPIMessageFromWithName(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	got := newCaptured()
	p, err := w.AddProvider(sim.Behavior{Name: "dst", BodyHook: got.hook}, []string{"dst.test"}, "mx.dst.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	for i, tc := range []struct{ from, envelope, header string }{
		{"Evil Name <a@src.example>", "a@src.example", `From: "Evil Name" <a@src.example>`},
		{"x@y.example (comment)", "x@y.example", `From: "comment" <x@y.example>`},
		{"plain@src.example", "plain@src.example", "From: plain@src.example"},
	} {
		to := fmt.Sprintf("r%d@dst.test", i)
		code, b := h.call("POST", "/api/v1/messages", "", "application/json", jsonBody(t, map[string]any{
			"from": tc.from, "to": []string{to}, "subject": "hi", "text": "hello\n.dot line\n",
			"headers": map[string]string{"Reply-To": "Ann Example <ann@src.example>"}}))
		if code != 202 {
			t.Fatalf("%q: HTTP %d %s", tc.from, code, b)
		}
		waitDelivered(t, p, int64(i+1), 20*time.Second)
		env, body := got.get(to)
		if env != tc.envelope {
			t.Errorf("%q: MAIL FROM %q, want %q", tc.from, env, tc.envelope)
		}
		if !strings.Contains(body, "\r\n"+tc.header+"\r\n") && !strings.HasPrefix(body, tc.header+"\r\n") {
			t.Errorf("%q: no %q in\n%s", tc.from, tc.header, body)
		}
		mid := regexp.MustCompile(`(?m)^Message-ID: (.*)\r$`).FindStringSubmatch(body)
		if mid == nil || strings.ContainsAny(mid[1], "() ") || !strings.HasSuffix(mid[1], "@"+tc.envelope[strings.IndexByte(tc.envelope, '@')+1:]+">") {
			t.Errorf("%q: Message-ID %q", tc.from, mid)
		}
		if !strings.Contains(body, "\r\nReply-To: \"Ann Example\" <ann@src.example>\r\n") {
			t.Errorf("%q: Reply-To not written per mailbox:\n%s", tc.from, body)
		}
		// Dot-stuffing is smtpclient's: the provider unstuffs what the
		// pipeline built, byte for byte.
		if !strings.Contains(body, "\r\n.dot line\r\n") {
			t.Errorf("%q: a line starting with a dot did not survive:\n%s", tc.from, body)
		}
	}
	for _, r := range h.records() {
		if r.Type != events.Delivery && r.Type != events.Reception {
			t.Errorf("unexpected %s record: %+v", r.Type, r)
		}
	}
}

// TestAPIRefusesUnbuildable: what can be checked at acceptance is refused
// there with 400 and the field at fault, nothing stored.
func TestAPIRefusesUnbuildable(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, nil)
	tpl := map[string]any{"from": "News <news@penstock.test>", "subject": "s", "text": "t",
		"headers": map[string]string{"Reply-To": "help+{{.tag}}@penstock.test"}}
	for _, tc := range []struct {
		path  string
		body  map[string]any
		field string
	}{
		{"/api/v1/messages", map[string]any{"from": "not an address", "to": []string{"a@dst.test"}, "text": "t"}, "from"},
		{"/api/v1/messages", map[string]any{"from": "a@src.test", "to": []string{"a@dst.test"}, "text": "t",
			"headers": map[string]string{"Reply-To": "Evil <x@y"}}, "headers.Reply-To"},
		{"/api/v1/messages", map[string]any{"from": "a@src.test", "to": []string{"a@dst.test"}, "text": "t",
			"headers": map[string]string{"X Bad": "v"}}, "headers.X Bad"},
		{"/api/v1/messages", map[string]any{"from": "a@src.test", "to": []string{"a@dst.test"}, "text": "t",
			"headers": map[string]string{"Message-ID": "<x@y>"}}, "headers.Message-ID"},
		{"/api/v1/messages", map[string]any{"from": "a@src.test", "to": []string{"a@dst.test"}, "text": "t",
			"headers": map[string]string{"X-Tag": "a\x00b"}}, "headers.X-Tag"},
		{"/api/v1/deliveries", map[string]any{"from": "Evil Name <a@src.example>", "template": tpl}, "from"},
		{"/api/v1/deliveries", map[string]any{"from": "b@penstock.test", "template": map[string]any{"from": "n@penstock.test", "subject": "{{.x", "text": "t"}}, "template"},
		{"/api/v1/deliveries", map[string]any{"from": "b@penstock.test", "template": tpl, "recipients": []map[string]any{
			{"address": "ok@dst.test", "vars": map[string]string{"tag": "fine"}},
			{"address": "bad@dst.test", "vars": map[string]string{"tag": "a b"}}}}, "recipients[1].vars"},
	} {
		code, b := h.call("POST", tc.path, "", "application/json", jsonBody(t, tc.body))
		var e struct{ Error, Field string }
		json.Unmarshal(b, &e)
		if code != 400 || e.Field != tc.field || e.Error == "" {
			t.Errorf("%s %v: HTTP %d %s; want 400 naming %q", tc.path, tc.body, code, b, tc.field)
		}
	}
	var list struct{ Deliveries []api.DeliveryView }
	h.api("GET", "/api/v1/deliveries", &list)
	if len(list.Deliveries) != 0 {
		t.Fatalf("refused requests stored deliveries: %+v", list.Deliveries)
	}
	// A recipient list streamed later: the bad line is refused, naming it;
	// the lines before it are queued.
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{"from": "b@penstock.test", "template": tpl}))
	if code != 201 {
		t.Fatalf("create: HTTP %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	code, b = h.call("POST", "/api/v1/deliveries/"+v.ID+"/recipients", "", "text/csv",
		strings.NewReader("email,tag\nu1@dst.test,one\nu2@dst.test,x>y\nu3@dst.test,three\n"))
	var res struct {
		Error    string
		Accepted int
	}
	json.Unmarshal(b, &res)
	if code != 400 || res.Accepted != 1 || !strings.Contains(res.Error, "line 3") || !strings.Contains(res.Error, "Reply-To") {
		t.Fatalf("bad CSV line: HTTP %d %s", code, b)
	}
}

// TestUnbuildableFailsAtOnce: a campaign recipient whose variables make an
// invalid Reply-To, spooled as an older version accepted it, fails at its
// first attempt: hard, reason bad_message, the local cause in the text,
// counted in the campaign, no quarantine, nothing against the site. It used
// to be retried as a soft local failure until validity.
func TestUnbuildableFailsAtOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "camp"}, []string{"camp.test"}, "mx.camp.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	tpl := map[string]any{"from": "News <news@penstock.test>", "subject": "s", "text": "Hello {{.tag}}\n",
		"headers": map[string]string{"Reply-To": "help+{{.tag}}@penstock.test"}}
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{
		"from": "bounces@penstock.test", "template": tpl,
		"recipients": []map[string]any{{"address": "good@camp.test", "vars": map[string]string{"tag": "ok"}}}}))
	if code != 201 {
		t.Fatalf("create: HTTP %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	waitDelivered(t, p, 1, 20*time.Second)
	h.stop()

	// The recipient the API now refuses, written to the spool directly.
	sp, err := spool.Open(h.cfg.Server.SpoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bad := &spool.Message{Sender: "bounces@penstock.test", Received: now, Expires: now.Add(5 * 24 * time.Hour), DeliveryID: v.ID,
		Recipients: []spool.Recipient{{Addr: "bad@camp.test", Vars: campaign.EncodeVars(map[string]string{"tag": "a b"})}}}
	if err := sp.PutMany(context.Background(), []*spool.Message{bad}, nil); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	h.start()

	var bounce events.Record
	waitFor(t, 20*time.Second, "the bounce of bad@camp.test", func() bool {
		for _, r := range h.records() {
			if r.Recipient == "bad@camp.test" && r.Type != events.Reception {
				bounce = r
				return true
			}
		}
		return false
	})
	if bounce.Type != events.Bounce || bounce.Attempt != 1 || bounce.Class != "hard" || bounce.Reason != "bad_message" ||
		!strings.Contains(bounce.Text, "message could not be built") || !strings.Contains(bounce.Text, "Reply-To") {
		t.Fatalf("first outcome of an unbuildable message: %+v", bounce)
	}
	v = waitDone(t, h, v.ID)
	if v.Counts.Bounced != 1 || v.BouncedByReason["bad_message"] != 1 {
		t.Fatalf("campaign counts %+v by reason %v", v.Counts, v.BouncedByReason)
	}
	if e, ok := h.m.Quarantine.Get("bad@camp.test"); ok {
		t.Fatalf("address quarantined for our own message: %+v", e)
	}
	if n := len(flowRecords(h.records(), "camp.test", "")); n != 0 {
		t.Fatalf("%d flow-control changes", n)
	}
	var ex queue.Explanation
	h.api("GET", "/api/v1/explain?domain=camp.test", &ex)
	if ex.Site == nil || ex.Site.Flow.State != "normal" {
		t.Fatalf("site %+v", ex.Site)
	}
	if p.Delivered() != 1 {
		t.Fatalf("provider got %d messages, want the good one only", p.Delivered())
	}
}

// TestRelayedOneBodyForAllDomains: a relayed message with recipients at
// three domains (three transactions, the pipeline's per-message work
// shared) reaches each with the same bytes, lines starting with a dot
// included.
func TestRelayedOneBodyForAllDomains(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	got := newCaptured()
	var ps []*sim.Provider
	for _, d := range []string{"one.test", "two.test", "three.test"} {
		p, err := w.AddProvider(sim.Behavior{Name: d, BodyHook: got.hook}, []string{d}, "mx."+d)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	h := newHarness(t, w, nil)
	rcpts := []string{"a@one.test", "b@two.test", "c@two.test", "d@three.test"}
	body := "From: s@penstock.test\r\nSubject: one body\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n"
	if err := h.send("s@penstock.test", rcpts, body); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		waitDelivered(t, p, 1, 20*time.Second)
	}
	_, first := got.get(rcpts[0])
	if !strings.HasSuffix(first, "\r\n\r\nhello\r\n.leading dot\r\n..two dots\r\n") || !strings.HasPrefix(first, "Received: ") {
		t.Fatalf("received %q", first)
	}
	for _, r := range rcpts[1:] {
		if env, b := got.get(r); b != first || env != "s@penstock.test" {
			t.Errorf("%s got MAIL FROM %q and a different body:\n%q\n%q", r, env, b, first)
		}
	}
}
