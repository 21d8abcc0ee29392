//go:build unix

package mta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mdns "github.com/miekg/dns"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// findBrowser returns a Chromium binary, or skips the test when there is
// none (fails instead when PENSTOCK_REQUIRE_BROWSER=1, as in CI).
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PENSTOCK_REQUIRE_BROWSER") == "1" {
		t.Fatal("no chromium in PATH and PENSTOCK_REQUIRE_BROWSER=1 (apt-get install chromium)")
	}
	t.Skip("no chromium in PATH: the dashboard browser test needs Debian's chromium (set PENSTOCK_REQUIRE_BROWSER=1 to make this a failure)")
	return ""
}

// browser runs headless Chromium against loopback only.
type browser struct {
	t   *testing.T
	bin string
}

// run starts Chromium with extra flags and returns its standard output;
// it fails the test on a non-zero exit, a timeout (30 s) or a message on
// the page's console (the dashboard logs nothing, so any is an error: an
// uncaught exception, a CSP violation).
func (b browser) run(extra ...string) string {
	b.t.Helper()
	profile, err := os.MkdirTemp("", "penstock-chromium-")
	if err != nil {
		b.t.Fatal(err)
	}
	// Chromium's helpers may still hold files for a moment after it exits;
	// a leftover profile in the temp dir is not worth failing a test.
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0",
	}, extra...)
	cmd := exec.CommandContext(ctx, b.bin, args...)
	// Its own process group, so the timeout and the end of the run take
	// Chromium's helper processes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "HOME="+profile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	if ctx.Err() != nil {
		b.t.Fatalf("chromium %v: timed out after 30 s; stderr:\n%s", extra, tail(stderr.String(), 3000))
	}
	if err != nil {
		b.t.Fatalf("chromium %v: %v; stderr:\n%s", extra, err, tail(stderr.String(), 3000))
	}
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			b.t.Errorf("console message on the page (%v): %s", extra, line)
		}
	}
	return stdout.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// dom loads a page, lets it run for 8 s of virtual time (four refreshes)
// and parses the resulting DOM.
func (b browser) dom(pageURL string) *page {
	b.t.Helper()
	out := b.run("--window-size=1280,1000", "--virtual-time-budget=8000", "--dump-dom", pageURL)
	root, err := html.Parse(strings.NewReader(out))
	if err != nil {
		b.t.Fatalf("parse the DOM of %s: %v", pageURL, err)
	}
	return &page{t: b.t, url: pageURL, root: root}
}

// screenshot saves a PNG of a page and checks it is a real picture.
func (b browser) screenshot(pageURL, file string, width, height int) {
	b.t.Helper()
	b.run(fmt.Sprintf("--window-size=%d,%d", width, height), "--virtual-time-budget=8000", "--screenshot="+file, pageURL)
	data, err := os.ReadFile(file)
	if err != nil {
		b.t.Fatalf("screenshot of %s: %v", pageURL, err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		b.t.Fatalf("screenshot %s is not a PNG: %v", file, err)
	}
	if r := img.Bounds(); r.Dx() != width || r.Dy() != height {
		b.t.Errorf("screenshot %s is %dx%d, want %dx%d", file, r.Dx(), r.Dy(), width, height)
	}
	// A blank or error page compresses to a few KB; the dashboard with
	// data, charts and tables is far larger.
	if len(data) < 40<<10 {
		b.t.Errorf("screenshot %s is only %d bytes: a blank page?", file, len(data))
	}
	b.t.Logf("screenshot of %s: %s (%d KB)", pageURL, file, len(data)>>10)
}

// page is a parsed DOM.
type page struct {
	t    *testing.T
	url  string
	root *html.Node
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// all returns the elements whose data-testid is id, in document order.
func (p *page) all(id string) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if v, ok := attr(n, "data-testid"); ok && v == id {
				out = append(out, n)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.root)
	return out
}

func (p *page) one(id string) *html.Node {
	p.t.Helper()
	ns := p.all(id)
	if len(ns) != 1 {
		p.t.Fatalf("%s: %d elements with data-testid=%q, want 1", p.url, len(ns), id)
	}
	return ns[0]
}

// value is the data-value of the one element with data-testid id.
func (p *page) value(id string) string {
	p.t.Helper()
	v, ok := attr(p.one(id), "data-value")
	if !ok {
		p.t.Fatalf("%s: data-testid=%q has no data-value", p.url, id)
	}
	return v
}

func (p *page) number(id string) int64 {
	p.t.Helper()
	return nodeNumber(p.t, p.url, p.one(id))
}

func nodeNumber(t *testing.T, where string, n *html.Node) int64 {
	t.Helper()
	v, _ := attr(n, "data-value")
	x, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("%s: data-value %q is not a number: %v", where, v, err)
	}
	return x
}

