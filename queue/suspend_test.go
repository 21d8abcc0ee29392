package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

// A suspended tenant's or campaign's jobs are put back with their status
// while the site's other mail is claimed; resuming makes them due at once;
// the suspensions survive a new Queue on the same spool.
func TestSuspendTenantAndCampaign(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	rules, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(f.q, "mx.susp.test", []dns.MX{{Host: "mx.susp.test", Pref: 10}})
	s.running = true
	f.q.mu.Lock()
	f.q.sites[s.key] = s
	f.q.mu.Unlock()
	now := time.Now()
	id := 0
	add := func(tenant, delivery string) {
		id++
		m := &spool.Message{ID: spool.ID(id), Tenant: tenant, DeliveryID: delivery, Expires: now.Add(time.Hour),
			Recipients: []spool.Recipient{{Addr: "a@susp.test"}}}
		s.push(&job{e: &entry{m: m, pending: 1}, rcpts: []int{0}, domain: "susp.test", index: -1})
	}
	for range 3 {
		add("t1", "")
		add("t2", "c1")
		add("t2", "")
	}
	if _, err := f.q.SetSuspended(SuspendTenant, "t1", "test", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.SetSuspended(SuspendDelivery, "c1", "test", true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.SetSuspended("site", "x", "test", true); !errors.Is(err, ErrBadSuspension) {
		t.Errorf("unknown kind: %v", err)
	}
	lim := limits{match: rules.Match([]string{"mx.susp.test"})}
	claimAll := func() []*job {
		var out []*job
		for range 20 {
			j, _ := s.claim(lim, "conn|susp")
			if j == nil {
				return out
			}
			s.forget(j)
			out = append(out, j)
		}
		return out
	}
	got := claimAll()
	if len(got) != 3 {
		t.Fatalf("claimed %d jobs, want t2's 3 outside campaign c1", len(got))
	}
	for _, j := range got {
		if j.e.m.Tenant != "t2" || j.e.m.DeliveryID != "" {
			t.Errorf("claimed a suspended job: tenant %q campaign %q", j.e.m.Tenant, j.e.m.DeliveryID)
		}
	}
	v, _ := f.q.Site(s.key)
	if v.ByStatus[StatusTenantSuspended] != 3 || v.ByStatus[StatusCampaignSuspended] != 3 {
		t.Errorf("statuses %v, want 3 tenant suspended and 3 campaign suspended", v.ByStatus)
	}
	n, err := f.q.SetSuspended(SuspendTenant, "t1", "test", false)
	if err != nil || n != 3 {
		t.Fatalf("resume t1: %d, %v; want 3 woken", n, err)
	}
	if got := claimAll(); len(got) != 3 || got[0].e.m.Tenant != "t1" {
		t.Fatalf("after resume claimed %d jobs, want t1's 3", len(got))
	}
	// A new queue on the same spool still has campaign c1 suspended.
	q2 := New(&Config{Rules: rules}, Deps{Spool: f.sp, Resolver: f.res, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		q2.Close(ctx)
	}()
	if sus := q2.Suspensions(); len(sus) != 1 || sus["delivery/c1"] != "test" {
		t.Errorf("suspensions after a restart: %v, want campaign c1's", sus)
	}
}
