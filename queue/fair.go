package queue

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/tenants"
)

// Fair share among a site's senders: start-time fair queuing.
//
// Each job belongs to a flow: its tenant, else its campaign, else the
// site's other mail. Among jobs due at the same time (all new mail is due
// at once) the heap orders by a tag instead of arrival: a flow's jobs get
// tags one stride apart (stride = fairUnit / weight), starting from the
// site's virtual time (the highest tag claimed so far) or from where the
// flow's previous job ended, whichever is later. So a flow that queued
// 10,000 jobs holds tags far ahead, and a flow arriving later starts at
// the virtual time and interleaves with it: with equal weights each gets
// every other claim, whatever either queued; with weights 3 and 1, three
// to one. One flow alone is first in, first out, as before. The tag is
// computed once per push, O(1), so claiming costs what it did.
const fairUnit = 1 << 20

// sender names the flow a message's jobs share at a site: a tenant, a
// campaign, or (the zero flow) the rest.
type sender struct {
	campaign bool
	name     string
}

func flowOf(e *entry) sender {
	t := e.tag.Value()
	if t.tenant == "" && t.delivery != "" {
		return sender{campaign: true, name: t.delivery}
	}
	return sender{name: t.tenant}
}

// tagLocked gives j its fair tag. Caller holds s.mu.
func (s *site) tagLocked(j *job) uint64 {
	f := flowOf(j.e)
	w := 1
	if f.name != "" && !f.campaign {
		if cfg := s.q.config(); cfg != nil {
			w = cfg.Tenants.Weight(f.name)
		}
	}
	if s.flowNext == nil {
		s.flowNext = map[sender]uint64{}
	}
	tag := max(s.vtime, s.flowNext[f])
	s.flowNext[f] = tag + fairUnit/uint64(max(1, min(w, 1000)))
	if len(s.flowNext) > 4096 {
		// Flows that ended before the virtual time carry nothing: their
		// next job starts at the virtual time anyway.
		for k, n := range s.flowNext {
			if n <= s.vtime {
				delete(s.flowNext, k)
			}
		}
	}
	return tag
}

// servedLocked advances the virtual time past a claimed job's tag. Caller
// holds s.mu.
func (s *site) servedLocked(j *job) {
	if j.seq > s.vtime {
		s.vtime = j.seq
	}
}

// tenantHold is a tenant or campaign whose messages_per_hour is met at this
// site until a time: its jobs wait in the heap without asking the quota
// store again.
type tenantHold struct {
	until time.Time
	wait  Wait
}

// tenantLimit is the configuration of a job's tenant (zero: none).
func (s *site) tenantLimit(j *job) tenants.Limit {
	t := j.e.tenant()
	if t == "" {
		return tenants.Limit{}
	}
	return s.q.config().Tenants[t]
}

// takeTenant takes a token of the tenant's messages_per_hour for a claimed
// job. Refused, the job goes back due when the tenant's next token comes,
// with the tenant's status, and the site moves on to other flows' mail.
func (s *site) takeTenant(ctx context.Context, j *job, lim tenants.Limit, now time.Time) bool {
	t := j.e.tenant()
	return s.takeFlowRate(ctx, j, "tenant/"+t, lim.Key(t), lim.PerHour, StatusTenantQuota, fmt.Sprintf("tenant %q", t), now)
}

// takeCampaign does the same for the campaign's messages_per_hour (set
// when the delivery was created).
func (s *site) takeCampaign(ctx context.Context, j *job, perHour int, now time.Time) bool {
	id := j.e.delivery()
	return s.takeFlowRate(ctx, j, "delivery/"+id, "rate|campaign|"+id, perHour, StatusCampaignQuota, "campaign "+id, now)
}

// takeFlowRate is the hourly token of a tenant or a campaign (hold names
// it), remembered per site while it is refused so that the flow's other
// jobs are put back without asking the quota store again.
func (s *site) takeFlowRate(ctx context.Context, j *job, hold, key string, perHour int, status, who string, now time.Time) bool {
	s.mu.Lock()
	h, held := s.holds[hold]
	s.mu.Unlock()
	if held && now.Before(h.until) {
		s.deferJob(j, h.until, h.wait)
		return false
	}
	got, retryIn, err := s.q.deps.Quotas.TakeMessage(ctx, key, perHour)
	if err == nil && got {
		return true
	}
	retryIn = s.q.storeRetry(key, retryIn, err)
	until := now.Add(max(retryIn, time.Millisecond))
	w := Wait{Status: status, Key: key, Limit: perHour, InUse: quota.Burst(perHour), Until: until, Since: now,
		Detail: fmt.Sprintf("%s: %d messages per hour (key %s) met; its next message at %s (in %s); the site's other mail goes on",
			who, perHour, key, until.UTC().Format(time.RFC3339), retryIn.Round(time.Millisecond))}
	s.mu.Lock()
	if s.holds == nil {
		s.holds = map[string]tenantHold{}
	}
	for k, old := range s.holds {
		if !now.Before(old.until) {
			delete(s.holds, k)
		}
	}
	s.holds[hold] = tenantHold{until: until, wait: w}
	s.mu.Unlock()
	s.deferJob(j, until, w)
	return false
}

// deferJob puts a claimed job back due at until, keeping its fair tag, and
// marks it with the hold's status (explain shows it instead of "retry
// scheduled").
func (s *site) deferJob(j *job, until time.Time, w Wait) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetLocked(j)
	j.due = dueOf(until)
	j.hold = holdOf(w.Status)
	heap.Push(&s.jobs, j)
	if j.index == 0 {
		s.poke() // the runner may sleep past the new earliest due time
	}
}
