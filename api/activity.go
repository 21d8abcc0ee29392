package api

import (
	"sync"
	"time"

	"github.com/penstock-mta/penstock/events"
)

// Activity keeps what the dashboard plots, fed by the delivery log: events
// per minute over the last hour, and each site's recent flow-control
// changes. It is bounded: 60 minutes, 50 changes per site, 10,000 sites.
type Activity struct {
	mu      sync.Mutex
	minutes [60]Minute
	flow    map[string][]FlowChange
}

const (
	flowChangesPerSite = 50
	flowSitesMax       = 10000
)

// NewActivity returns an empty Activity; feed it with Run.
func NewActivity() *Activity { return &Activity{flow: map[string][]FlowChange{}} }

// Run consumes the delivery log until the channel closes.
func (a *Activity) Run(ch <-chan *events.Record) {
	for r := range ch {
		a.add(r)
	}
}

func (a *Activity) add(r *events.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Type == events.FlowControl {
		l := a.flow[r.Site]
		if l == nil && len(a.flow) >= flowSitesMax {
			return
		}
		if len(l) >= flowChangesPerSite {
			l = append(l[:0], l[1:]...)
		}
		a.flow[r.Site] = append(l, FlowChange{Time: r.Time, State: r.State, Change: r.Status, Reason: r.Detail})
		return
	}
	m := r.Time.Unix() / 60
	slot := &a.minutes[m%60]
	if slot.Minute != m*60 {
		*slot = Minute{Minute: m * 60}
	}
	switch r.Type {
	case events.Reception:
		slot.Received++
	case events.Delivery:
		slot.Delivered++
	case events.TransientFailure:
		slot.Deferred++
	case events.Bounce:
		slot.Bounced++
	case events.Expiration:
		slot.Expired++
	case events.Suppressed:
		slot.Suppressed++
	}
}

// Timeline returns the last n minutes, oldest first, with empty minutes
// filled in.
func (a *Activity) Timeline(now time.Time, n int) []Minute {
	n = min(max(n, 1), 60)
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := now.Unix() / 60
	out := make([]Minute, 0, n)
	for m := cur - int64(n) + 1; m <= cur; m++ {
		slot := a.minutes[m%60]
		if slot.Minute != m*60 {
			slot = Minute{Minute: m * 60}
		}
		out = append(out, slot)
	}
	return out
}

// FlowChanges returns a site's recent flow-control changes, oldest first.
func (a *Activity) FlowChanges(site string) []FlowChange {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]FlowChange(nil), a.flow[site]...)
}