// within returns the elements with data-testid id under n.
func within(n *html.Node, id string) []*html.Node {
	p := &page{root: n}
	return p.all(id)
}

func (p *page) body() *html.Node {
	var find func(*html.Node) *html.Node
	find = func(n *html.Node) *html.Node {
		if n.Type == html.ElementNode && n.Data == "body" {
			return n
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if b := find(c); b != nil {
				return b
			}
		}
		return nil
	}
	b := find(p.root)
	if b == nil {
		p.t.Fatalf("%s: no <body> in the DOM", p.url)
	}
	return b
}

func (p *page) bodyAttr(key string) string {
	v, _ := attr(p.body(), key)
	return v
}

// getJSON reads an API route with the bearer token.
func getJSON(t *testing.T, addr, token, path string, out any) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// createDelivery starts a campaign over the API, if this node has the
// deliveries API (false on 404).
func createDelivery(t *testing.T, addr, token string, rcpts []string) bool {
	t.Helper()
	type rcpt struct {
		Address string `json:"address"`
	}
	req := map[string]any{
		"name": "November newsletter",
		"from": "news@penstock.test",
		"template": map[string]any{
			"from":    "Penstock News <news@penstock.test>",
			"subject": "What is new in November",
			"text":    "Hello {{.recipient}},\n\nthe news.\n",
		},
	}
	var rs []rcpt
	for _, r := range rcpts {
		rs = append(rs, rcpt{Address: r})
	}
	req["recipients"] = rs
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequest("POST", "http://"+addr+"/api/v1/deliveries", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Authorization", "Bearer "+token)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true
	case http.StatusNotFound:
		t.Logf("no deliveries API on this node (404): the page must say \"no deliveries\"")
		return false
	}
	t.Fatalf("POST /api/v1/deliveries: %s %s", resp.Status, answer)
	return false
}

type deliveryView struct {
	ID     string `json:"id"`
	Total  int    `json:"total"`
	Counts struct {
		Queued, Delivered, Bounced, Suppressed, Expired, Cancelled int
	} `json:"counts"`
	Recovered int  `json:"recovered"`
	Done      bool `json:"done"`
}

type statusView struct {
	Totals       queue.Totals `json:"totals"`
	LocalProblem bool         `json:"local_problem"`
}

type flowView struct {
	Site    string `json:"site"`
	Changes []struct {
		State string `json:"state"`
	} `json:"changes"`
}

