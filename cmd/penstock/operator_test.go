package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/internal/testkv"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/reports"
)

// The operator commands run against api.Handler on a loopback httptest
// server, over parts kept in memory. The quarantine part is a real
// quarantine.Store over an in-memory KV.

const opToken = "op-token"

// opBackend is the daemon as the commands see it. A delivery advances one
// step each time its progress is asked for: 40% delivered, then the rest
// but one, which bounces.
type opBackend struct {
	apiParts // nil: a method not written here panics
	*quarantine.Store

	mu          sync.Mutex
	deliveries  map[string]*api.DeliveryView
	steps       map[string]int
	created     []api.DeliveryRequest
	received    map[string][]campaign.Recipient
	live        map[string]bool // created here: they progress
	stuck       bool            // nothing progresses
	onPoll      func()          // called on each progress request
	top         []bounce.TopEntry
	suspensions []string // SetSuspended calls: "kind name who on"
}

const opSite = "alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com"

func newOpBackend(t *testing.T) *opBackend {
	t.Helper()
	qs, err := quarantine.New(testkv.New(), quarantine.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	return &opBackend{
		Store: qs,
		deliveries: map[string]*api.DeliveryView{
			"d00000000000000a1": {ID: "d00000000000000a1", Name: "a spring newsletter whose name is much too long for any table", Sender: "news@example.com",
				Created: created, Total: 1234567, Counts: api.Counts{Queued: 34567, Delivered: 1190000, Bounced: 10000},
				BouncedByReason: map[string]int{"user_unknown": 9000, "mailbox_full": 1000}, RatePerMinute: 5123.4,
				ByStatus: map[string]int{"Messages queued (hourly quota met)": 30000, "Messages queued (retry scheduled)": 4567}},
			"d00000000000000a2": {ID: "d00000000000000a2", Name: "done", Sender: "news@example.com", Created: created,
				Total: 10, Counts: api.Counts{Delivered: 10}, Done: true},
		},
		steps:    map[string]int{},
		live:     map[string]bool{},
		received: map[string][]campaign.Recipient{},
		top: []bounce.TopEntry{
			{Site: opSite, Code: 550, Enhanced: "5.1.1", Text: "the email account that you tried to reach does not exist. please try double-checking the recipient's email address for typos", Reason: bounce.UserUnknown, Class: bounce.Hard, Count: 1234},
			{Site: opSite, Code: 421, Enhanced: "4.7.28", Text: "our system has detected an unusual rate of unsolicited mail originating from your ip address #", Reason: bounce.Unknown, Class: bounce.Soft, Count: 56},
			{Site: "mx.example.net", Code: 451, Text: "try again later", Reason: bounce.ErrorIgnored, Class: bounce.Ignored, Count: 3},
		},
	}
}

func (b *opBackend) Site(name string) (queue.SiteView, bool) {
	if name == "gmail.com" || name == opSite {
		return queue.SiteView{Site: opSite}, true
	}
	return queue.SiteView{}, false
}

func (b *opBackend) Bounces(site string, n int) []bounce.TopEntry {
	var out []bounce.TopEntry
	for _, e := range b.top {
		if site == "" || e.Site == site {
			out = append(out, e)
		}
	}
	return out[:min(n, len(out))]
}

func (b *opBackend) Reports() reports.Stats {
	return reports.Stats{Acted: map[string]uint64{"verp": 7}, Ignored: map[string]uint64{"no_verp": 1, "bad_verp": 1, "auto_reply": 3},
		Unverified: 2, Recent: []reports.Unverified{
			{Time: time.Date(2026, 12, 7, 1, 2, 3, 0, time.UTC), Remote: "192.0.2.9", Reason: "bad_verp", Kind: "dsn", Named: 5000, To: "b+0000000000000001.0.aaaaaaaa@bounces.example.com"},
			{Time: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC), Remote: "192.0.2.8", Reason: "no_verp", Kind: "arf", Named: 1, To: "postmaster@bounces.example.com"}}}
}

func (b *opBackend) CreateDelivery(ctx context.Context, req api.DeliveryRequest) (api.DeliveryView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := fmt.Sprintf("d%016x", len(b.created)+1)
	b.created = append(b.created, req)
	v := &api.DeliveryView{ID: id, Name: req.Name, Sender: req.From, Created: time.Now(), Done: true}
	b.deliveries[id] = v
	b.live[id] = true
	return *v, nil
}

