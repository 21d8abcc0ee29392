package queue

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
)

// Suspending a tenant or a campaign (delivery) as a whole: its jobs stay
// queued, put back with the suspension's status as a session claims them,
// while the rest of each site's mail goes on. The set of suspensions is
// kept in the spool's KV store "suspended" (keys "tenant/NAME",
// "delivery/ID"), so it survives a restart; resuming makes the held jobs
// due at once. A claim reads the set without a lock (copy on write).

// Kinds of suspension (SetSuspended).
const (
	SuspendTenant   = "tenant"
	SuspendDelivery = "delivery"
)

const (
	suspendKV = "suspended"
	// suspendRecheck is how long a suspended job waits before it is looked
	// at again; Resume makes it due at once, so this only bounds a resume
	// that found no job to wake.
	suspendRecheck = time.Hour
)

// ErrBadSuspension is wrapped by SetSuspended's error for an unknown kind
// or a bad name.
var ErrBadSuspension = errors.New("bad suspension")

// loadSuspensions reads the suspensions kept in the spool.
func (q *Queue) loadSuspensions() {
	set := map[string]string{}
	if q.deps.Spool != nil {
		err := q.deps.Spool.KV(suspendKV).ForEach("", func(k string, v []byte) error {
			set[k] = string(v)
			return nil
		})
		if err != nil {
			q.deps.Logger.Error("suspensions not loaded", "err", err)
		}
	}
	q.susp.Store(&set)
}

// Suspensions returns the tenants and campaigns suspended now, "tenant/NAME"
// or "delivery/ID" to who suspended them.
func (q *Queue) Suspensions() map[string]string {
	if p := q.susp.Load(); p != nil {
		return maps.Clone(*p)
	}
	return map[string]string{}
}

// SetSuspended suspends (on) or resumes a tenant or a campaign, durably,
// and writes an admin record. Resuming makes its held jobs due now and
// returns how many recipients that woke.
func (q *Queue) SetSuspended(kind, name, who string, on bool) (int, error) {
	switch {
	case kind != SuspendTenant && kind != SuspendDelivery:
		return 0, fmt.Errorf("%w: kind %q is not %s or %s", ErrBadSuspension, kind, SuspendTenant, SuspendDelivery)
	case name == "" || strings.ContainsAny(name, "/\r\n"):
		return 0, fmt.Errorf("%w: %s name %q", ErrBadSuspension, kind, name)
	case kind == SuspendTenant && tenants.Check(name) != nil:
		return 0, fmt.Errorf("%w: %v", ErrBadSuspension, tenants.Check(name))
	}
	key := kind + "/" + name
	q.suspMu.Lock()
	defer q.suspMu.Unlock()
	if q.deps.Spool != nil {
		kv := q.deps.Spool.KV(suspendKV)
		var err error
		if on {
			err = kv.Put(key, []byte(who))
		} else {
			err = kv.Delete(key)
		}
		if err != nil {
			return 0, err
		}
	}
	set := map[string]string{}
	if p := q.susp.Load(); p != nil {
		set = maps.Clone(*p)
	}
	action := "suspend " + key
	n := 0
	if on {
		set[key] = who
	} else {
		delete(set, key)
		action = "resume " + key
	}
	q.susp.Store(&set)
	if !on {
		n = q.wakeSuspended(kind, name)
	}
	q.admin("", action, who, fmt.Sprintf("%d recipient(s) made due", n))
	return n, nil
}

// suspension is the status of a message whose campaign or tenant is
// suspended, with a detail; "" when neither is.
func (q *Queue) suspension(m *spool.Message) (string, string) {
	p := q.susp.Load()
	if p == nil || len(*p) == 0 {
		return "", ""
	}
	if m.DeliveryID != "" {
		if who, ok := (*p)["delivery/"+m.DeliveryID]; ok {
			return StatusCampaignSuspended, fmt.Sprintf("campaign %s suspended by %s until resumed", m.DeliveryID, who)
		}
	}
	if m.Tenant != "" {
		if who, ok := (*p)["tenant/"+m.Tenant]; ok {
			return StatusTenantSuspended, fmt.Sprintf("tenant %q suspended by %s until resumed", m.Tenant, who)
		}
	}
	return "", ""
}

// wakeSuspended makes the jobs held by a resumed suspension due now.
func (q *Queue) wakeSuspended(kind, name string) int {
	q.mu.Lock()
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	q.mu.Unlock()
	now := q.now()
	n := 0
	for _, s := range sites {
		s.mu.Lock()
		woke := false
		for _, j := range s.jobs {
			if j.hold != StatusTenantSuspended && j.hold != StatusCampaignSuspended {
				continue
			}
			if (kind == SuspendTenant && j.e.m.Tenant == name) || (kind == SuspendDelivery && j.e.m.DeliveryID == name) {
				j.due, j.hold = now, ""
				n += len(j.rcpts)
				woke = true
			}
		}
		if woke {
			heapInit(&s.jobs)
		}
		s.mu.Unlock()
		if woke {
			s.poke()
		}
	}
	return n
}
