package mta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// call sends a request with an optional token and returns status and body.
// A call with no answer within callTimeout fails the test with every
// goroutine's stack (dumpGoroutines) instead of hanging it.
func (h *harness) call(method, path, token, ctype string, body io.Reader) (int, []byte) {
	h.t.Helper()
	wait := callTimeout(h.t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.m.HTTPAddr()+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var b []byte
		if b, err = io.ReadAll(resp.Body); err == nil || ctx.Err() == nil {
			return resp.StatusCode, b
		}
	}
	if ctx.Err() != nil {
		h.t.Fatalf("%s %s: no answer within %s; %s", method, path, wait, dumpGoroutines(h.t))
	}
	h.t.Fatal(err)
	return 0, nil
}

func jsonBody(t *testing.T, v any) io.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

var testTemplate = map[string]any{
	"from":             "News <news@penstock.test>",
	"subject":          "Hello {{.first_name}}",
	"text":             "Dear {{.first_name}} of {{.city}},\nour news.\n",
	"html":             "<p>Dear {{.first_name}} of {{.city}}</p>",
	"list_unsubscribe": "https://penstock.test/u?r={{.recipient}}",
}

// A campaign through the API, followed to completion: counts add up, each
// message is rendered with its recipient's variables.
func TestDeliveryEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	bodies := map[string]string{}
	p, err := w.AddProvider(sim.Behavior{Name: "camp", BodyHook: func(from string, rcpts []string, body []byte) {
		mu.Lock()
		bodies[rcpts[0]] = string(body)
		mu.Unlock()
	}, RcptReply: func(r string) string {
		if strings.HasPrefix(r, "bad") {
			return "550 5.1.1 user unknown"
		}
		return ""
	}}, []string{"camp.test"}, "mx.camp.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) { c.HTTP.Token = "s3cret" })
	var rcpts []map[string]any
	for i := 0; i < 500; i++ {
		local := fmt.Sprintf("u%d", i)
		if i%50 == 0 {
			local = fmt.Sprintf("bad%d", i)
		}
		rcpts = append(rcpts, map[string]any{"address": local + "@camp.test", "vars": map[string]string{"first_name": fmt.Sprintf("Ann%d", i), "city": "Lyon"}})
	}
	code, body := h.call("POST", "/api/v1/deliveries", "s3cret", "application/json", jsonBody(t, map[string]any{
		"name": "november", "from": "bounces@penstock.test", "template": testTemplate, "recipients": rcpts}))
	if code != 201 {
		t.Fatalf("create: HTTP %d %s", code, body)
	}
	var v api.DeliveryView
	json.Unmarshal(body, &v)
	// Another 500 streamed as CSV.
	var csv strings.Builder
	csv.WriteString("email,first_name,city\n")
	for i := 500; i < 1000; i++ {
		fmt.Fprintf(&csv, "u%d@camp.test,Bob%d,Paris\n", i, i)
	}
	code, body = h.call("POST", "/api/v1/deliveries/"+v.ID+"/recipients", "s3cret", "text/csv", strings.NewReader(csv.String()))
	if code != 200 {
		t.Fatalf("recipients: HTTP %d %s", code, body)
	}
	waitFor(t, 60*time.Second, "delivery done", func() bool {
		_, b := h.call("GET", "/api/v1/deliveries/"+v.ID, "s3cret", "", nil)
		json.Unmarshal(b, &v)
		return v.Done
	})
	c := v.Counts
	if v.Total != 1000 || c.Delivered != 990 || c.Bounced != 10 || c.Delivered+c.Bounced+c.Suppressed+c.Expired+c.Cancelled+c.Queued != v.Total {
		t.Fatalf("counts do not add up: total %d %+v", v.Total, c)
	}
	if v.BouncedByReason["user_unknown"] != 10 {
		t.Fatalf("bounced by reason %v", v.BouncedByReason)
	}
	if p.Delivered() != 990 {
		t.Fatalf("provider got %d", p.Delivered())
	}
	mu.Lock()
	b1, b2 := bodies["u1@camp.test"], bodies["u700@camp.test"]
	mu.Unlock()
	for _, want := range []string{"Subject: Hello Ann1", "Dear Ann1 of Lyon", "List-Unsubscribe: <https://penstock.test/u?r=u1%40camp.test>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click", "Message-ID: <"} {
		if !strings.Contains(b1, want) {
			t.Errorf("rendered message lacks %q:\n%s", want, b1)
		}
	}
	if !strings.Contains(b2, "Dear Bob700 of Paris") {
		t.Errorf("CSV recipient rendered wrong:\n%s", b2)
	}
	// Records carry the delivery id.
	n := 0
	for _, r := range h.records() {
		if r.Type == events.Delivery && r.DeliveryID == v.ID {
			n++
		}
	}
	if n != 990 {
		t.Errorf("%d Delivery records with the delivery id, want 990", n)
	}
}

