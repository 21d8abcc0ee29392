package mta

import (
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/outcome"
	"github.com/penstock-mta/penstock/reports"
	"github.com/penstock-mta/penstock/smtpserver"
)

// startBounceListener accepts asynchronous bounces and complaints for the
// bounce domain, from anyone; package reports decides what they may do.
func (m *MTA) startBounceListener(cfg *config.Config) error {
	if cfg.Bounce.Listen == "" {
		return nil
	}
	m.reports = reports.New(reports.ConfigFrom(cfg, m.verp),
		reports.Deps{Quarantine: m.Quarantine, Log: m.Log, Logger: m.logger, Now: m.opts.Now, Classifier: m.Bounce,
			CountsTowardQuarantine: outcome.CountsForQuarantine, Top: m.bounceTop, Resolver: m.Resolver})
	srv, err := smtpserver.New(reports.ServerConfig(cfg), m.reports, m.logger)
	if err != nil {
		return err
	}
	ln, err := m.listen(m.opts.BounceListener, "[bounce]", cfg.Bounce.Listen)
	if err != nil {
		return err
	}
	m.bounceSrv, m.bounceLn = srv, ln
	m.serve("bounce listener", func() error { return srv.Serve(ln) })
	m.logger.Info("bounce listener", "addr", ln.Addr().String(), "domain", cfg.Bounce.Domain)
	return nil
}

// BounceAddr is the bounce listener's address ("" when disabled).
func (m *MTA) BounceAddr() string {
	if m.bounceLn == nil {
		return ""
	}
	return m.bounceLn.Addr().String()
}

// Reports is the bounce listener's tally (zero when it is disabled).
func (m *MTA) Reports() reports.Stats {
	if m.reports == nil {
		return reports.Stats{}
	}
	return m.reports.Stats()
}
