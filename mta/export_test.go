package mta

import (
	"context"
	"time"

	"github.com/penstock-mta/penstock/tlsrpt"
)

// SendTLSReportsAt runs the daily TLS report job as if the clock said now.
func (m *MTA) SendTLSReportsAt(now time.Time) []tlsrpt.Outcome {
	return m.sendTLSReports(context.Background(), m.Config(), now)
}