func (b *opBackend) AddRecipients(ctx context.Context, id, ctype string, body io.Reader) (api.AddResult, error) {
	b.mu.Lock()
	v := b.deliveries[id]
	b.mu.Unlock()
	if v == nil {
		return api.AddResult{}, &api.NotFoundError{What: "delivery " + id}
	}
	read := campaign.ReadNDJSON
	if strings.HasPrefix(ctype, "text/csv") {
		read = campaign.ReadCSV
	}
	var got []campaign.Recipient
	err := read(body, func(r campaign.Recipient) error { got = append(got, r); return nil })
	b.mu.Lock()
	defer b.mu.Unlock()
	b.received[id] = append(b.received[id], got...)
	sup := 0
	for _, r := range got {
		if s, _ := b.Suppressed(r.Address); s {
			sup++
		}
	}
	v.Total += len(got)
	v.Counts.Suppressed += sup
	v.Counts.Queued += len(got) - sup
	v.Done = v.Counts.Queued == 0
	return api.AddResult{Accepted: len(got) - sup, Suppressed: sup}, err
}

func (b *opBackend) Deliveries() []api.DeliveryView {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.DeliveryView
	for _, v := range b.deliveries {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (b *opBackend) Delivery(id string) (api.DeliveryView, bool) {
	b.mu.Lock()
	onPoll := b.onPoll
	v, ok := b.deliveries[id]
	if ok && b.live[id] && !v.Done && !b.stuck {
		b.steps[id]++
		c := &v.Counts
		switch b.steps[id] {
		case 1:
			n := c.Queued * 4 / 10
			c.Delivered += n
			c.Queued -= n
			v.RatePerMinute = float64(n) * 60
			eta := time.Now().Add(90 * time.Second)
			v.ETA = &eta
		default:
			c.Delivered += c.Queued - 1
			c.Bounced++
			v.BouncedByReason = map[string]int{"user_unknown": 1}
			c.Queued = 0
			v.Done = true
			v.ETA = nil
		}
	}
	var out api.DeliveryView
	if ok {
		out = *v
	}
	b.mu.Unlock()
	if onPoll != nil {
		onPoll()
	}
	return out, ok
}

func (b *opBackend) SetSuspended(kind, name, who string, on bool) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.suspensions = append(b.suspensions, fmt.Sprintf("%s %s %s %v", kind, name, who, on))
	if on {
		return 0, nil
	}
	return 7, nil
}

func (b *opBackend) CancelDelivery(id, who string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.deliveries[id]
	if !ok {
		return 0, &api.NotFoundError{What: "delivery " + id}
	}
	n := v.Counts.Queued
	v.Counts.Cancelled, v.Counts.Queued, v.Done = n, 0, true
	return n, nil
}

// apiParts are the API's required parts but the quarantine, for fakes to
// embed.
type apiParts interface {
	api.Queue
	api.Deliveries
	api.Node
}

// opTop serves the backend's most frequent replies as bounce.Top does.
type opTop struct{ b *opBackend }

func (t opTop) List(site string, n int) []bounce.TopEntry { return t.b.Bounces(site, n) }

// opServer starts the API on loopback and returns the backend and the
// flags that point a command at it.
func opServer(t *testing.T) (*opBackend, []string) {
	t.Helper()
	b := newOpBackend(t)
	srv := httptest.NewServer(api.Handler(api.Deps{Queue: b, Deliveries: b, Quarantine: b.Store, Node: b, Bounces: opTop{b},
		DKIM: b, Reports: b, TLSReports: b}, opToken, 1<<20))
	t.Cleanup(srv.Close)
	return b, []string{"-api", srv.URL, "-token", opToken}
}

// runOp runs penstock with args and checks that human output fits in 80
// columns.
func runOp(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	if !slices.Contains(args, "-json") {
		checkWidth(t, strings.Join(args[:min(2, len(args))], " "), out.String(), strings.Repeat("x", 40)+"@", "google.com,gmail-smtp-in")
	}
	return code, out.String(), errb.String()
}

// checkWidth: lines fit tableWidth, but for those that carry a name
// longer than the table leaves it (names are never cut).
func checkWidth(t *testing.T, what, out string, longNames ...string) {
	t.Helper()
	for _, l := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if slices.ContainsFunc(longNames, func(n string) bool { return strings.Contains(out, n) }) {
			return // the table is as wide as its longest name
		}
		if n := utf8.RuneCountInString(l); n > tableWidth {
			t.Errorf("%s: line of %d columns:\n%s", what, n, l)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const testTemplate = `{"from":"News <news@example.com>","subject":"Hello {{.first}}","text":"Hi {{.first}}","html":"<p>Hi {{.first}}</p>","list_unsubscribe":"https://example.com/u?r={{.recipient}}"}`

func testOpts(tty bool) sendOpts {
	return sendOpts{tty: tty, width: 80, poll: time.Millisecond, every: time.Hour, now: time.Now}
}

func runSendTest(t *testing.T, ctx context.Context, tty bool, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hung follow fails the test
	defer cancel()
	var out, errb bytes.Buffer
	code := runSend(ctx, args, &out, &errb, testOpts(tty))
	if !slices.Contains(args, "-json") {
		checkWidth(t, "send", out.String())
	}
	return code, out.String(), errb.String()
}

// TestSendFollowsToDone: send creates the delivery from the files,
// streams the list, follows it to done and ends with the summary.
func TestSendFollowsToDone(t *testing.T) {
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			b, flags := opServer(t)
			if err := b.Add("gone@example.org", quarantine.Denylisted, ""); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			tpl := writeFile(t, dir, "spring.json", testTemplate)
			var csv strings.Builder
			csv.WriteString("email,first\n")
			for i := range 99 {
				fmt.Fprintf(&csv, "u%d@example.org,U%d\n", i, i)
			}
			csv.WriteString("gone@example.org,Gone\n")
			rcpt := writeFile(t, dir, "list.csv", csv.String())

			code, out, errs := runSendTest(t, context.Background(), tty, append(flags, "-template", tpl, "-recipients", rcpt, "-pool", "marketing")...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, out, errs)
			}
			if len(b.created) != 1 {
				t.Fatalf("%d deliveries created", len(b.created))
			}
			req := b.created[0]
			if req.Name != "spring" || req.From != "news@example.com" || req.Pool != "marketing" || req.Template.Subject != "Hello {{.first}}" {
				t.Errorf("delivery request: %+v", req)
			}
			got := b.received[fmt.Sprintf("d%016x", 1)]
			if len(got) != 100 || got[5].Vars["first"] != "U5" {
				t.Errorf("%d recipients received, [5] = %+v", len(got), got[min(5, len(got)-1)])
			}
			for _, want := range []string{
				"99 queued, 1 suppressed",
				`"spring" done in`,
				"total:                     100\n",
				"delivered:                  98   98.0%\n",
				"bounced:                     1    1.0%\n",
				"  user_unknown               1\n",
				"suppressed:                  1    1.0%\n",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if tty {
				if !strings.Contains(out, "\r[================") || !strings.Contains(out, "100/100 100%") || !strings.Contains(out, "ETA 1m30s") || !strings.Contains(out, "] 40/100 40%  ETA 1m30s  2,340/min  dlv 39  bnc 0  sup 1") {
					t.Errorf("no progress bar:\n%q", out)
				}
			} else if strings.Contains(out, "\r") || !strings.Contains(out, " 40/100 40%  ETA 1m30s  2,340/min  delivered 39  bounced 0  suppressed 1\n") {
				t.Errorf("progress lines off a terminal:\n%q", out)
			}
		})
	}
}

