package mta

import (
	"fmt"

	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/metrics"
)

// startEventsOut starts the webhook, stream and PostgreSQL outputs. They
// follow the delivery log's files with cursors of their own, so nothing
// they do can slow delivery.
func (m *MTA) startEventsOut() error {
	eo, err := eventsout.New(m.startCfg, eventsout.Options{KV: m.Spool.KV(eventsout.Bucket), Logger: m.logger})
	if err == nil {
		err = eo.Start()
	}
	if err != nil {
		return fmt.Errorf("event outputs: %w", err)
	}
	m.eventsOut = eo
	return nil
}

// EventsOutStatus is each event output's lag, failures and last error;
// nil when none is configured.
func (m *MTA) EventsOutStatus() []eventsout.Status { return m.eventsOut.Status() }

func (s metricsSource) EventsOut() []metrics.Output {
	var out []metrics.Output
	for _, st := range s.m.EventsOutStatus() {
		out = append(out, metrics.Output{Name: st.Name, Lag: st.Lag, Failures: st.Failures})
	}
	return out
}
