package mta

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// SMTP TLS reporting (RFC 8460): the queue records each connection's TLS
// outcome in m.tlsrpt; tlsReporter saves the counts every few seconds and,
// once a day at [tlsrpt] send_at (UTC), sends the finished days' reports
// when [tlsrpt] enabled says so.

// tlsFlushEvery is how often the day's counts are saved to the spool: what
// a crash can lose (a graceful stop saves them all).
const tlsFlushEvery = 5 * time.Second

func (m *MTA) tlsReporter(ctx context.Context) {
	defer m.wg.Done()
	t := time.NewTicker(tlsFlushEvery)
	defer t.Stop()
	lastRun := ""
	for {
		select {
		case <-ctx.Done():
			if err := m.tlsrpt.Flush(); err != nil {
				m.logger.Error("tlsrpt: saving the day's TLS outcomes", "err", err)
			}
			return
		case <-t.C:
		}
		if err := m.tlsrpt.Flush(); err != nil {
			m.logger.Warn("tlsrpt: saving the day's TLS outcomes", "err", err)
		}
		now := m.opts.Now().UTC()
		today := tlsrpt.Day(now)
		cfg := m.Config()
		off, err := cfg.TLSRPT.SendAtOffset()
		if err != nil || today == lastRun || now.Before(now.Truncate(24*time.Hour).Add(off)) {
			continue
		}
		lastRun = today
		m.sendTLSReports(ctx, cfg, now)
	}
}

// sendTLSReports sends the reports of the finished days (or, with
// reporting off, forgets the days older than a few).
func (m *MTA) sendTLSReports(ctx context.Context, cfg *config.Config, now time.Time) []tlsrpt.Outcome {
	if !cfg.TLSRPT.Enabled {
		if err := m.tlsrpt.Prune(tlsrpt.Day(now.Add(-3 * 24 * time.Hour))); err != nil {
			m.logger.Warn("tlsrpt: pruning old days", "err", err)
		}
		return nil
	}
	s := m.tlsSender(cfg)
	outs := s.SendDue(ctx, m.tlsrpt, now)
	for _, o := range outs {
		switch {
		case o.Err == nil:
			m.logger.Info("tlsrpt: report sent", "day", o.Day, "domain", o.Domain, "to", strings.Join(o.Sent, ","))
		case len(o.Sent) == 0 && o.Dropped:
			m.logger.Debug("tlsrpt: report not sent", "day", o.Day, "domain", o.Domain, "err", o.Err)
		default:
			m.logger.Warn("tlsrpt: report not sent", "day", o.Day, "domain", o.Domain, "sent", strings.Join(o.Sent, ","),
				"kept_for_next_run", !o.Dropped, "err", o.Err)
		}
	}
	return outs
}

func (m *MTA) tlsSender(cfg *config.Config) *tlsrpt.Sender {
	host := cfg.Server.Hostname
	return &tlsrpt.Sender{
		Resolver: m.Resolver,
		HTTP:     m.tlsHTTP,
		From:     "tlsrpt@" + host,
		Org:      tlsOrg(cfg),
		Now:      m.opts.Now,
		// The report goes through Penstock itself, signed like any other
		// message (RFC 8460 §5.3 asks for DKIM). No DSN of its failure.
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			_, err := m.intake.Store(ctx, from, []string{to}, msg, 0, "", m.opts.Now())
			return err
		},
	}
}

func tlsOrg(cfg *config.Config) tlsrpt.Org {
	host := cfg.Server.Hostname
	o := tlsrpt.Org{Name: cfg.TLSRPT.Organization, Contact: cfg.TLSRPT.Contact, Submitter: host}
	if o.Name == "" {
		o.Name = host
	}
	if o.Contact == "" {
		o.Contact = "postmaster@" + host
	}
	return o
}

// TLSReports is GET /api/v1/tlsrpt: every day held, as it would be sent.
func (b backend) TLSReports(domain string) api.TLSReportsView {
	cfg := b.m.Config()
	v := api.TLSReportsView{Enabled: cfg.TLSRPT.Enabled, SendAt: cfg.TLSRPT.SendAt, Counts: b.m.tlsrpt.Counts(),
		Reports: []api.TLSReportOfDomain{}}
	org := tlsOrg(cfg)
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

// tlsHTTPClient posts reports to https: rua URIs: certificates verified
// against the system's roots (RFC 8460 §5.4), a bounded time.
func tlsHTTPClient() *http.Client { return &http.Client{Timeout: time.Minute} }
