package mta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// TestAdviseRoute: GET /api/v1/advise on a running node reads its own
// delivery log (flushed first) against the rules in force.
func TestAdviseRoute(t *testing.T) {
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
	const n = 12
	h.sendMany(n, 4, func(i int) string { return fmt.Sprintf("user%d@alpha.test", i) })
	waitDelivered(t, p, n, 30*time.Second)
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