func TestSendJSONAndNoWait(t *testing.T) {
	b, flags := opServer(t)
	dir := t.TempDir()
	tpl := writeFile(t, dir, "t.json", testTemplate)
	rcpt := writeFile(t, dir, "r.ndjson", `{"address":"a@example.org","vars":{"first":"A"}}`+"\n"+`{"address":"b@example.org"}`+"\n")
	code, out, errs := runSendTest(t, context.Background(), false, append(flags, "-template", tpl, "-recipients", rcpt, "-json", "-from", "bounces@example.com", "-name", "n1")...)
	var v api.DeliveryView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || !v.Done || v.Counts.Delivered != 1 || v.Counts.Bounced != 1 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if b.created[0].From != "bounces@example.com" || b.created[0].Name != "n1" {
		t.Errorf("request: %+v", b.created[0])
	}
	b.stuck = true
	code, out, _ = runSendTest(t, context.Background(), false, append(flags, "-template", tpl, "-recipients", rcpt, "-no-wait")...)
	if code != 0 || !strings.Contains(out, "2 queued") || !strings.Contains(out, "penstock deliveries d0000000000000002") {
		t.Errorf("-no-wait: exit %d\n%s", code, out)
	}
}

// TestSendInterrupted: Ctrl-C stops following; the delivery is not
// cancelled.
func TestSendInterrupted(t *testing.T) {
	b, flags := opServer(t)
	b.stuck = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.onPoll = cancel // the interrupt comes while following
	dir := t.TempDir()
	code, out, errs := runSendTest(t, ctx, true, append(flags, "-template", writeFile(t, dir, "t.json", testTemplate),
		"-recipients", writeFile(t, dir, "r.csv", "email\na@example.org\n"))...)
	if code != 130 || !strings.Contains(errs, "delivery d0000000000000001 goes on") {
		t.Errorf("exit %d\n%s\n%s", code, out, errs)
	}
	if v, _ := b.deliveries["d0000000000000001"]; v.Counts.Cancelled != 0 || v.Counts.Queued != 1 {
		t.Errorf("the delivery changed: %+v", v)
	}
}

