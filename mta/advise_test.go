package mta_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
)

// TestAdviseRoute: GET /api/v1/advise on a running node reads its own
// delivery log (flushed first) against the rules in force.
func TestAdviseRoute(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "alpha"}, []string{"alpha.test"}, "mx.alpha.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.MXRules = append(c.MXRules,
			config.MXRule{Name: "alpha", MX: config.Patterns{"mx.alpha.test"}, MessagesPerHour: 1000},
			config.MXRule{Name: "ghost", MX: config.Patterns{"mx.nowhere.test"}})
		for i := range c.MXRules {
			c.MXRules[i].ApplyDefaults()
		}
	})
	// As many messages as alpha's burst: past it, 1000 an hour paces one
	// every 3.6 s, and the route's report needs no more than a few.
	n := quota.Burst(1000)
	h.sendMany(n, 4, func(i int) string { return fmt.Sprintf("user%d@alpha.test", i) })
	waitDelivered(t, p, int64(n), 30*time.Second)
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == n })

	var rep advisor.Report
	if code := h.api("GET", "/api/v1/advise?since=1h", &rep); code != 200 {
		t.Fatalf("advise: %d", code)
	}
	var alpha *advisor.RuleReport
	for i := range rep.Rules {
		if rep.Rules[i].Name == "alpha" {
			alpha = &rep.Rules[i]
		}
	}
	if alpha == nil || alpha.Deliveries != n || len(alpha.Sites) != 1 || alpha.Sites[0].Site == "" || alpha.MessagesPerHour != 1000 {
		t.Fatalf("alpha = %+v", alpha)
	}
	var unused, unreached bool
	for _, r := range rep.Recommendations {
		unused = unused || r.Kind == advisor.Unused && r.Rule == "ghost"
		unreached = unreached || r.Kind == advisor.Unreached && r.Rule == "alpha"
	}
	if !unused || !unreached {
		t.Errorf("recommendations: %+v", rep.Recommendations)
	}
	if code := h.api("GET", "/api/v1/advise?rule=nope", nil); code != 400 {
		t.Errorf("unknown rule: %d, want 400", code)
	}
}

// adviseRun is a real run with a history before it: 6 messages delivered
// to alpha.test under rule alpha (1000 an hour), and an archive of an
// earlier day with three hours at 950 an hour, which argues for a raise.
// It returns the harness and the site as the queue keys it.
func adviseRun(t *testing.T) (*harness, string) {
	t.Helper()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "alpha"}, []string{"alpha.test"}, "mx.alpha.test")
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, w, func(c *config.Config) {
		c.MXRules = append(c.MXRules, config.MXRule{Name: "alpha", MX: config.Patterns{"mx.alpha.test"}, MessagesPerHour: 1000})
		for i := range c.MXRules {
			c.MXRules[i].ApplyDefaults()
		}
	})
	h.sendMany(adviseRunN, 2, func(i int) string { return fmt.Sprintf("user%d@alpha.test", i) })
	waitDelivered(t, p, adviseRunN, 30*time.Second)
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == adviseRunN })
	site := ""
	for _, r := range h.records() {
		if r.Type == events.Delivery {
			site = r.Site
		}
	}

	// The earlier day, written as the events writer archives it.
	start := time.Now().Add(-40 * time.Hour).Truncate(time.Hour)
	var lines []string
	for hr := 0; hr < 3; hr++ {
		for i := 0; i < 950; i++ {
			b, err := json.Marshal(events.Record{Type: events.Delivery, Time: start.Add(time.Duration(hr)*time.Hour + time.Duration(i)*3600*time.Millisecond),
				ID: fmt.Sprintf("old%d-%d", hr, i), Site: site, Rule: "alpha", SourceIP: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, string(b))
		}
	}
	archive := filepath.Join(h.m.Config().Server.LogDir, "delivery-"+start.Format("20060102")+".log")
	if err := os.WriteFile(archive, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h, site
}

const adviseRunN = 6

// TestAdvisePanelContent: what the dashboard's advisor panel shows comes
// from the route after a real run: the site's recommendation names the
// site as the queue keys it, with its evidence line and its diff, and the
// site's counts include the run's deliveries.
func TestAdvisePanelContent(t *testing.T) {
	h, site := adviseRun(t)
	var rep advisor.Report
	if code := h.api("GET", "/api/v1/advise?since=7d", &rep); code != 200 {
		t.Fatalf("advise: %d", code)
	}
	var raise *advisor.Recommendation
	for i, r := range rep.Recommendations {
		if r.Kind == advisor.Raise && r.Rule == "alpha" {
			raise = &rep.Recommendations[i]
		}
	}
	if raise == nil {
		t.Fatalf("no raise for alpha: %+v", rep.Recommendations)
	}
	if raise.Site != site || raise.Key != "messages_per_hour" || raise.To <= raise.From ||
		!strings.Contains(raise.Evidence, "3 consecutive hours") ||
		!strings.Contains(raise.Diff, fmt.Sprintf("- messages_per_hour = %d\n+ messages_per_hour = %d\n", raise.From, raise.To)) {
		t.Errorf("raise = %+v", raise)
	}
	for _, r := range rep.Rules {
		if r.Name == "alpha" && (len(r.Sites) != 1 || r.Sites[0].Site != site || r.Sites[0].Deliveries != 3*950+adviseRunN) {
			t.Errorf("alpha's sites = %+v, want %s with %d deliveries", r.Sites, site, 3*950+adviseRunN)
		}
	}
}
