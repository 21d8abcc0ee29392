package queue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
	"unique"

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
		s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("susp.test"), index: -1})
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
		if j.e.tenant() != "t2" || j.e.delivery() != "" {
			t.Errorf("claimed a suspended job: tenant %q campaign %q", j.e.tenant(), j.e.delivery())
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
	if got := claimAll(); len(got) != 3 || got[0].e.tenant() != "t1" {
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

// Suspensions decided on another node: a local change goes to the share
// hook, an adopted one does not; an adopted suspension holds the jobs and
// is kept in the spool; adopting a set without it (the cluster's hash,
// after a resume elsewhere) makes its jobs due and forgets it in the spool.
func TestSuspendAdoptedFromCluster(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	rules, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSite(f.q, "mx.adopt.test", []dns.MX{{Host: "mx.adopt.test", Pref: 10}})
	s.running = true
	f.q.mu.Lock()
	f.q.sites[s.key] = s
	f.q.mu.Unlock()
	now := time.Now()
	for i := range 4 {
		tenant := "t1"
		if i%2 == 1 {
			tenant = "t2"
		}
		m := &spool.Message{ID: spool.ID(i + 1), Tenant: tenant, Expires: now.Add(time.Hour),
			Recipients: []spool.Recipient{{Addr: "a@adopt.test"}}}
		s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("adopt.test"), index: -1})
	}
	var shared []string
	f.q.ShareSuspensions(func(key, who string, on bool) {
		shared = append(shared, fmt.Sprintf("%s %s %v", key, who, on))
	})
	f.q.AdoptSuspension("tenant/t1", "ops", true)
	f.q.AdoptSuspension("bad/x", "ops", true)
	if sus := f.q.Suspensions(); len(sus) != 1 || sus["tenant/t1"] != "ops" {
		t.Fatalf("after adoption: %v, want tenant/t1 only", sus)
	}
	if _, err := f.q.SetSuspended(SuspendDelivery, "c9", "api", true); err != nil {
		t.Fatal(err)
	}
	if len(shared) != 1 || shared[0] != "delivery/c9 api true" {
		t.Errorf("shared %q, want only the local suspension of c9", shared)
	}
	lim := limits{match: rules.Match([]string{"mx.adopt.test"})}
	claimAll := func() []*job {
		var out []*job
		for range 20 {
			j, _ := s.claim(lim, "conn|adopt")
			if j == nil {
				return out
			}
			s.forget(j)
			out = append(out, j)
		}
		return out
	}
	if got := claimAll(); len(got) != 2 || got[0].e.tenant() != "t2" || got[1].e.tenant() != "t2" {
		t.Fatalf("claimed %d jobs while t1 is suspended elsewhere, want t2's 2", len(got))
	}
	kv := f.sp.KV(suspendKV)
	if v, err := kv.Get("tenant/t1"); err != nil || string(v) != "ops" {
		t.Errorf("spool copy of the adopted suspension: %q, %v", v, err)
	}
	// The cluster's set no longer has t1 (resumed on another node).
	f.q.AdoptSuspensions(map[string]string{"delivery/c9": "api"})
	if got := claimAll(); len(got) != 2 || got[0].e.tenant() != "t1" {
		t.Fatalf("after the cluster's resume claimed %d jobs, want t1's 2", len(got))
	}
	if _, err := kv.Get("tenant/t1"); err == nil {
		t.Errorf("the resumed suspension is still in the spool")
	}
	if len(shared) != 1 {
		t.Errorf("adoptions were shared back: %q", shared)
	}
}