// The dashboard in a real browser: a node delivers 200 messages to three
// providers (one fast, one rejecting some users with 550, one throttling
// so flow control backs off), then headless Chromium loads the page and
// the numbers it shows must be the API's; it takes screenshots of the
// overview and of a site's page with its flow-control timeline.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser run")
	}
	b := browser{t: t, bin: findBrowser(t)}

	w := newWorld(t)
	fast, err := w.AddProvider(sim.Behavior{Name: "fast"}, []string{"fast.test"}, "mx1.fast.test", "mx2.fast.test")
	if err != nil {
		t.Fatal(err)
	}
	strict, err := w.AddProvider(sim.Behavior{Name: "strict", RcptReply: func(rcpt string) string {
		if strings.HasPrefix(rcpt, "gone") {
			return "550 5.1.1 <" + rcpt + ">: Recipient address rejected: User unknown in virtual mailbox table"
		}
		return ""
	}}, []string{"strict.test"}, "mx.strict.test")
	if err != nil {
		t.Fatal(err)
	}
	slow, err := w.AddProvider(sim.Behavior{Name: "throttle", RateLimit: 10, RateWindow: 2 * time.Second,
		ThrottleReply: "421 4.7.0 [TEST-SLOW] Messages from 127.0.0.1 deferred: slow down"},
		[]string{"throttle.test"}, "mx.throttle.test")
	if err != nil {
		t.Fatal(err)
	}
	const token = "dashboard-test-token"
	key := signingKey(t, w, t.TempDir(), "ed25519", "penstock.test", "dash")
	key.ApplyDefaults()
	h := newHarness(t, w, func(c *config.Config) {
		fastFlow(c)
		c.DKIM = []config.DKIM{key}
		c.HTTP.Token = token
		c.FlowControl.Patterns = []config.FlowPattern{{Match: `\[TEST-SLOW\]`, Action: "backoff", Duration: config.Duration(2 * time.Second)}}
		c.Delivery.Retry = []config.Duration{config.Duration(500 * time.Millisecond)}
	})

	// 200 recipients: over SMTP 100 to fast.test, 50 to strict.test (10 of
	// them unknown users), 40 to throttle.test; and a campaign of 10
	// through the deliveries API (when the node has it), 2 of them unknown.
	const smtpN, smtpBounces = 190, 10
	h.sendMany(smtpN, 10, func(i int) string {
		switch {
		case i < 100:
			return fmt.Sprintf("user%d@fast.test", i)
		case i < 150 && i%5 == 0:
			return fmt.Sprintf("gone%d@strict.test", i)
		case i < 150:
			return fmt.Sprintf("user%d@strict.test", i)
		}
		return fmt.Sprintf("user%d@throttle.test", i)
	})
	addr := h.m.HTTPAddr()
	campaign := []string{"ann@fast.test", "bob@fast.test", "cyd@fast.test", "dee@fast.test", "eve@fast.test",
		"fay@strict.test", "gus@strict.test", "hal@strict.test", "gone-ivy@strict.test", "gone-jon@strict.test"}
	wantDelivered, wantBounced := int64(smtpN-smtpBounces), int64(smtpBounces)
	fastN, strictN := int64(100), int64(40)
	haveDeliveries := createDelivery(t, addr, token, campaign)
	if haveDeliveries {
		wantDelivered, wantBounced = wantDelivered+8, wantBounced+2
		fastN, strictN = fastN+5, strictN+3
	}
	waitDelivered(t, fast, fastN, 30*time.Second)
	waitDelivered(t, strict, strictN, 30*time.Second)
	waitDelivered(t, slow, 40, 60*time.Second)
	var st statusView
	waitFor(t, 10*time.Second, "final totals", func() bool {
		getJSON(t, addr, token, "/api/v1/status", &st)
		return st.Totals.Delivered == wantDelivered && st.Totals.Bounced == wantBounced && st.Totals.Queued == 0
	})
	var qs struct {
		Sites []queue.SiteView `json:"sites"`
	}
	getJSON(t, addr, token, "/api/v1/queues", &qs)
	if len(qs.Sites) != 3 {
		t.Fatalf("%d sites in the API, want 3", len(qs.Sites))
	}
	var timeline struct {
		Minutes []struct {
			Delivered int64 `json:"delivered"`
			Bounced   int64 `json:"bounced"`
		} `json:"minutes"`
	}
	// The timeline is fed by a delivery-log subscriber, a moment behind
	// the queue's totals: wait for it to count the last outcomes too.
	var hourDelivered, hourBounced int64
	waitFor(t, 10*time.Second, "the timeline to count every outcome", func() bool {
		getJSON(t, addr, token, "/api/v1/timeline?minutes=60", &timeline)
		hourDelivered, hourBounced = 0, 0
		for _, m := range timeline.Minutes {
			hourDelivered += m.Delivered
			hourBounced += m.Bounced
		}
		return hourDelivered == wantDelivered && hourBounced == wantBounced
	})
	slowSite := ""
	for _, s := range qs.Sites {
		if strings.Contains(s.Site, "throttle.test") {
			slowSite = s.Site
		}
	}
	var flow flowView
	getJSON(t, addr, token, "/api/v1/sites/"+url.PathEscape(slowSite)+"/flow", &flow)
	if len(flow.Changes) == 0 {
		t.Fatalf("no flow-control change recorded for %s: the timeline would be empty", slowSite)
	}

	base := "http://" + addr + "/"

	// Without the token the page asks for it and shows no numbers.
	p := b.dom(base)
	if _, hidden := attr(p.one("token-form"), "hidden"); hidden {
		t.Errorf("without a token the page does not ask for one")
	}
	if p.bodyAttr("data-loaded") != "0" {
		t.Errorf("without a token the page claims to have loaded data")
	}

	// The overview, with the token in the fragment.
	p = b.dom(base + "#token=" + token)
	if p.bodyAttr("data-loaded") != "1" || p.bodyAttr("data-view") != "overview" {
		t.Fatalf("overview not loaded: data-loaded=%q data-view=%q", p.bodyAttr("data-loaded"), p.bodyAttr("data-view"))
	}
	for id, want := range map[string]int64{
		"total-delivered":  st.Totals.Delivered,
		"total-bounced":    st.Totals.Bounced,
		"total-queued":     int64(st.Totals.Queued),
		"total-deferred":   st.Totals.Deferred,
		"total-expired":    st.Totals.Expired,
		"total-suppressed": st.Totals.Suppressed,
		"total-sites":      int64(st.Totals.Sites),
		"hour-delivered":   hourDelivered,
		"hour-bounced":     hourBounced,
		"sites-count":      int64(len(qs.Sites)),
	} {
		if got := p.number(id); got != want {
			t.Errorf("overview %s shows %d, the API says %d", id, got, want)
		}
	}
	if p.value("local-problem") != strconv.FormatBool(st.LocalProblem) {
		t.Errorf("local-problem banner %s, API local_problem %v", p.value("local-problem"), st.LocalProblem)
	}
	rows := p.all("site-row")
	if len(rows) != len(qs.Sites) {
		t.Fatalf("%d site rows, the API has %d sites", len(rows), len(qs.Sites))
	}
	for i, row := range rows {
		s := qs.Sites[i]
		if key, _ := attr(row, "data-site"); key != s.Site {
			t.Errorf("site row %d is %q, the API lists %q", i, key, s.Site)
			continue
		}
		for id, want := range map[string]int64{"site-queued": int64(s.Queued), "site-bounced": s.Bounced, "site-delivered-hour": s.DeliveredLastHour} {
			ns := within(row, id)
			if len(ns) != 1 {
				t.Errorf("site row %s: %d %s cells", s.Site, len(ns), id)
				continue
			}
			if got := nodeNumber(t, p.url, ns[0]); got != want {
				t.Errorf("site row %s: %s shows %d, the API says %d", s.Site, id, got, want)
			}
		}
	}
	// Nothing is queued: the by-status panel says so.
	if len(p.all("status-count")) != 0 || len(p.all("status-empty")) != 1 {
		t.Errorf("queued-by-status shows %d statuses with nothing queued", len(p.all("status-count")))
	}
	// Deliveries: progress per campaign, or "no deliveries" without the API.
	if haveDeliveries {
		var ds struct {
			Deliveries []deliveryView `json:"deliveries"`
		}
		getJSON(t, addr, token, "/api/v1/deliveries", &ds)
		rows := p.all("delivery-row")
		if len(rows) != len(ds.Deliveries) || len(rows) == 0 {
			t.Fatalf("%d delivery rows, the API has %d deliveries", len(rows), len(ds.Deliveries))
		}
		byID := map[string]deliveryView{}
		for _, d := range ds.Deliveries {
			byID[d.ID] = d
		}
		for _, row := range rows {
			id, _ := attr(row, "data-id")
			d, ok := byID[id]
			if !ok {
				t.Errorf("delivery row %q is not in the API", id)
				continue
			}
			c := d.Counts
			want := int64(c.Delivered + c.Bounced + c.Suppressed + c.Expired + c.Cancelled + d.Recovered)
			if ns := within(row, "delivery-done"); len(ns) != 1 || nodeNumber(t, p.url, ns[0]) != want {
				t.Errorf("delivery %s: the progress shown is not the %d of %d finished recipients in the API", id, want, d.Total)
			}
		}
	} else if len(p.all("deliveries-empty")) != 1 {
		t.Errorf("without a deliveries API the page does not say 'no deliveries'")
	}

	// Signing by From domain: everything was sent From penstock.test, which
	// has a key.
	if rows := p.all("dkim-row"); len(rows) != 1 {
		t.Errorf("%d DKIM rows, want 1 (penstock.test)", len(rows))
	} else if d, _ := attr(rows[0], "data-domain"); d != "penstock.test" {
		t.Errorf("DKIM row for %q, want penstock.test", d)
	} else if s, _ := attr(rows[0], "data-status"); s != "signed" {
		t.Errorf("penstock.test shown as %q, want signed", s)
	}

	// The advisor's panel: each recommendation of the route, with its
	// evidence and its diff, under its site (or its rule).
	var advice advisor.Report
	getJSON(t, addr, token, "/api/v1/advise?since=7d", &advice)
	adviceRows := p.all("advice-row")
	if len(adviceRows) != len(advice.Recommendations) {
		t.Errorf("%d advisor rows, the API has %d recommendations", len(adviceRows), len(advice.Recommendations))
	}
	if len(advice.Recommendations) == 0 && len(p.all("advice-empty")) != 1 {
		t.Errorf("no recommendation, and the advisor panel does not say so")
	}
	for _, rec := range advice.Recommendations {
		found := false
		for _, row := range adviceRows {
			kind, _ := attr(row, "data-kind")
			rule, _ := attr(row, "data-rule")
			site, _ := attr(row, "data-site")
			if kind == rec.Kind && rule == rec.Rule && site == rec.Site {
				found = true
				if len(within(row, "advice-evidence")) != 1 || (rec.Diff != "") != (len(within(row, "advice-diff")) == 1) {
					t.Errorf("advisor row %s %s %s lacks its evidence or diff", kind, rule, site)
				}
			}
		}
		if !found {
			t.Errorf("recommendation %s %s (site %q) not on the page", rec.Kind, rec.Rule, rec.Site)
		}
	}
	// Transport security: a row per domain with the policy in force and per
	// MX host with its last TLS outcome, as GET /api/v1/tls lists them (the
	// simulated providers offer no STARTTLS: the MX rule's tls applies).
	var tv api.TLSStatusView
	getJSON(t, addr, token, "/api/v1/tls", &tv)
	if rows := p.all("tls-domain-row"); len(rows) != len(tv.Domains) || len(rows) == 0 {
		t.Errorf("%d TLS domain rows, the API lists %d domains", len(rows), len(tv.Domains))
	} else {
		for i, row := range rows {
			d, _ := attr(row, "data-domain")
			src, _ := attr(row, "data-source")
			if d != tv.Domains[i].Domain || src != tv.Domains[i].Source {
				t.Errorf("TLS domain row %d: %s %s, the API says %+v", i, d, src, tv.Domains[i])
			}
		}
	}
	if rows := p.all("tls-host-row"); len(rows) != len(tv.Hosts) || len(rows) == 0 {
		t.Errorf("%d TLS host rows, the API lists %d hosts", len(rows), len(tv.Hosts))
	} else {
		for i, row := range rows {
			host, _ := attr(row, "data-host")
			on, _ := attr(row, "data-tls")
			if host != tv.Hosts[i].Host || on != strconv.FormatBool(tv.Hosts[i].TLS) {
				t.Errorf("TLS host row %d: %s tls=%s, the API says %+v", i, host, on, tv.Hosts[i])
			}
		}
	}

	// The throttled site's page: its numbers and its flow-control timeline.
	var sv queue.SiteView
	getJSON(t, addr, token, "/api/v1/queues/"+url.PathEscape(slowSite), &sv)
	siteURL := base + "#token=" + token + "&site=" + url.QueryEscape(slowSite)
	p = b.dom(siteURL)
	if p.bodyAttr("data-view") != "site" {
		t.Fatalf("site page not shown: data-view=%q", p.bodyAttr("data-view"))
	}
	if got, _ := attr(p.one("site-detail"), "data-site"); got != slowSite {
		t.Fatalf("site page shows %q, want %q", got, slowSite)
	}
	for id, want := range map[string]int64{
		"site-delivered": sv.Delivered, "site-bounced": sv.Bounced, "site-queued": int64(sv.Queued), "site-deferred": sv.Deferred,
	} {
		if got := p.number(id); got != want {
			t.Errorf("site page %s shows %d, the API says %d", id, got, want)
		}
	}
	// Flow changes keep coming while the site recovers: the page shows at
	// least those recorded before it loaded.
	if got := len(p.all("flow-change")); got < len(flow.Changes) {
		t.Errorf("site page lists %d flow changes, the API had %d", got, len(flow.Changes))
	}
	if got := len(p.all("flow-mark")); got < len(flow.Changes) {
		t.Errorf("flow timeline chart marks %d changes, the API had %d", got, len(flow.Changes))
	}
	p.one("flow-chart")
	p.one("site-advice")

	// Screenshots: the overview and the site's page (taller, so the
	// timeline shows).
	dir := os.Getenv("PENSTOCK_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.screenshot(base+"#token="+token, filepath.Join(dir, "dashboard-overview.png"), 1280, 1000)
	b.screenshot(siteURL, filepath.Join(dir, "dashboard-site.png"), 1280, 1600)

	// The API agrees with itself after the run: the numbers compared
	// above did not move under the browser.
	var after statusView
	getJSON(t, addr, token, "/api/v1/status", &after)
	if after.Totals != st.Totals {
		t.Errorf("totals moved during the browser run: %+v then %+v", st.Totals, after.Totals)
	}
}

