package mta

import "github.com/penstock-mta/penstock/eventsout"

// EventsOutStatus is each event output's lag, failures and last error;
// nil when none is configured.
func (m *MTA) EventsOutStatus() []eventsout.Status { return m.eventsOut.Status() }