// TestSendRefuses: bad input is found before anything is created.
func TestSendRefuses(t *testing.T) {
	b, flags := opServer(t)
	dir := t.TempDir()
	tpl := writeFile(t, dir, "t.json", testTemplate)
	good := writeFile(t, dir, "r.csv", "email\na@example.org\n")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-template", tpl}, 2, "usage"},
		{[]string{"-template", tpl, "-recipients", good, "extra"}, 2, "usage"},
		{[]string{"-template", tpl, "-recipients", writeFile(t, dir, "r.csv2", "")}, 1, "name the list .csv or .ndjson"},
		{[]string{"-template", tpl, "-recipients", writeFile(t, dir, "bad.csv", "email\na@example.org\nnot-an-address\n")}, 1, "line 3"},
		{[]string{"-template", tpl, "-recipients", writeFile(t, dir, "empty.csv", "email\n")}, 1, "no recipients"},
		{[]string{"-template", tpl, "-recipients", writeFile(t, dir, "bad.ndjson", `{"address":"a@example.org","name":"x"}`)}, 1, "line 1"},
		{[]string{"-template", writeFile(t, dir, "u.json", `{"from":"a@example.com","subjekt":"x"}`), "-recipients", good}, 1, `unknown field "subjekt"`},
		{[]string{"-template", writeFile(t, dir, "s.json", `{"from":"a@example.com","text":"x"}`), "-recipients", good}, 1, "subject: missing"},
		{[]string{"-template", writeFile(t, dir, "f.json", `{"from":"News <news+{{.x}}@example.com>","subject":"s","text":"x"}`), "-recipients", good}, 1, "give -from"},
		{[]string{"-template", filepath.Join(dir, "missing.json"), "-recipients", good}, 1, "no such file"},
	} {
		code, out, errs := runSendTest(t, context.Background(), false, append(slices.Clone(flags), c.args...)...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, want %d and %q\n%s%s", c.args, code, c.code, c.want, out, errs)
		}
	}
	if len(b.created) != 0 {
		t.Errorf("%d deliveries created from bad input", len(b.created))
	}
	// The daemon refuses: the error says so.
	code, _, errs := runSendTest(t, context.Background(), false, "-api", "http://127.0.0.1:1", "-token", "x", "-template", tpl, "-recipients", good)
	if code != 1 || !strings.Contains(errs, "cannot reach penstock") {
		t.Errorf("no daemon: exit %d %s", code, errs)
	}
	code, _, errs = runSendTest(t, context.Background(), false, append([]string{"-template", tpl, "-recipients", good}, flags[0], flags[1], "-token", "wrong")...)
	if code != 1 || !strings.Contains(errs, "wrong bearer token") {
		t.Errorf("wrong token: exit %d %s", code, errs)
	}
}

