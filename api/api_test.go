package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/internal/testkv"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
)

// Unit tests of the HTTP layer against in-memory parts (Deps). The
// quarantine part is a real quarantine.Store over an in-memory KV, so its
// errors are the real ones.

const testToken = "s3cret"

const gmailSite = "alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com"

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// parts is every required part but the quarantine, for fake to embed.
type parts interface {
	Queue
	Deliveries
	Node
}

// fake is every part of Deps. The embedded interface is nil: a method the
// fake lacks panics, which a test would show at once.
type fake struct {
	parts
	*quarantine.Store
	clock *clock

	mu         sync.Mutex
	deliveries map[string]*DeliveryView
	top        []bounce.TopEntry
	injected   []MessageRequest
	actions    []string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	c := &clock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	qs, err := quarantine.New(testkv.New(), quarantine.Config{}, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return &fake{
		Store: qs, clock: c,
		deliveries: map[string]*DeliveryView{
			"d1": {ID: "d1", Name: "spring", Sender: "news@example.com", Total: 10,
				Counts: Counts{Queued: 4, Delivered: 5, Bounced: 1}, BouncedByReason: map[string]int{"user_unknown": 1}},
		},
		top: []bounce.TopEntry{
			{Site: gmailSite, Code: 550, Enhanced: "5.1.1", Text: "the email account that you tried to reach does not exist", Reason: bounce.UserUnknown, Class: bounce.Hard, Count: 12},
			{Site: "mx.example.net", Code: 451, Text: "try again later #", Reason: bounce.Unknown, Class: bounce.Soft, Count: 3},
		},
	}
}

func (f *fake) siteName(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "gmail.com", gmailSite:
		return gmailSite, true
	}
	return "", false
}

func (f *fake) Sites() []queue.SiteView { return []queue.SiteView{{Site: gmailSite, Queued: 3}} }
func (f *fake) Site(name string) (queue.SiteView, bool) {
	s, ok := f.siteName(name)
	return queue.SiteView{Site: s, Queued: 3}, ok
}
func (f *fake) Explain(ctx context.Context, target string) queue.Explanation {
	return queue.Explanation{Target: target, Verdict: "nothing waits"}
}
func (f *fake) Totals() queue.Totals          { return queue.Totals{Queued: 3, Sites: 1} }
func (f *fake) LocalProblem() (bool, string)  { return false, "" }
func (f *fake) ReloadFile() ([]string, error) { return nil, nil }
func (f *fake) Domains() []dkim.DomainStatus {
	day := dkim.SigningCounts{Signed: 5, Unsigned: map[string]uint64{"key_not_active": 2}}
	return []dkim.DomainStatus{{Domain: "example.com", Status: day.Status(), SignedBy: "d=example.com s=s1 a=rsa-sha256",
		LastHour: dkim.SigningCounts{Signed: 1}, LastDay: day, LastMessage: time.Unix(1700000000, 0).UTC()}}
}
func (f *fake) action(site, what string) error {
	if _, ok := f.siteName(site); !ok {
		// The queue's own error, from a queue that knows no site.
		return new(queue.Queue).Suspend(site, 0, "")
	}
	f.mu.Lock()
	f.actions = append(f.actions, what+" "+site)
	f.mu.Unlock()
	return nil
}
func (f *fake) Suspend(site string, d time.Duration, who string) error {
	return f.action(site, fmt.Sprintf("suspend(%s,%s)", d, who))
}
func (f *fake) Resume(site, who string) error { return f.action(site, "resume") }
func (f *fake) Retry(site, who string) (int, error) {
	return 7, f.action(site, "retry")
}
func (f *fake) Purge(site, who string) (int, error) { return 3, f.action(site, "purge") }
func (f *fake) SetSuspended(kind, name, who string, on bool) (int, error) {
	if name == "bad/name" {
		return 0, queue.ErrBadSuspension
	}
	return 4, nil
}
func (f *fake) InjectMessage(ctx context.Context, req MessageRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.injected = append(f.injected, req)
	return "m1", nil
}

