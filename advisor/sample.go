package advisor

import (
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
)

// SampleEvery is how often a node logs QuotaWait samples: often enough
// that every hour of waiting has several, rare enough to stay light (one
// record per waiting site per sample).
const SampleEvery = 5 * time.Minute

// Wait reasons of QuotaWait records.
const (
	WaitConnections = "connections"
	WaitHourly      = "hourly"
)

// WaitRecords are the QuotaWait records of one sample: one per site whose
// queued mail waits, at now, on its rule's connection or hourly quota. The
// delivery log has no other record of mail waiting on our own limits, and
// the advisor needs one to argue for raising them.
func WaitRecords(sites []queue.SiteView, now time.Time) []events.Record {
	var out []events.Record
	for _, s := range sites {
		if s.Wait == nil || s.Queued == 0 {
			continue
		}
		var reason string
		switch s.Wait.Status {
		case queue.StatusConnQuota:
			reason = WaitConnections
		case queue.StatusHourlyQuota:
			reason = WaitHourly
		default:
			continue
		}
		out = append(out, events.Record{Type: events.QuotaWait, Time: now, Site: s.Site, Rule: s.Wait.Rule,
			Reason: reason, Status: s.Wait.Status, Detail: s.Wait.Detail})
	}
	return out
}