// Every delivery route refuses bad input with the right code and a field.
func TestDeliveryBadInput(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := newHarness(t, w, func(c *config.Config) { c.HTTP.Token = "tok" })
	type tc struct {
		name, method, path, token, ctype, body string
		code                                   int
		field                                  string
	}
	good := `{"from":"b@penstock.test","template":{"from":"a@penstock.test","subject":"s","text":"t"}}`
	cases := []tc{
		{"missing token", "POST", "/api/v1/deliveries", "", "application/json", good, 401, "Authorization"},
		{"wrong token", "POST", "/api/v1/deliveries", "nope", "application/json", good, 401, "Authorization"},
		{"bad JSON", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":`, 400, ""},
		{"unknown field", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":"b@penstock.test","colour":1}`, 400, "colour"},
		{"wrong type", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":5}`, 400, "from"},
		{"no sender", "POST", "/api/v1/deliveries", "tok", "application/json", `{"template":{"from":"a@penstock.test","subject":"s","text":"t"}}`, 400, "from"},
		{"bad template", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":"b@penstock.test","template":{"from":"a@penstock.test","subject":"{{.x","text":"t"}}`, 400, "template"},
		{"bad recipient", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":"b@penstock.test","template":{"from":"a@penstock.test","subject":"s","text":"t"},"recipients":[{"address":"nope"}]}`, 400, "recipients[0].address"},
		{"unknown pool", "POST", "/api/v1/deliveries", "tok", "application/json", `{"from":"b@penstock.test","pool":"nowhere","template":{"from":"a@penstock.test","subject":"s","text":"t"}}`, 400, "pool"},
		{"unknown delivery", "GET", "/api/v1/deliveries/d000", "tok", "", "", 404, "id"},
		{"unknown delivery recipients", "POST", "/api/v1/deliveries/d000/recipients", "tok", "text/csv", "email\na@b.test\n", 404, "id"},
		{"unknown delivery cancel", "POST", "/api/v1/deliveries/d000/cancel", "tok", "", "", 404, "id"},
		{"unknown site", "GET", "/api/v1/queues/nowhere.test", "tok", "", "", 404, "site"},
		{"unknown site action", "POST", "/api/v1/sites/nowhere.test/suspend", "tok", "", "", 404, "site"},
		{"bad action", "POST", "/api/v1/sites/nowhere.test/explode", "tok", "", "", 404, "action"},
		{"explain without target", "GET", "/api/v1/explain", "tok", "", "", 400, "address"},
		{"bad message", "POST", "/api/v1/messages", "tok", "application/json", `{"from":"a@penstock.test","to":["not an address"],"text":"x"}`, 400, "to"},
		{"no route", "GET", "/api/v1/nothing", "tok", "", "", 404, ""},
	}
	for _, c := range cases {
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		code, b := h.call(c.method, c.path, c.token, c.ctype, body)
		var e api.Error
		json.Unmarshal(b, &e)
		if code != c.code || e.Error == "" || (c.field != "" && e.Field != c.field) {
			t.Errorf("%s: HTTP %d %s, want %d with field %q", c.name, code, b, c.code, c.field)
		}
	}
	// Oversized body.
	big := `{"from":"b@penstock.test","template":{"from":"a@penstock.test","subject":"s","text":"` + strings.Repeat("x", 65<<20) + `"}}`
	code, _ := h.call("POST", "/api/v1/deliveries", "tok", "application/json", strings.NewReader(big))
	if code != 413 {
		t.Errorf("oversized body: HTTP %d, want 413", code)
	}
	// A bad line in a streamed list names the line; what came before stays.
	code, b := h.call("POST", "/api/v1/deliveries", "tok", "application/json", strings.NewReader(good))
	if code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	code, b = h.call("POST", "/api/v1/deliveries/"+v.ID+"/recipients", "tok", "text/csv", strings.NewReader("email\na@x.test\nnot-an-address\n"))
	if code != 400 || !strings.Contains(string(b), "line 3") {
		t.Errorf("bad CSV line: HTTP %d %s", code, b)
	}
}

// Cancel stops a delivery: its queued recipients are cancelled.
func TestDeliveryCancel(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	_, err := w.AddProvider(sim.Behavior{Name: "down", Greeting: "421 4.3.2 not now"}, []string{"cancel.test"}, "mx.cancel.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, nil)
	var rcpts []map[string]any
	for i := 0; i < 100; i++ {
		rcpts = append(rcpts, map[string]any{"address": fmt.Sprintf("u%d@cancel.test", i)})
	}
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{"from": "b@penstock.test", "template": testTemplate, "recipients": rcpts}))
	if code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	code, b = h.call("POST", "/api/v1/deliveries/"+v.ID+"/cancel", "", "", nil)
	if code != 200 {
		t.Fatalf("cancel: %d %s", code, b)
	}
	waitFor(t, 10*time.Second, "all cancelled", func() bool {
		_, b := h.call("GET", "/api/v1/deliveries/"+v.ID, "", "", nil)
		json.Unmarshal(b, &v)
		return v.Done
	})
	if v.Counts.Cancelled == 0 || v.Counts.Cancelled+v.Counts.Expired+v.Counts.Bounced+v.Counts.Delivered != 100 {
		t.Fatalf("counts after cancel: %+v", v.Counts)
	}
}

// 100,000 recipients through the API, followed to completion; stored bytes
// per queued recipient measured.
func TestDelivery100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k recipients")
	}
	t.Parallel()
	w := newWorld(t)
	var domains []string
	for i := 0; i < 10; i++ {
		domains = append(domains, fmt.Sprintf("big%d.test", i))
	}
	p, err := w.AddProvider(sim.Behavior{Name: "big"}, domains, "mx.big.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.MXRules = append(c.MXRules, config.MXRule{Name: "big", MX: config.Patterns{"mx.big.test"}, MaxConnections: 20, MaxMessagesPerConnection: 1000})
		c.ApplyDefaults()
	})
	code, b := h.call("POST", "/api/v1/deliveries", "", "application/json", jsonBody(t, map[string]any{"from": "b@penstock.test", "template": testTemplate}))
	if code != 201 {
		t.Fatalf("create: %d %s", code, b)
	}
	var v api.DeliveryView
	json.Unmarshal(b, &v)
	used0 := h.m.Spool.Stats().Used
	var nd strings.Builder
	const n = 100000
	for i := 0; i < n; i++ {
		fmt.Fprintf(&nd, `{"address":"user%d@%s","vars":{"first_name":"Name%d","city":"Springfield"}}`+"\n", i, domains[i%10], i)
	}
	t0 := time.Now()
	code, b = h.call("POST", "/api/v1/deliveries/"+v.ID+"/recipients", "", "application/x-ndjson", strings.NewReader(nd.String()))
	if code != 200 {
		t.Fatalf("recipients: %d %s", code, b)
	}
	ingest := time.Since(t0)
	used := h.m.Spool.Stats().Used - used0
	waitForEvery(t, 5*time.Minute, time.Second, "100k delivered", func() bool {
		_, b := h.call("GET", "/api/v1/deliveries/"+v.ID, "", "", nil)
		json.Unmarshal(b, &v)
		return v.Done
	})
	total := time.Since(t0)
	c := v.Counts
	if v.Total != n || c.Delivered != n || c.Queued != 0 {
		t.Fatalf("counts: total %d %+v", v.Total, c)
	}
	if p.Delivered() != n {
		t.Fatalf("provider got %d", p.Delivered())
	}
	perRcpt := float64(used) / n
	st := h.m.Spool.Stats()
	t.Logf("spool: %d commits, %d writes (%.1f per commit)", st.Commits, st.Writes, float64(st.Writes)/float64(st.Commits))
	t.Logf("100k recipients: ingested in %s, delivered in %s (%.0f msgs/s); spool grew %.0f B per queued recipient", ingest.Round(time.Millisecond), total.Round(time.Millisecond), n/total.Seconds(), perRcpt)
	if perRcpt >= 300 {
		t.Fatalf("%.0f stored bytes per queued recipient, target < 300", perRcpt)
	}
}