func (f *fake) CreateDelivery(ctx context.Context, req DeliveryRequest) (DeliveryView, error) {
	if _, err := campaign.Compile(req.Template); err != nil {
		return DeliveryView{}, &FieldError{Field: "template", Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id := fmt.Sprintf("d%d", len(f.deliveries)+1)
	v := &DeliveryView{ID: id, Name: req.Name, Sender: req.From, Total: len(req.Recipients), Done: len(req.Recipients) == 0}
	v.Counts.Queued = v.Total
	f.deliveries[id] = v
	return *v, nil
}

func (f *fake) AddRecipients(ctx context.Context, id, contentType string, body io.Reader) (AddResult, error) {
	f.mu.Lock()
	v := f.deliveries[id]
	f.mu.Unlock()
	if v == nil {
		return AddResult{}, &NotFoundError{What: "delivery " + id}
	}
	read := campaign.ReadNDJSON
	switch {
	case strings.HasPrefix(contentType, "text/csv"):
		read = campaign.ReadCSV
	case strings.HasPrefix(contentType, "application/x-ndjson"), contentType == "":
	default:
		return AddResult{}, &FieldError{Field: "Content-Type", Err: errors.New("send text/csv or application/x-ndjson")}
	}
	var res AddResult
	err := read(body, func(campaign.Recipient) error { res.Accepted++; return nil })
	f.mu.Lock()
	v.Total += res.Accepted
	v.Counts.Queued += res.Accepted
	f.mu.Unlock()
	return res, err
}

func (f *fake) Deliveries() []DeliveryView {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []DeliveryView
	for _, v := range f.deliveries {
		out = append(out, *v)
	}
	return out
}

func (f *fake) Delivery(id string) (DeliveryView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.deliveries[id]
	if !ok {
		return DeliveryView{}, false
	}
	return *v, true
}

func (f *fake) CancelDelivery(id, who string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.deliveries[id]
	if !ok {
		return 0, &NotFoundError{What: "delivery " + id}
	}
	n := v.Counts.Queued
	v.Counts.Cancelled += n
	v.Counts.Queued = 0
	return n, nil
}

// deps are the parts of the API, all fakes but the quarantine.
func (f *fake) deps() Deps {
	return Deps{Queue: f, Deliveries: f, Quarantine: f.Store, Node: f, Bounces: fakeTop{f}, DKIM: f,
		TLS: fakeTLS{}, TLSReports: f, Now: f.clock.now}
}

type fakeTop struct{ f *fake }

func (t fakeTop) List(site string, n int) []bounce.TopEntry {
	var out []bounce.TopEntry
	for _, e := range t.f.top {
		if site == "" || e.Site == site {
			out = append(out, e)
		}
	}
	return out[:min(n, len(out))]
}

// request is one call to the API.
type request struct {
	method, path, body, ctype string
	token                     string // "" = the right one; "-" = none
}

type response struct {
	code int
	body string
	hdr  http.Header
}

func (r response) field() string {
	var e Error
	json.Unmarshal([]byte(r.body), &e)
	return e.Field
}

func call(t *testing.T, h http.Handler, rq request) response {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req := httptest.NewRequest(rq.method, rq.path, body)
	switch rq.token {
	case "":
		req.Header.Set("Authorization", "Bearer "+testToken)
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.ctype != "" {
		req.Header.Set("Content-Type", rq.ctype)
	} else if rq.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return response{w.Code, w.Body.String(), w.Header()}
}

func newTestHandler(t *testing.T) (http.Handler, *fake) {
	f := newFake(t)
	return Handler(f.deps(), testToken, 1000), f
}

// seed puts a few entries in the quarantine at known times.
func seed(t *testing.T, f *fake) {
	t.Helper()
	t0 := f.clock.now()
	hard := quarantine.Failure{Code: 550, Enhanced: "5.1.1", Text: "user unknown", Reason: "user_unknown", Class: "hard", Site: gmailSite}
	full := quarantine.Failure{Code: 552, Enhanced: "5.2.2", Text: "mailbox full", Reason: "mailbox_full", Class: "hard", Site: gmailSite}
	for i, a := range []string{"a@gmail.com", "b@gmail.com", "c@yahoo.com"} {
		f.clock.set(t0.Add(time.Duration(i) * time.Hour))
		fl := hard
		if i == 2 {
			fl = full
		}
		if _, _, err := f.Failure(a, fl); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.set(t0.Add(3 * time.Hour))
	if err := f.Add("spam@trap.example", quarantine.Denylisted, "trap"); err != nil {
		t.Fatal(err)
	}
	f.clock.set(t0.Add(4 * time.Hour))
}

// TestRoutes calls every route once as it should be called, and checks
// that the table covers Routes().
func TestRoutes(t *testing.T) {
	h, f := newTestHandler(t)
	seed(t, f)
	tpl := `{"from":"News <news@example.com>","subject":"Hi {{.first}}","text":"Hello"}`
	cases := []struct {
		route string // the pattern, to check coverage
		req   request
		code  int
		want  string // a substring of the body
	}{
		{"GET /api/v1/status", request{method: "GET", path: "/api/v1/status"}, 200, `"queued": 3`},
		{"GET /api/v1/queues", request{method: "GET", path: "/api/v1/queues"}, 200, gmailSite},
		{"GET /api/v1/queues/{site}", request{method: "GET", path: "/api/v1/queues/gmail.com"}, 200, gmailSite},
		{"GET /api/v1/explain", request{method: "GET", path: "/api/v1/explain?address=a@gmail.com"}, 200, "nothing waits"},
		{"POST /api/v1/sites/{site}/{action}", request{method: "POST", path: "/api/v1/sites/gmail.com/suspend", body: `{"for":"30m","by":"ops"}`}, 200, `"action": "suspend"`},
		{"GET /api/v1/sites/{site}/flow", request{method: "GET", path: "/api/v1/sites/gmail.com/flow"}, 200, `"changes": []`},
		{"GET /api/v1/timeline", request{method: "GET", path: "/api/v1/timeline?minutes=5"}, 200, `"minute"`},
		{"POST /api/v1/reload", request{method: "POST", path: "/api/v1/reload"}, 200, "reloaded"},
		{"POST /api/v1/messages", request{method: "POST", path: "/api/v1/messages", body: `{"from":"a@example.com","to":["b@example.org"],"subject":"s","text":"t"}`}, 202, `"id": "m1"`},
		{"POST /api/v1/deliveries", request{method: "POST", path: "/api/v1/deliveries", body: `{"from":"news@example.com","name":"n","template":` + tpl + `}`}, 201, `"id": "d2"`},
		{"GET /api/v1/deliveries", request{method: "GET", path: "/api/v1/deliveries"}, 200, `"spring"`},
		{"GET /api/v1/deliveries/{id}", request{method: "GET", path: "/api/v1/deliveries/d1"}, 200, `"user_unknown": 1`},
		{"POST /api/v1/deliveries/{id}/recipients", request{method: "POST", path: "/api/v1/deliveries/d1/recipients", body: "email,first\nx@example.org,X\ny@example.org,Y\n", ctype: "text/csv"}, 200, `"accepted": 2`},
		{"POST /api/v1/deliveries/{id}/cancel", request{method: "POST", path: "/api/v1/deliveries/d1/cancel"}, 200, `"cancelled": 6`},
		{"POST /api/v1/deliveries/{id}/suspend", request{method: "POST", path: "/api/v1/deliveries/d1/suspend"}, 200, `"suspended": true`},
		{"POST /api/v1/deliveries/{id}/resume", request{method: "POST", path: "/api/v1/deliveries/d1/resume"}, 200, `"recipients": 4`},
		{"POST /api/v1/tenants/{name}/suspend", request{method: "POST", path: "/api/v1/tenants/acme/suspend"}, 200, `"kind": "tenant"`},
		{"POST /api/v1/tenants/{name}/resume", request{method: "POST", path: "/api/v1/tenants/acme/resume"}, 200, `"suspended": false`},
		{"GET /api/v1/quarantine", request{method: "GET", path: "/api/v1/quarantine?status=quarantined&domain=gmail.com"}, 200, `"a@gmail.com"`},
		{"POST /api/v1/quarantine/import", request{method: "POST", path: "/api/v1/quarantine/import?note=list", body: "address\nx@example.org\n# comment\ny@example.org\n", ctype: "text/csv"}, 200, `"imported": 2`},
		{"POST /api/v1/quarantine/release", request{method: "POST", path: "/api/v1/quarantine/release", body: `{"reason":"mailbox_full","note":"incident"}`}, 200, `"released": 1`},
		{"GET /api/v1/quarantine/{address}", request{method: "GET", path: "/api/v1/quarantine/a@Gmail.COM"}, 200, `"status": "quarantined"`},
		{"PUT /api/v1/quarantine/{address}", request{method: "PUT", path: "/api/v1/quarantine/new@example.org", body: `{"status":"allowlisted","note":"seed"}`}, 200, `"status": "allowlisted"`},
		{"DELETE /api/v1/quarantine/{address}", request{method: "DELETE", path: "/api/v1/quarantine/b@gmail.com"}, 204, ""},
		{"GET /api/v1/bounces", request{method: "GET", path: "/api/v1/bounces?site=gmail.com&n=5"}, 200, `"reason": "user_unknown"`},
		{"GET /api/v1/dkim", request{method: "GET", path: "/api/v1/dkim"}, 200, `"status": "mixed"`},
		{"GET /api/v1/openapi.json", request{method: "GET", path: "/api/v1/openapi.json"}, 200, `"openapi": "3.0`},
		{"GET /api/v1/tlsrpt", request{method: "GET", path: "/api/v1/tlsrpt"}, 200, `"policy-type": "no-policy-found"`},
		{"GET /api/v1/tls", request{method: "GET", path: "/api/v1/tls"}, 200, `"policy": "sts enforce"`},
		{"GET /api/v1/advise", request{method: "GET", path: "/api/v1/advise?rule=bulk"}, 200, `"kind": "raise"`},
		{"GET /api/v1/warmup", request{method: "GET", path: "/api/v1/warmup"}, 200, `"sources": []`},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.route] = true
		r := call(t, h, c.req)
		if r.code != c.code || !strings.Contains(r.body, c.want) {
			t.Errorf("%s %s: %d %s\nwant %d and %q", c.req.method, c.req.path, r.code, r.body, c.code, c.want)
		}
		if r.code != 204 && !json.Valid([]byte(r.body)) {
			t.Errorf("%s %s: body is not JSON: %s", c.req.method, c.req.path, r.body)
		}
	}
	for _, rt := range Routes() {
		if !covered[rt.Method+" "+rt.Path] {
			t.Errorf("no success test for %s %s", rt.Method, rt.Path)
		}
	}
	if _, ok := f.Get("b@gmail.com"); ok {
		t.Error("b@gmail.com still in the quarantine after DELETE")
	}
	if e, _ := f.Get("c@yahoo.com"); e.Status != quarantine.Valid || !strings.Contains(e.Note, "incident") {
		t.Errorf("c@yahoo.com after release: %+v", e)
	}
	if e, _ := f.Get("y@example.org"); e.Status != quarantine.Denylisted || e.Note != "list" {
		t.Errorf("imported y@example.org: %+v", e)
	}
}

// TestDKIMRoute: GET /api/v1/dkim lists the backend's domains with their
// counts and reasons as JSON; a domain's status sums its mix.
func TestDKIMRoute(t *testing.T) {
	h, _ := newTestHandler(t)
	r := call(t, h, request{method: "GET", path: "/api/v1/dkim"})
	var got struct{ Domains []dkim.DomainStatus }
	if r.code != 200 || json.Unmarshal([]byte(r.body), &got) != nil {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if len(got.Domains) != 1 || got.Domains[0].Domain != "example.com" || got.Domains[0].LastDay.Unsigned["key_not_active"] != 2 ||
		got.Domains[0].LastHour.Signed != 1 || got.Domains[0].SignedBy == "" {
		t.Errorf("domains = %+v", got.Domains)
	}
	for _, c := range []struct {
		c    dkim.SigningCounts
		want string
	}{
		{dkim.SigningCounts{}, "none"},
		{dkim.SigningCounts{Signed: 3}, "signed"},
		{dkim.SigningCounts{ThirdParty: 3}, "third_party"},
		{dkim.SigningCounts{Unsigned: map[string]uint64{"no_key": 1}}, "unsigned"},
		{dkim.SigningCounts{Signed: 1, ThirdParty: 1}, "mixed"},
		{dkim.SigningCounts{ThirdParty: 1, Unsigned: map[string]uint64{"no_key": 1}}, "mixed"},
	} {
		if got := c.c.Status(); got != c.want {
			t.Errorf("%+v.Status() = %s, want %s", c.c, got, c.want)
		}
	}
}

// TestAuth: every route refuses a missing or wrong token, naming the header.
func TestAuth(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, rt := range Routes() {
		path := strings.NewReplacer("{site}", "gmail.com", "{action}", "resume", "{id}", "d1", "{address}", "a@b.c").Replace(rt.Path)
		for _, tok := range []string{"-", "wrong"} {
			r := call(t, h, request{method: rt.Method, path: path, token: tok})
			if r.code != 401 || r.field() != "Authorization" {
				t.Errorf("%s %s with token %q: %d %s", rt.Method, path, tok, r.code, r.body)
			}
		}
	}
	r := call(t, h, request{method: "GET", path: "/api/v1/status", token: "-"})
	if r.hdr.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
}

// TestBadInput: each case is refused with the right code and names the
// field at fault.
func TestBadInput(t *testing.T) {
	h, f := newTestHandler(t)
	seed(t, f)
	big := `{"note":"` + strings.Repeat("x", maxBody) + `"}`
	cases := []struct {
		req   request
		code  int
		field string
	}{
		// Unknown objects.
		{request{method: "GET", path: "/api/v1/queues/nowhere.example"}, 404, "site"},
		{request{method: "POST", path: "/api/v1/sites/nowhere.example/retry"}, 404, "site"},
		{request{method: "POST", path: "/api/v1/sites/gmail.com/explode"}, 404, "action"},
		{request{method: "GET", path: "/api/v1/sites/nowhere.example/flow"}, 404, "site"},
		{request{method: "GET", path: "/api/v1/deliveries/d404"}, 404, "id"},
		{request{method: "POST", path: "/api/v1/deliveries/d404/recipients", body: "{}"}, 404, "id"},
		{request{method: "POST", path: "/api/v1/deliveries/d404/cancel"}, 404, "id"},
		{request{method: "GET", path: "/api/v1/quarantine/nobody@example.org"}, 404, "address"},
		{request{method: "DELETE", path: "/api/v1/quarantine/nobody@example.org"}, 404, "address"},
		{request{method: "GET", path: "/api/v1/bounces?site=nowhere.example"}, 404, "site"},
		{request{method: "GET", path: "/api/v1/nothing"}, 404, ""},
		// Query parameters.
		{request{method: "GET", path: "/api/v1/explain"}, 400, "address"},
		{request{method: "GET", path: "/api/v1/explain?domain=a%20b"}, 400, "domain"},
		{request{method: "GET", path: "/api/v1/timeline?minutes=0"}, 400, "minutes"},
		{request{method: "GET", path: "/api/v1/quarantine?status=gone"}, 400, "status"},
		{request{method: "GET", path: "/api/v1/quarantine?match=(unclosed"}, 400, "match"},
		{request{method: "GET", path: "/api/v1/quarantine?domain=a@b"}, 400, "domain"},
		{request{method: "GET", path: "/api/v1/quarantine?from=yesterday"}, 400, "from"},
		{request{method: "GET", path: "/api/v1/quarantine?to=2024-13-01T00:00:00Z"}, 400, "to"},
		{request{method: "GET", path: "/api/v1/quarantine?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z"}, 400, "to"},
		{request{method: "GET", path: "/api/v1/quarantine?limit=0"}, 400, "limit"},
		{request{method: "GET", path: "/api/v1/quarantine?limit=x"}, 400, "limit"},
		{request{method: "GET", path: "/api/v1/bounces?n=-1"}, 400, "n"},
		{request{method: "POST", path: "/api/v1/quarantine/import?status=with_errors", body: "a@b.c", ctype: "text/plain"}, 400, "status"},
		// Bodies: bad JSON, unknown fields, wrong types, trailing data, bad values.
		{request{method: "POST", path: "/api/v1/sites/gmail.com/suspend", body: `{"for":`}, 400, ""},
		{request{method: "POST", path: "/api/v1/sites/gmail.com/suspend", body: `{"for":"soon"}`}, 400, "for"},
		{request{method: "POST", path: "/api/v1/sites/gmail.com/suspend", body: `{"until":"1h"}`}, 400, "until"},
		{request{method: "POST", path: "/api/v1/messages", body: `{"from":"a@example.com","to":"b@example.org","text":"t"}`}, 400, "to"},
		{request{method: "POST", path: "/api/v1/messages", body: `{"from":"a@example.com","to":["not an address"],"text":"t"}`}, 400, "to"},
		{request{method: "POST", path: "/api/v1/messages", body: `{"from":"a@example.com","to":["b@example.org"],"text":"t","tenant":"ac me"}`}, 400, "tenant"},
		{request{method: "POST", path: "/api/v1/deliveries", body: `{"template":{}}`}, 400, "from"},
		{request{method: "POST", path: "/api/v1/deliveries", body: `{"from":"a@example.com","template":{"from":"a@example.com"}}`}, 400, "template"},
		{request{method: "POST", path: "/api/v1/deliveries", body: `{"from":"a@example.com","template":{"body":"x"}}`}, 400, "body"},
		{request{method: "POST", path: "/api/v1/deliveries/d1/recipients", body: "email\nnot-an-address\n", ctype: "text/csv"}, 400, "recipients"},
		{request{method: "POST", path: "/api/v1/deliveries/d1/recipients", body: "x", ctype: "application/pdf"}, 400, "Content-Type"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{"status":"banned"}`}, 400, "status"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{"status":"with_errors"}`}, 400, "status"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{}`}, 400, "status"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{"status":"valid","why":"x"}`}, 400, "why"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{"status":7}`}, 400, "status"},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `{"status":"valid"} {}`}, 400, ""},
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: `not json`}, 400, ""},
		{request{method: "PUT", path: "/api/v1/quarantine/no-at-sign", body: `{"status":"valid"}`}, 400, "address"},
		{request{method: "DELETE", path: "/api/v1/quarantine/no-at-sign"}, 400, "address"},
		{request{method: "POST", path: "/api/v1/quarantine/import", body: "a@example.org\nbroken\nb@example.org\n", ctype: "text/plain"}, 400, "body"},
		{request{method: "POST", path: "/api/v1/quarantine/import", body: "a@example.org", ctype: "application/json"}, 415, "Content-Type"},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: `{"status":"denylisted","domain":"trap.example"}`}, 400, "status"},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: `{"match":"["}`}, 400, "match"},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: `{"from":"2024-05-01"}`}, 400, "from"},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: `{"note":"everything"}`}, 400, "match"},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: `{"domain":"gmail.com","force":true}`}, 400, "force"},
		// Oversized bodies.
		{request{method: "PUT", path: "/api/v1/quarantine/a@gmail.com", body: big}, 413, ""},
		{request{method: "POST", path: "/api/v1/quarantine/release", body: big}, 413, ""},
		{request{method: "POST", path: "/api/v1/sites/gmail.com/suspend", body: big}, 413, ""},
		{request{method: "POST", path: "/api/v1/messages", body: big}, 413, ""},
		{request{method: "POST", path: "/api/v1/messages", body: `{"from":"a@example.com","to":["b@example.org"],"text":"` + strings.Repeat("x", 2000) + `"}`}, 413, "raw"},
	}
	for _, c := range cases {
		r := call(t, h, c.req)
		if r.code != c.code || r.field() != c.field {
			t.Errorf("%s %s %.60q: %d field %q, want %d field %q\n%s", c.req.method, c.req.path, c.req.body, r.code, r.field(), c.code, c.field, r.body)
		}
	}
	// The same oversized bodies streamed, of no declared length, are cut
	// at the limit as they are read.
	for _, c := range cases {
		if c.req.body != big {
			continue
		}
		req := httptest.NewRequest(c.req.method, c.req.path, io.MultiReader(strings.NewReader(big)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		if req.ContentLength >= 0 {
			t.Fatalf("%s %s: the streamed body has length %d", c.req.method, c.req.path, req.ContentLength)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s streamed oversized body: %d, want 413\n%s", c.req.method, c.req.path, w.Code, w.Body)
		}
	}
	// The refused import wrote nothing and named the bad line.
	r := call(t, h, request{method: "POST", path: "/api/v1/quarantine/import", body: "a@example.org\nbroken\n", ctype: "text/plain"})
	if !strings.Contains(r.body, "line 2") {
		t.Errorf("import error does not name the line: %s", r.body)
	}
	if _, ok := f.Get("a@example.org"); ok {
		t.Error("a refused import wrote an entry")
	}
	if e, _ := f.Get("spam@trap.example"); e.Status != quarantine.Denylisted {
		t.Errorf("denylisted entry changed by refused requests: %+v", e)
	}
}

// TestQuarantineList: filters, dates, pages and counts.
func TestQuarantineList(t *testing.T) {
	h, f := newTestHandler(t)
	seed(t, f)
	list := func(q string) QuarantineList {
		t.Helper()
		r := call(t, h, request{method: "GET", path: "/api/v1/quarantine?" + q})
		if r.code != 200 {
			t.Fatalf("?%s: %d %s", q, r.code, r.body)
		}
		var l QuarantineList
		if err := json.Unmarshal([]byte(r.body), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	addrs := func(l QuarantineList) string {
		var s []string
		for _, e := range l.Entries {
			s = append(s, e.Address)
		}
		return strings.Join(s, " ")
	}
	for _, c := range []struct{ q, want string }{
		{"", "a@gmail.com b@gmail.com c@yahoo.com spam@trap.example"},
		{"status=denylisted", "spam@trap.example"},
		{"reason=mailbox_full", "c@yahoo.com"},
		{"match=" + "user%20unk", "a@gmail.com b@gmail.com"},
		{"domain=GMAIL.com", "a@gmail.com b@gmail.com"},
		{"from=2024-05-01T12:30:00Z&to=2024-05-01T14:30:00Z", "b@gmail.com c@yahoo.com"},
		{"from=2024-05-01T14:30:00%2B02:00", "b@gmail.com c@yahoo.com spam@trap.example"},
	} {
		if got := addrs(list(c.q)); got != c.want {
			t.Errorf("?%s: %q, want %q", c.q, got, c.want)
		}
	}
	// Pages of two: the cursor walks the list, the last page has none.
	p1 := list("limit=2")
	p2 := list("limit=2&after=" + p1.Next)
	if addrs(p1) != "a@gmail.com b@gmail.com" || p1.Next != "b@gmail.com" ||
		addrs(p2) != "c@yahoo.com spam@trap.example" || p2.Next != "" {
		t.Errorf("pages: %q next %q, %q next %q", addrs(p1), p1.Next, addrs(p2), p2.Next)
	}
	if c := p1.Counts; c[quarantine.Quarantined] != 3 || c[quarantine.Denylisted] != 1 || c[quarantine.Valid] != 0 {
		t.Errorf("counts: %v", c)
	}
	// Release between two dates, then the same filter finds nothing.
	r := call(t, h, request{method: "POST", path: "/api/v1/quarantine/release",
		body: `{"status":"quarantined","match":"unknown","from":"2024-05-01T11:00:00Z","to":"2024-05-01T12:30:00Z"}`})
	if r.code != 200 || !strings.Contains(r.body, `"released": 1`) {
		t.Fatalf("release: %d %s", r.code, r.body)
	}
	if got := addrs(list("status=quarantined")); got != "b@gmail.com c@yahoo.com" {
		t.Errorf("after release: %q", got)
	}
}

func TestBounces(t *testing.T) {
	h, _ := newTestHandler(t)
	var res struct {
		Replies []BounceReply `json:"replies"`
	}
	r := call(t, h, request{method: "GET", path: "/api/v1/bounces"})
	if err := json.Unmarshal([]byte(r.body), &res); err != nil || len(res.Replies) != 2 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if b := res.Replies[0]; b.Count != 12 || b.Code != 550 || b.Enhanced != "5.1.1" || b.Reason != "user_unknown" || b.Class != "hard" || b.Site != gmailSite {
		t.Errorf("first reply: %+v", b)
	}
	// A site known only to the bounce statistics is still found by name.
	r = call(t, h, request{method: "GET", path: "/api/v1/bounces?site=mx.example.net&n=1"})
	if r.code != 200 || !strings.Contains(r.body, "try again later") {
		t.Errorf("by site name: %d %s", r.code, r.body)
	}
}

// TestAddressInPath: an address with '/' or '%' travels percent-encoded in
// one path segment.
func TestAddressInPath(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, a := range []struct{ path, addr string }{
		{"a%2Fb@example.org", "a/b@example.org"},
		{"100%25+x@example.org", "100%+x@example.org"},
	} {
		r := call(t, h, request{method: "PUT", path: "/api/v1/quarantine/" + a.path, body: `{"status":"denylisted"}`})
		if r.code != 200 || !strings.Contains(r.body, `"address": "`+a.addr+`"`) {
			t.Errorf("PUT %s: %d %s", a.path, r.code, r.body)
		}
		if r := call(t, h, request{method: "GET", path: "/api/v1/quarantine/" + a.path}); r.code != 200 {
			t.Errorf("GET %s: %d %s", a.path, r.code, r.body)
		}
		if r := call(t, h, request{method: "DELETE", path: "/api/v1/quarantine/" + a.path}); r.code != 204 {
			t.Errorf("DELETE %s: %d %s", a.path, r.code, r.body)
		}
	}
}
