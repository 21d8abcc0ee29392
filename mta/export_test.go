package mta

import (
	"context"
	"time"

	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// SendTLSReportsAt runs the daily TLS report job as if the clock said now.
func (m *MTA) SendTLSReportsAt(now time.Time) []tlsrpt.Outcome {
	return m.newTLSDaily().SendDue(context.Background(), now)
}

// DKIMStatus is the signing stage's status by From domain.
func (m *MTA) DKIMStatus() []dkim.DomainStatus { return m.dkim.Domains() }
