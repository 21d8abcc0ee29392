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
//
// In a cluster the set is shared (ShareSuspensions): a local change is
// handed to the cluster before it applies here, so that a full adoption
// of the cluster's set (AdoptSuspensions, at each reconnection) that
// runs meanwhile already counts it; the other nodes' changes arrive
// through AdoptSuspension. An adopted change is applied like a local one
// (kept in the spool, held jobs woken on resume) but not sent back.

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
	if err := checkSuspension(kind, name); err != nil {
		return 0, err
	}
	key := kind + "/" + name
	if share := q.suspShare.Load(); share != nil {
		(*share)(key, who, on)
	}
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

func checkSuspension(kind, name string) error {
	switch {
	case kind != SuspendTenant && kind != SuspendDelivery:
		return fmt.Errorf("%w: kind %q is not %s or %s", ErrBadSuspension, kind, SuspendTenant, SuspendDelivery)
	case name == "" || strings.ContainsAny(name, "/\r\n"):
		return fmt.Errorf("%w: %s name %q", ErrBadSuspension, kind, name)
	case kind == SuspendTenant && tenants.Check(name) != nil:
		return fmt.Errorf("%w: %v", ErrBadSuspension, tenants.Check(name))
	}
	return nil
}

// ShareSuspensions makes every later local suspension or resume go to
// share too (key "tenant/NAME" or "delivery/ID"), before it applies here.
// share must not block.
func (q *Queue) ShareSuspensions(share func(key, who string, on bool)) {
	q.suspShare.Store(&share)
}

// AdoptSuspension applies a suspension (on) or resume decided on another
// node: kept in the spool, held jobs made due on resume, not shared back.
// A bad key is ignored.
func (q *Queue) AdoptSuspension(key, who string, on bool) {
	q.suspMu.Lock()
	defer q.suspMu.Unlock()
	set := q.Suspensions()
	if on {
		if cur, ok := set[key]; ok && cur == who {
			return
		}
		set[key] = who
	} else {
		if _, ok := set[key]; !ok {
			return
		}
		delete(set, key)
	}
	q.replaceSuspensions(set, who)
}

// AdoptSuspensions makes all the set of suspensions ("tenant/NAME" or
// "delivery/ID" to who), the cluster's: what is not in it is resumed
// here (its held jobs made due), what is new is suspended. Bad keys are
// ignored.
func (q *Queue) AdoptSuspensions(all map[string]string) {
	q.suspMu.Lock()
	defer q.suspMu.Unlock()
	q.replaceSuspensions(maps.Clone(all), "the cluster")
}

// replaceSuspensions installs next, with suspMu held: the spool's copy
// follows (an error is logged: the set in memory still applies), then the
// resumed suspensions' jobs are woken (resumedBy names who resumed
// them). Each change is an admin record.
func (q *Queue) replaceSuspensions(next map[string]string, resumedBy string) {
	if next == nil {
		next = map[string]string{}
	}
	for k := range next {
		kind, name, _ := strings.Cut(k, "/")
		if checkSuspension(kind, name) != nil {
			delete(next, k)
		}
	}
	cur := q.Suspensions()
	var kv spool.KV
	if q.deps.Spool != nil {
		kv = q.deps.Spool.KV(suspendKV)
	}
	for k, who := range next {
		if old, ok := cur[k]; ok && old == who {
			continue
		}
		if kv != nil {
			if err := kv.Put(k, []byte(who)); err != nil {
				q.deps.Logger.Error("suspension not kept in the spool", "key", k, "err", err)
			}
		}
		if _, ok := cur[k]; !ok {
			q.admin("", "suspend "+k, who, "decided on another node")
		}
	}
	var resumed []string
	for k := range cur {
		if _, ok := next[k]; ok {
			continue
		}
		if kv != nil {
			if err := kv.Delete(k); err != nil {
				q.deps.Logger.Error("resume not kept in the spool", "key", k, "err", err)
			}
		}
		resumed = append(resumed, k)
	}
	q.susp.Store(&next)
	for _, k := range resumed {
		kind, name, _ := strings.Cut(k, "/")
		n := q.wakeSuspended(kind, name)
		q.admin("", "resume "+k, resumedBy, fmt.Sprintf("decided on another node; %d recipient(s) made due", n))
	}
}

// suspension is the status of a message whose campaign or tenant is
// suspended, with a detail; "" when neither is.
func (q *Queue) suspension(deliveryID, tenant string) (string, string) {
	p := q.susp.Load()
	if p == nil || len(*p) == 0 {
		return "", ""
	}
	if deliveryID != "" {
		if who, ok := (*p)["delivery/"+deliveryID]; ok {
			return StatusCampaignSuspended, fmt.Sprintf("campaign %s suspended by %s until resumed", deliveryID, who)
		}
	}
	if tenant != "" {
		if who, ok := (*p)["tenant/"+tenant]; ok {
			return StatusTenantSuspended, fmt.Sprintf("tenant %q suspended by %s until resumed", tenant, who)
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
			if h := j.hold.String(); h != StatusTenantSuspended && h != StatusCampaignSuspended {
				continue
			}
			if (kind == SuspendTenant && j.e.tenant() == name) || (kind == SuspendDelivery && j.e.delivery() == name) {
				j.due, j.hold = dueOf(now), 0
				n += len(j.rcpts)
				woke = true
			}
		}
		if woke {
			heapInit(&s.jobs)
		}
		s.mu.Unlock()
		if woke {
			s.nudge()
		}
	}
	return n
}
