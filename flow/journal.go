package flow

import (
	"fmt"
	"log/slog"

	"github.com/penstock-mta/penstock/events"
)

// Journal records what flow control decides where an operator looks: each
// change and each local-problem verdict becomes a delivery-log record and
// a line in the node's log. Its methods are the controller's OnChange and
// OnLocal.
type Journal struct {
	Log    interface{ Write(*events.Record) }
	Logger *slog.Logger
	// Publish also hears every change made here (cluster: the other
	// nodes); nil: nobody. Set before traffic starts.
	Publish func(Change)
}

// Change records a state change.
func (j *Journal) Change(ch Change) {
	if j.Publish != nil {
		j.Publish(ch)
	}
	j.Log.Write(&events.Record{Type: events.FlowControl, Time: ch.Time, Site: ch.Site, SourceIP: ch.Source, State: ch.To,
		Status: fmt.Sprintf("%s -> %s", ch.From, ch.To), Detail: ch.Reason})
	j.Logger.Warn("flow control", "site", ch.Site, "source", ch.Source, "from", ch.From, "to", ch.To, "reason", ch.Reason,
		"attempts", ch.Attempts, "errors", ch.Errors, "local_problem", ch.Local)
}

// Local records the local-problem indicator going on or off.
func (j *Journal) Local(lp LocalProblem) {
	status := "cleared"
	if lp.Active {
		status = "local problem"
	}
	j.Log.Write(&events.Record{Type: events.LocalProblem, Time: lp.Time, Detail: lp.Detail, Status: status})
	if lp.Active {
		j.Logger.Error("LOCAL PROBLEM: "+lp.Detail, "error_sites", lp.ErrorSites, "active_sites", lp.ActiveSites, "dns_domains", lp.DNSDomains)
	} else {
		j.Logger.Warn(lp.Detail)
	}
}
