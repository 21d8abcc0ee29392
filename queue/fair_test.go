package queue

import (
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
)

// Claims interleave the flows of new mail by weight, whatever order and
// amount they were queued in; one flow alone stays first in, first out.
func TestFairShareWeights(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	rules, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *f.q.config()
	cfg.Tenants = tenants.Set{"heavy": {Weight: 3}}
	f.q.SetConfig(&cfg)
	s := newSite(f.q, "mx.fair.test", []dns.MX{{Host: "mx.fair.test", Pref: 10}})
	s.running = true
	now := time.Now()
	id := 0
	add := func(tenant, delivery string, n int) {
		for range n {
			id++
			m := &spool.Message{ID: spool.ID(id), Tenant: tenant, DeliveryID: delivery, Expires: now.Add(time.Hour),
				Recipients: []spool.Recipient{{Addr: "a@fair.test"}}}
			s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("fair.test"), index: -1})
		}
	}
	add("light", "", 100) // first, and many
	add("heavy", "", 100)
	add("", "camp-1", 100) // a campaign without a tenant is a flow of its own
	lim := limits{match: rules.Match([]string{"mx.fair.test"})}
	count := map[sender]int{}
	var firstIDs []spool.ID
	for range 50 {
		j, _ := s.claim(lim, "conn|fair")
		if j == nil {
			t.Fatal("no job claimed")
		}
		count[flowOf(j.e)]++
		if j.e.tenant() == "light" {
			firstIDs = append(firstIDs, j.e.id)
		}
		s.forget(j)
	}
	// Weights 1, 3, 1: 10, 30, 10 of 50 (one either way for ties).
	if h, l, c := count[sender{name: "heavy"}], count[sender{name: "light"}], count[sender{campaign: true, name: "camp-1"}]; h < 29 || h > 31 || l < 9 || l > 11 || c < 9 || c > 11 {
		t.Fatalf("claims by flow %v, want about heavy 30, light 10, campaign 10", count)
	}
	for i := 1; i < len(firstIDs); i++ {
		if firstIDs[i] <= firstIDs[i-1] {
			t.Fatalf("one flow's jobs out of order: %v", firstIDs)
		}
	}
}

// A job's hold keeps every status text a hold can have.
func TestHoldStatusRoundTrip(t *testing.T) {
	if h := holdOf(""); h != 0 || h.String() != "" {
		t.Errorf("no hold: %d %q", h, h.String())
	}
	for _, st := range Statuses() {
		if got := holdOf(st).String(); got != st {
			t.Errorf("hold of %q reads back %q", st, got)
		}
	}
}
