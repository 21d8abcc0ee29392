package campaigns

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/queue"
)

// rateWindow is how far back a delivery's rate looks: the rate follows
// what happens now, not the average since the start (a burst in the
// first seconds, then a suspended site, must not promise an early end).
const rateWindow = time.Minute

// heldStatuses are the queue statuses whose end nobody can predict from the
// rate: an operator's suspension, flow control's back-off, a quota met for
// the hour, a domain whose MX cannot be found. Recipients in them are left
// out of the ETA, and the ETA says so.
var heldStatuses = map[string]string{
	queue.StatusSuspended:   "suspended site",
	queue.StatusFlowControl: "dynamic flow control",
	queue.StatusHourlyQuota: "hourly quota met",
	queue.StatusMXFailed:    "MX lookup failed",
}

// perSecond counts events in each second of the last rateWindow. A list
// of timestamps cut to a fixed length would undercount a fast delivery
// (thousands a second); this is 60 slots whatever the rate.
type perSecond struct {
	sec [rateWindow / time.Second]int64 // the unix second a slot counts
	n   [rateWindow / time.Second]int
}

func (p *perSecond) add(t time.Time) {
	s := t.Unix()
	i := s % int64(len(p.sec))
	switch {
	case p.sec[i] > s:
		return // a minute older than the slot's second: out of any window
	case p.sec[i] < s:
		p.sec[i], p.n[i] = s, 0
	}
	p.n[i]++
}

// count is the events of the last rateWindow up to now.
func (p *perSecond) count(now time.Time) int {
	total := 0
	for i, s := range p.sec {
		if age := now.Unix() - s; age >= 0 && age < int64(len(p.sec)) {
			total += p.n[i]
		}
	}
	return total
}

// deliveryRate is a delivery's deliveries per minute: those of the last
// rateWindow over the time the window spans, which is shorter while the
// first delivery (first) is younger than the window: 2,322 in the first
// 3 s is 46,440/min, not 2,322/min.
func deliveryRate(now, first time.Time, recent *perSecond) float64 {
	n := recent.count(now)
	if n == 0 {
		return 0
	}
	span := rateWindow
	if age := now.Sub(first); age < span {
		// Whole seconds: the first second is counted from its start.
		span = max(now.Sub(first.Truncate(time.Second)), time.Second)
	}
	return float64(n) * float64(time.Minute) / float64(span)
}

// deliveryETA is when the queued recipients should be done at rate per
// minute, and a note when the estimate leaves some out or cannot be made.
// byStatus (nil when not known) counts the queued recipients by queue
// status: those held (heldStatuses) are left out of the ETA; when all are
// held, or nothing finished in the last minute, there is no ETA and the
// note says why.
func deliveryETA(now time.Time, queued int, rate float64, byStatus map[string]int) (eta *time.Time, held int, note string) {
	if queued <= 0 {
		return nil, 0, ""
	}
	var why []string
	for st, label := range heldStatuses {
		if n := byStatus[st]; n > 0 {
			held += n
			why = append(why, fmt.Sprintf("%s %d", label, n))
		}
	}
	slices.Sort(why)
	held = min(held, queued)
	reasons := strings.Join(why, ", ")
	switch {
	case held == queued:
		return nil, held, fmt.Sprintf("unknown: all %d queued recipients are held (%s)", queued, reasons)
	case rate <= 0:
		return nil, held, "unknown: nothing finished in the last minute"
	}
	t := now.Add(time.Duration(float64(queued-held) / rate * float64(time.Minute)))
	if held > 0 {
		note = fmt.Sprintf("for the %d recipients not held; %d held (%s) have no ETA", queued-held, held, reasons)
	}
	return &t, held, note
}
