package mta

import (
	"context"

	"github.com/penstock-mta/penstock/api"
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

// TLSReports is GET /api/v1/tlsrpt: every day held, as it would be sent.
func (b backend) TLSReports(domain string) api.TLSReportsView {
	cfg := b.m.Config()
	v := api.TLSReportsView{Enabled: cfg.TLSRPT.Enabled, SendAt: cfg.TLSRPT.SendAt, Counts: b.m.tlsrpt.Counts(),
		Reports: []api.TLSReportOfDomain{}}
	org := tlsrpt.OrgOf(cfg)
	for _, day := range b.m.tlsrpt.Days() {
		reps, err := b.m.tlsrpt.Reports(day, domain, org)
		if err != nil {
			continue
		}
		for _, r := range reps {
			v.Reports = append(v.Reports, api.TLSReportOfDomain{Day: day, Domain: r.Domain, Report: r})
		}
	}
	return v
}