// suspend and resume -tenant / -delivery reach the API's routes; a site
// and -tenant together, or neither, are refused.
func TestSuspendTenantAndDeliveryCommands(t *testing.T) {
	b, flags := opServer(t)
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"suspend", "-tenant", "acme"}, "tenant acme: suspend done"},
		{[]string{"resume", "-tenant", "acme"}, "tenant acme: resume done (7 recipients made due)"},
		{[]string{"suspend", "-delivery", "d-42"}, "delivery d-42: suspend done"},
	} {
		code, out, errs := runOp(t, append(tc.args, flags...)...)
		if code != 0 || !strings.Contains(out, tc.out) {
			t.Errorf("%v: exit %d\n%s%s", tc.args, code, out, errs)
		}
	}
	b.mu.Lock()
	got := strings.Join(b.suspensions, "; ")
	b.mu.Unlock()
	if got != "tenant acme api true; tenant acme api false; delivery d-42 api true" {
		t.Errorf("backend saw %q", got)
	}
	for _, bad := range [][]string{{"suspend", "gmail.com", "-tenant", "acme"}, {"suspend"}, {"resume", "-tenant", "a", "-delivery", "b"},
		{"suspend", "-tenant", "acme", "-for", "1h"}} {
		if code, _, _ := runOp(t, append(bad, flags...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

func TestDeliveriesCommand(t *testing.T) {
	_, flags := opServer(t)
	code, out, errs := runOp(t, append([]string{"deliveries"}, flags...)...)
	if code != 0 || !strings.Contains(out, "d00000000000000a1  a spring") || !strings.Contains(out, "1,234,567") || !strings.Contains(out, "…") {
		t.Errorf("list: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runOp(t, append([]string{"deliveries", "d00000000000000a1"}, flags...)...)
	for _, want := range []string{"total:               1,234,567\n", "delivered:           1,190,000   96.4%\n", "  user_unknown           9,000\n",
		"                        30,000  Messages queued (hourly quota met)\n", "rate:              5,123/min\n", "done:              no\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("detail lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runOp(t, append([]string{"deliveries", "d00000000000000a1", "-json"}, flags...)...)
	var v api.DeliveryView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Total != 1234567 {
		t.Errorf("-json: %d %s", code, out)
	}
	code, out, _ = runOp(t, append([]string{"deliveries", "-cancel", "d00000000000000a1"}, flags...)...)
	if code != 0 || !strings.Contains(out, "34567 queued recipients dropped") {
		t.Errorf("-cancel: %d %s", code, out)
	}
	code, _, errs = runOp(t, append([]string{"deliveries", "d404"}, flags...)...)
	if code != 1 || !strings.Contains(errs, "unknown delivery d404 (HTTP 404)") {
		t.Errorf("unknown: %d %s", code, errs)
	}
	if code, _, _ = runOp(t, append([]string{"deliveries", "a", "b"}, flags...)...); code != 2 {
		t.Errorf("two ids: exit %d", code)
	}
}

func TestQuarantineCommands(t *testing.T) {
	b, flags := opServer(t)
	q := func(args ...string) (int, string, string) {
		t.Helper()
		return runOp(t, append(append([]string{"quarantine"}, args...), flags...)...)
	}
	long := strings.Repeat("x", 40) + "@example.org"
	if _, _, err := b.Failure(long, quarantine.Failure{Code: 550, Enhanced: "5.1.1", Text: "5.1.1 The email account that you tried to reach does not exist. Please try double-checking", Reason: "user_unknown", Class: "hard"}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := q("add", "-note", "complained by phone", "a@example.org"); code != 0 || out != "a@example.org: denylisted\n" {
		t.Errorf("add: %d %q %s", code, out, errs)
	}
	if code, out, _ := q("add", "seed@example.org", "-status", "allowlisted"); code != 0 || !strings.Contains(out, "allowlisted") {
		t.Errorf("add, flag last: %d %s", code, out)
	}
	dir := t.TempDir()
	if code, out, errs := q("import", "-status", "quarantined", "-note", "old list", writeFile(t, dir, "l.csv", "address,name\nb@example.net,B\nc@example.net,C\n")); code != 0 || !strings.Contains(out, "imported 2 addresses as quarantined") {
		t.Errorf("import: %d %s %s", code, out, errs)
	}
	if code, _, errs := q("import", writeFile(t, dir, "bad.txt", "d@example.net\nbroken\n")); code != 1 || !strings.Contains(errs, "line 2") {
		t.Errorf("bad import: %d %s", code, errs)
	}
	code, out, _ := q("list")
	for _, want := range []string{"ADDRESS", "UPDATED", strings.Repeat("x", 40) + "@example.org  quarantined    1  user_unknown", "a@example.org", "b@example.net", "quarantine: 3 quarantined, 1 denylisted, 1 allowlisted\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if code, out, _ := q("list", "-domain", "example.net", "-limit", "1"); code != 0 || !strings.Contains(out, "b@example.net") || strings.Contains(out, "c@example.net") || !strings.Contains(out, "more: add -after b@example.net") {
		t.Errorf("page: %d\n%s", code, out)
	}
	today := time.Now().Format("2006-01-02")
	if code, out, _ := q("list", "-status", "denylisted", "-from", today, "-json"); code != 0 || !strings.Contains(out, `"address": "a@example.org"`) || strings.Contains(out, "b@example.net") {
		t.Errorf("filtered -json: %d\n%s", code, out)
	}
	if code, _, errs := q("list", "-from", "last tuesday"); code != 1 || !strings.Contains(errs, "-from") {
		t.Errorf("bad date: %d %s", code, errs)
	}
	if code, _, errs := q("list", "-match", "(x"); code != 1 || !strings.Contains(errs, "HTTP 400") {
		t.Errorf("bad regexp: %d %s", code, errs)
	}
	code, out, _ = q("show", "a@example.org")
	for _, want := range []string{"status:      denylisted", "note:        complained by phone", "history:", "valid → denylisted: operator: complained by phone"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = q("show", long) // long lines wrap within 80 columns
	if code != 0 || !strings.Contains(out, "last reply:  550 5.1.1 5.1.1 The email account that you tried to reach does not\n             exist.") {
		t.Errorf("show, wrapped:\n%s", out)
	}
	if code, _, errs := q("show", "nobody@example.org"); code != 1 || !strings.Contains(errs, "HTTP 404") {
		t.Errorf("show unknown: %d %s", code, errs)
	}
	if code, out, _ := q("release", "-domain", "example.net", "-dry-run"); code != 0 || !strings.Contains(out, "would release 2 addresses, e.g. b@example.net, c@example.net") {
		t.Errorf("dry run: %d %s", code, out)
	}
	if code, out, _ := q("release", "-domain", "example.net", "-note", "incident 42"); code != 0 || !strings.Contains(out, "released 2 addresses") {
		t.Errorf("release: %d %s", code, out)
	}
	if e, _ := b.Get("b@example.net"); e.Status != quarantine.Valid || e.Note != "incident 42" {
		t.Errorf("released entry: %+v", e)
	}
	if code, _, errs := q("release"); code != 1 || !strings.Contains(errs, "at least one of") {
		t.Errorf("release without filter: %d %s", code, errs)
	}
	if code, out, _ := q("remove", "a@example.org"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("remove: %d %s", code, out)
	}
	if code, _, errs := q("remove", "a@example.org"); code != 1 || !strings.Contains(errs, "HTTP 404") {
		t.Errorf("remove twice: %d %s", code, errs)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"show"}, {"add"}, {"remove", "a", "b"}, {"list", "extra"}} {
		if code, _, _ := q(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func TestBouncesCommand(t *testing.T) {
	_, flags := opServer(t)
	code, out, errs := runOp(t, append([]string{"bounces"}, flags...)...)
	for _, want := range []string{"COUNT  CODE  ENHANCED  REASON", "1,234  550   5.1.1     user_unknown   hard     alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com\n       the email account that you tried to reach does not exist. please try dou…\n", "SITE", "1 with reason unknown"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("lacks %q: %d\n%s%s", want, code, out, errs)
		}
	}
	for _, want := range []string{"reports to the bounce listener: 7 acted on, 5 ignored\n  acted on: verp 7\n  ignored:  auto_reply 3, bad_verp 1, no_verp 1\n",
		"2 unverified (no valid VERP", "2026-12-07 01:02:03  192.0.2.9  bad_verp  dsn    5000  b+0000000000000001"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runOp(t, append([]string{"bounces", "-site", "gmail.com", "-n", "1"}, flags...)...)
	if code != 0 || !strings.Contains(out, "site: "+opSite) || strings.Contains(out, "4.7.28") || strings.Contains(out, "SITE") {
		t.Errorf("one site: %d\n%s", code, out)
	}
	code, out, _ = runOp(t, append([]string{"bounces", "-json"}, flags...)...)
	var res struct {
		Replies []api.BounceReply `json:"replies"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Replies) != 3 || res.Replies[1].Enhanced != "4.7.28" {
		t.Errorf("-json: %d %s", code, out)
	}
	if code, _, errs := runOp(t, append([]string{"bounces", "-site", "nowhere.example"}, flags...)...); code != 1 || !strings.Contains(errs, "unknown site") {
		t.Errorf("unknown site: %d %s", code, errs)
	}
}

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  string
		json bool
	}{
		{[]string{"a", "-json", "b"}, "a b", true},
		{[]string{"-json", "a"}, "a", true},
		{[]string{"a", "--", "-json"}, "a -json", false},
		{nil, "", false},
	} {
		var out bytes.Buffer
		fs := newQFlags("t", &out)
		pos, ok := parseArgs(fs.fs, c.args)
		if !ok || strings.Join(pos, " ") != c.pos || *fs.json != c.json {
			t.Errorf("%q: %q %v json=%v", c.args, pos, ok, *fs.json)
		}
	}
}

func TestTableFits(t *testing.T) {
	var out bytes.Buffer
	rows := [][]string{{strings.Repeat("a", 100), "x", strings.Repeat("é", 200)}}
	writeTable(&out, []column{{name: "A", max: 30}, {name: "B"}, {name: "C", flex: true}}, rows)
	checkWidth(t, "table", out.String())
	if !strings.Contains(out.String(), strings.Repeat("a", 29)+"…  x  éé") {
		t.Errorf("%s", out.String())
	}
	if got := progressBar(api.DeliveryView{Total: 1234567890, Counts: api.Counts{Delivered: 1234567890, Bounced: 1234567}}, time.Now(), 80); utf8.RuneCountInString(got) != 79 {
		t.Errorf("progress line of %d columns: %q", utf8.RuneCountInString(got), got)
	}
	if num(1234567) != "1,234,567" || num(-1000) != "-1,000" || num(999) != "999" {
		t.Error("num")
	}
}

func (b *opBackend) Domains() []dkim.DomainStatus {
	return []dkim.DomainStatus{{Domain: "example.com", Status: "mixed", SignedBy: "d=example.com s=s1 a=rsa-sha256",
		LastHour: dkim.SigningCounts{Signed: 1200}, LastDay: dkim.SigningCounts{Signed: 5000, ThirdParty: 2, Unsigned: map[string]uint64{"no_key": 3, "bad_from": 1}}}}
}

// TestDKIMStatusCommand: `penstock dkim status` prints the server's
// signing by From domain, unsigned reasons summed and named.
func TestDKIMStatusCommand(t *testing.T) {
	_, flags := opServer(t)
	code, out, errs := runOp(t, append([]string{"dkim", "status"}, flags...)...)
	for _, want := range []string{"FROM DOMAIN", "example.com  mixed   1,200 / 0 / 0  5,000 / 2 / 4\n", "example.com: unsigned in the last day: bad_from 1, no_key 3\n", "example.com: last signed by d=example.com s=s1 a=rsa-sha256\n"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("lacks %q: %d\n%s%s", want, code, out, errs)
		}
	}
}

// TestProgressHeld: the progress line says when recipients wait beyond the
// ETA (held by a suspended site, flow control...) or when none can be given.
func TestProgressHeld(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 3, 0, time.UTC)
	eta := now.Add(18 * time.Second)
	v := api.DeliveryView{Total: 5000, Counts: api.Counts{Delivered: 2322, Queued: 2678}, RatePerMinute: 46440, ETA: &eta, Held: 2500}
	if got, want := progressText(v, now, false), "ETA "+roundDur(18*time.Second)+" +2,500 held  46,440/min"; !strings.Contains(got, want) {
		t.Errorf("partial ETA: %q lacks %q", got, want)
	}
	v.ETA, v.Held = nil, 2678
	if got := progressText(v, now, false); !strings.Contains(got, "ETA unknown (2,678 held)") {
		t.Errorf("no ETA: %q", got)
	}
	v.Held = 0
	if got := progressText(v, now, false); !strings.Contains(got, "ETA -  ") {
		t.Errorf("no rate: %q", got)
	}
}
