package mta_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// capWorld is one provider behind two MX hosts, each the only MX of its
// own domain: two sites, two rules, and one receiver that counts what both
// get together. Each connection is held at the dot for a while so that
// connections overlap.
func capWorld(t *testing.T) (*sim.World, *sim.Provider) {
	t.Helper()
	w := newWorld(t)
	p, err := w.AddProvider(sim.Behavior{Name: "group", StallAt: sim.AtDot, StallFor: 100 * time.Millisecond},
		nil, "mx1.group.test", "mx2.group.test")
	if err != nil {
		t.Fatal(err)
	}
	w.DNS.SetMX("a.test", sim.MXRecord{Host: "mx1.group.test", Pref: 10})
	w.DNS.SetMX("b.test", sim.MXRecord{Host: "mx2.group.test", Pref: 10})
	return w, p
}

func groupRules() func(*config.Config) {
	return withRules(rule("ga", "mx1.group.test", "source", 5, 1, 0), rule("gb", "mx2.group.test", "source", 5, 1, 0))
}

func sendBoth(h *harness, n int) {
	h.sendMany(2*n, 10, func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("u%d@a.test", i)
		}
		return fmt.Sprintf("u%d@b.test", i)
	})
}

// TestCapConnectionsAcrossRules: a [[cap]] over a provider group (two
// rules of 5 connections each) holds the receiver, which counts the
// connections of both sites together, to the cap's 2; explain names the
// cap with its numbers; everything is delivered.
func TestCapConnectionsAcrossRules(t *testing.T) {
	t.Parallel()
	w, p := capWorld(t)
	h := newHarness(t, w, both(groupRules(), func(c *config.Config) {
		c.Caps = []config.Cap{{Name: "group", Rule: config.Patterns{"ga", "gb"}, MaxConnections: 2}}
	}))
	sendBoth(h, 20)
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "the cap's status", func() bool {
		for _, d := range []string{"a.test", "b.test"} {
			h.api("GET", "/api/v1/explain?domain="+d, &ex)
			if ex.Site != nil && ex.Site.Wait != nil && ex.Site.Wait.Status == queue.StatusCapMet {
				return true
			}
		}
		return false
	})
	wt := ex.Site.Wait
	if wt.Cap != "group" || wt.Limit != 2 || wt.InUse != 2 || wt.Key != "conn|cap|group" ||
		!strings.Contains(wt.Detail, `cap "group" (max_connections 2)`) || !strings.Contains(wt.Detail, "2 of 2 connections in use") {
		t.Errorf("cap wait lacks its numbers: %+v", wt)
	}
	if len(ex.Site.Caps) != 1 || ex.Site.Caps[0].Name != "group" || ex.Site.Caps[0].Limits != "max_connections 2" {
		t.Errorf("explain's caps: %+v", ex.Site.Caps)
	}
	waitDelivered(t, p, 40, 30*time.Second)
	if st := p.Stats(); st.MaxOpen > 2 {
		t.Fatalf("the receiver saw %d connections open at once across the group, the cap is 2", st.MaxOpen)
	} else {
		t.Logf("at most %d connections open at once across both sites (rules allow 10, cap 2)", st.MaxOpen)
	}
}

// TestCapMessagesPerHourAcrossRules: a cap's messages_per_hour selected by
// MX wildcard counts the mail of both rules together: at 120 an hour (a
// burst of 1, the next token in 30 s) one message goes, the others wait
// with the cap's status and the time it frees.
func TestCapMessagesPerHourAcrossRules(t *testing.T) {
	t.Parallel()
	w, p := capWorld(t)
	h := newHarness(t, w, both(groupRules(), func(c *config.Config) {
		c.Caps = []config.Cap{{Name: "slow group", MX: config.Patterns{"*.group.test"}, MessagesPerHour: 120}}
		c.ApplyDefaults()
	}))
	start := time.Now()
	sendBoth(h, 3)
	var ex queue.Explanation
	waitFor(t, 10*time.Second, "the cap's status at both sites", func() bool {
		n := 0
		for _, d := range []string{"a.test", "b.test"} {
			h.api("GET", "/api/v1/explain?domain="+d, &ex)
			if ex.Site != nil && ex.Site.ByStatus[queue.StatusCapMet] > 0 {
				n++
			}
		}
		return n == 2 && p.Delivered() >= 1
	})
	h.api("GET", "/api/v1/explain?domain=b.test", &ex)
	if ex.Site == nil || ex.Site.Wait == nil || ex.Site.Wait.Status != queue.StatusCapMet {
		h.api("GET", "/api/v1/explain?domain=a.test", &ex)
	}
	wt := ex.Site.Wait
	if wt == nil || wt.Cap != "slow group" || wt.Limit != 120 || wt.Key != "rate|cap|slow group" ||
		wt.Until.Before(start) || wt.Until.After(time.Now().Add(31*time.Second)) ||
		!strings.Contains(wt.Detail, "120 messages per hour") {
		t.Fatalf("cap wait lacks its numbers: %+v", wt)
	}
	// Within the 30 s of one token only the burst of 1 went, across both
	// rules (each alone would allow all six at once).
	if d := p.Delivered(); time.Since(start) < 29*time.Second && d != 1 {
		t.Fatalf("%d delivered in %s, the cap allows 1 per 30 s", d, time.Since(start))
	}
}
