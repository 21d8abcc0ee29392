package mta

import (
	"context"

	"github.com/penstock-mta/penstock/tlsrpt"
)

// newTLSDaily is the TLS reports' daily job (package tlsrpt): the reports
// go through Penstock itself, without a DSN of their failure.
func (m *MTA) newTLSDaily() *tlsrpt.Daily {
	return &tlsrpt.Daily{Recorder: m.tlsrpt, Config: m.Config, Resolver: m.Resolver, Logger: m.logger, Now: m.opts.Now,
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			_, err := m.intake.Store(ctx, from, []string{to}, msg, 0, "", m.opts.Now())
			return err
		}}
}