// textOf is the text content of n.
func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// TestDashboardAdvisorPanel: after a real run over a recorded history,
// the overview's advisor panel and the site's page show the route's
// recommendations for the site: kind, evidence line and diff.
func TestDashboardAdvisorPanel(t *testing.T) {
	if testing.Short() {
		t.Skip("browser run")
	}
	b := browser{t: t, bin: findBrowser(t)}
	h, site := adviseRun(t)
	var rep advisor.Report
	if code := h.api("GET", "/api/v1/advise?since=7d", &rep); code != 200 {
		t.Fatalf("advise: %d", code)
	}
	var mine []advisor.Recommendation
	for _, r := range rep.Recommendations {
		if r.Site == site || r.Site == "" && r.Rule == "alpha" {
			mine = append(mine, r)
		}
	}
	if len(mine) == 0 {
		t.Fatalf("no recommendation for %s: %+v", site, rep.Recommendations)
	}
	check := func(where string, rows []*html.Node, recs []advisor.Recommendation) {
		t.Helper()
		if len(rows) != len(recs) {
			t.Errorf("%s: %d advisor rows, the route has %d", where, len(rows), len(recs))
		}
		for _, rec := range recs {
			found := false
			for _, row := range rows {
				kind, _ := attr(row, "data-kind")
				rule, _ := attr(row, "data-rule")
				rs, _ := attr(row, "data-site")
				if kind != rec.Kind || rule != rec.Rule || rs != rec.Site {
					continue
				}
				found = true
				ev := within(row, "advice-evidence")
				if len(ev) != 1 || textOf(ev[0]) != rec.Evidence {
					t.Errorf("%s: %s %s: evidence not shown as the route gives it", where, kind, rule)
				}
				if d := within(row, "advice-diff"); rec.Diff != "" && (len(d) != 1 || textOf(d[0]) != rec.Diff) {
					t.Errorf("%s: %s %s: diff not shown as the route gives it", where, kind, rule)
				}
			}
			if !found {
				t.Errorf("%s: %s %s (site %q) not shown", where, rec.Kind, rec.Rule, rec.Site)
			}
		}
	}
	base := "http://" + h.m.HTTPAddr() + "/"
	p := b.dom(base)
	check("overview", p.all("advice-row"), rep.Recommendations)
	groups := 0
	for _, g := range p.all("advice-group") {
		if s, _ := attr(g, "data-site"); s == site {
			groups++
			check("overview, "+site, within(g, "advice-row"), func() (out []advisor.Recommendation) {
				for _, r := range rep.Recommendations {
					if r.Site == site {
						out = append(out, r)
					}
				}
				return out
			}())
		}
	}
	if groups != 1 {
		t.Errorf("%d advisor groups for %s, want 1", groups, site)
	}
	siteURL := base + "#site=" + url.QueryEscape(site)
	p = b.dom(siteURL)
	check("site page", within(p.one("site-advice"), "advice-row"), mine)

	dir := os.Getenv("PENSTOCK_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.screenshot(base, filepath.Join(dir, "dashboard-advice.png"), 1280, 1800)
	b.screenshot(siteURL, filepath.Join(dir, "dashboard-site-advice.png"), 1280, 2200)
}

// With the resolver failing for every domain, the dashboard shows the
// recipients held for their MX answer, under that status, beside the
// local-problem banner (it said "Nothing queued" beside QUEUED = 5).
func TestDashboardMXLookupFailing(t *testing.T) {
	if testing.Short() {
		t.Skip("browser run")
	}
	b := browser{t: t, bin: findBrowser(t)}
	w := newWorld(t)
	w.DNS.SetFailAll(mdns.RcodeServerFailure)
	const token = "dashboard-mx-token"
	h := newHarness(t, w, func(c *config.Config) {
		fastFlow(c)
		c.HTTP.Token = token
	})
	for i := 0; i < 5; i++ {
		to := fmt.Sprintf("u@mx%d.test", i)
		if err := h.send("s@penstock.test", []string{to}, message("s@penstock.test", to, "mx", 300)); err != nil {
			t.Fatal(err)
		}
	}
	addr := h.m.HTTPAddr()
	var st statusView
	waitFor(t, 20*time.Second, "the local problem and 5 recipients held as MX lookup failed", func() bool {
		getJSON(t, addr, token, "/api/v1/status", &st)
		var qs struct {
			Sites []queue.SiteView `json:"sites"`
		}
		getJSON(t, addr, token, "/api/v1/queues", &qs)
		held := 0
		for _, s := range qs.Sites {
			held += s.ByStatus[queue.StatusMXFailed]
		}
		return st.LocalProblem && held == 5
	})
	p := b.dom("http://" + addr + "/#token=" + token)
	if p.value("local-problem") != "true" {
		t.Errorf("no local-problem banner")
	}
	if len(p.all("status-empty")) != 0 {
		t.Errorf("the dashboard says nothing is queued while 5 recipients wait")
	}
	var shown int64
	for _, n := range p.all("status-count") {
		if s, _ := attr(n, "data-status"); s == queue.StatusMXFailed {
			v, _ := attr(n, "data-value")
			shown, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if shown != 5 {
		t.Errorf("the dashboard shows %d recipients as %q, want 5", shown, queue.StatusMXFailed)
	}
	b.screenshot("http://"+addr+"/#token="+token, filepath.Join(os.TempDir(), "penstock-dashboard-mx-failing.png"), 1280, 1000)
}
