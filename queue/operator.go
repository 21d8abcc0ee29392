package queue

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/spool"
)

// Operator actions: suspend, resume, retry and purge a site, cancel a
// campaign. Each takes who asked and writes an AdminAction record to the
// delivery log (docs/ARCHITECTURE.md §9 says how to add one).

// ErrUnknownSite is returned by operator actions on a name that is neither
// a known site nor a domain with queued mail.
var errUnknownSite = errors.New("unknown site or domain (no mail queued for it)")

// ErrUnknownSite reports whether err means the site or domain is unknown.
func ErrUnknownSite(err error) bool { return errors.Is(err, errUnknownSite) }

// Suspend stops all traffic to a site (by site key or domain) until Resume,
// or for d when d > 0.
func (q *Queue) Suspend(name string, d time.Duration, who string) error {
	s := q.findSite(name)
	if s == nil {
		return fmt.Errorf("%s: %w", name, errUnknownSite)
	}
	now := q.now()
	s.mu.Lock()
	if s.gone {
		// Swept since findSite: it had no mail for an hour.
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", name, errUnknownSite)
	}
	s.opSuspended = true
	s.opUntil = time.Time{}
	if d > 0 {
		s.opUntil = now.Add(d)
	}
	s.mu.Unlock()
	s.nudge()
	q.admin(s.key, "suspend", who, fmt.Sprintf("for %s", durText(d)))
	return nil
}

// Resume ends an operator suspension and any flow-control backoff or
// suspension of the site.
func (q *Queue) Resume(name, who string) error {
	s := q.findSite(name)
	if s == nil {
		return fmt.Errorf("%s: %w", name, errUnknownSite)
	}
	s.mu.Lock()
	s.opSuspended = false
	s.opUntil = time.Time{}
	s.wait = Wait{}
	s.mu.Unlock()
	if q.deps.Flow != nil {
		q.deps.Flow.Reset(s.key)
	}
	s.nudge()
	q.admin(s.key, "resume", who, "")
	return nil
}

// Retry makes every queued recipient of a site due now.
func (q *Queue) Retry(name, who string) (int, error) {
	s := q.findSite(name)
	if s == nil {
		return 0, fmt.Errorf("%s: %w", name, errUnknownSite)
	}
	now := q.now()
	s.mu.Lock()
	n := 0
	for _, j := range s.jobs {
		if j.due.After(now) {
			j.due = dueOf(now)
			n += len(j.rcpts)
		}
	}
	// Every due time moved to now or stayed earlier: the order is intact
	// except among equals, which heap.Init settles.
	heapInit(&s.jobs)
	s.mu.Unlock()
	s.nudge()
	q.admin(s.key, "retry", who, fmt.Sprintf("%d recipient(s) made due", n))
	return n, nil
}

// Purge cancels every queued recipient of a site (or, with a domain, of
// that domain only).
func (q *Queue) Purge(name, who string) (int, error) {
	s := q.findSite(name)
	if s == nil {
		return 0, fmt.Errorf("%s: %w", name, errUnknownSite)
	}
	domain := strings.ToLower(strings.TrimSuffix(name, "."))
	whole := domain == s.key
	s.mu.Lock()
	var purged, kept []*job
	for _, j := range s.jobs {
		if whole || j.domain.Value() == domain {
			j.index = -1
			purged = append(purged, j)
			q.tally.move(&s.queued, -len(j.rcpts))
		} else {
			kept = append(kept, j)
		}
	}
	s.jobs = kept
	heapInit(&s.jobs)
	s.mu.Unlock()
	n := q.cancelJobs(purged, s.key, who)
	s.nudge()
	q.admin(s.key, "purge", who, fmt.Sprintf("%d recipient(s) purged", n))
	return n, nil
}

// CancelDelivery cancels every queued recipient of a campaign, at every
// site (an operator action: it scans the queues once).
func (q *Queue) CancelDelivery(deliveryID, who string) int {
	q.mu.Lock()
	if q.cancelled == nil {
		q.cancelled = map[string]bool{}
	}
	// Jobs on a connection now are cancelled when they come back (apply).
	q.cancelled[deliveryID] = true
	sites := make([]*site, 0, len(q.sites))
	for _, s := range q.sites {
		sites = append(sites, s)
	}
	var held []*job
	for _, d := range q.domains {
		kept := d.pending[:0]
		for _, j := range d.pending {
			if j.e.delivery() == deliveryID {
				held = append(held, j)
				q.tally.move(&d.held, -len(j.rcpts))
			} else {
				kept = append(kept, j)
			}
		}
		d.pending = kept
	}
	q.mu.Unlock()
	n := q.cancelJobs(held, "", who)
	for _, s := range sites {
		s.mu.Lock()
		var out []*job
		kept := s.jobs[:0]
		for _, j := range s.jobs {
			if j.e.delivery() == deliveryID {
				j.index = -1
				out = append(out, j)
				q.tally.move(&s.queued, -len(j.rcpts))
			} else {
				kept = append(kept, j)
			}
		}
		for i := len(kept); i < len(s.jobs); i++ {
			s.jobs[i] = nil
		}
		s.jobs = kept
		heapInit(&s.jobs)
		s.mu.Unlock()
		n += q.cancelJobs(out, s.key, who)
	}
	q.admin("", "cancel delivery "+deliveryID, who, fmt.Sprintf("%d recipient(s) cancelled", n))
	return n
}

// cancelJobs marks the queued recipients of jobs taken out of the queues
// as cancelled, durably, with one AdminAction record each.
func (q *Queue) cancelJobs(jobs []*job, site, who string) int {
	n := 0
	now := q.now()
	for _, j := range jobs {
		e := j.e
		m, err := q.hold(e)
		if err != nil {
			if !errors.Is(err, spool.ErrNotFound) {
				q.deps.Logger.Error("spool read failed", "id", e.id.String(), "err", err)
			}
			continue
		}
		mu := q.lockOf(e)
		mu.Lock()
		for _, ri := range j.rcpts {
			r := &m.Recipients[ri]
			if r.State.Final() {
				continue
			}
			r.State = spool.Cancelled
			e.pending--
			n++
			q.deps.Log.Write(&events.Record{Type: events.AdminAction, Time: now, ID: m.ID.String(), Recipient: r.Addr,
				Sender: m.Sender, DeliveryID: m.DeliveryID, Site: site, Status: "cancelled by " + who})
		}
		if err := q.deps.Spool.Update(m); err != nil {
			q.deps.Logger.Error("spool update failed", "id", m.ID.String(), "err", err)
		}
		mu.Unlock()
		if q.deps.Outcome != nil {
			for _, ri := range j.rcpts {
				if m.Recipients[ri].State == spool.Cancelled {
					q.deps.Outcome(m, ri, Outcome{Final: true, Cancelled: true}, site)
				}
			}
		}
		q.drop(e) // the update above is durable
	}
	return n
}

func (q *Queue) isCancelled(deliveryID string) bool {
	if deliveryID == "" {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cancelled[deliveryID]
}

func (q *Queue) admin(site, action, who, detail string) {
	q.deps.Log.Write(&events.Record{Type: events.AdminAction, Time: q.now(), Site: site,
		Status: action + " by " + who, Detail: detail})
	q.deps.Logger.Info("operator action", "action", action, "site", site, "by", who, "detail", detail)
}

func durText(d time.Duration) string {
	if d <= 0 {
		return "until resumed"
	}
	return d.String()
}
