package mta

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/outcome"
	"github.com/penstock-mta/penstock/reports"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// countsForQuarantine is the outcome stage's rule, also applied to
// asynchronous bounces.
func countsForQuarantine(v bounce.Verdict) bool { return outcome.CountsForQuarantine(v) }

// verpKey is the secret that signs VERP return paths, made once and kept in
// the spool.
func (m *MTA) verpKey() ([]byte, error) {
	kv := m.Spool.KV("bounce")
	k, err := kv.Get("verp-key")
	if err == nil && len(k) >= 16 {
		return k, nil
	}
	if err != nil && !errors.Is(err, spool.ErrNotFound) {
		return nil, err
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, kv.Put("verp-key", k)
}

// setupBounces prepares VERP return paths when [bounce] domain is set.
func (m *MTA) setupBounces(cfg *config.Config) error {
	if cfg.Bounce.Domain == "" {
		return nil
	}
	key, err := m.verpKey()
	if err != nil {
		return fmt.Errorf("VERP key: %w", err)
	}
	m.verp = &reports.VERP{Domain: cfg.Bounce.Domain, Key: key}
	return nil
}

// returnPath is the MAIL FROM of a delivery: VERP-encoded when bounces are
// handled here, so a late bounce names message and recipient.
func (m *MTA) returnPath(msg *spool.Message, rcpts []int) string {
	if m.verp == nil || msg.Sender == "" || len(rcpts) == 0 {
		return msg.Sender
	}
	// Bound to the address: a report to it may act on that address only.
	return m.verp.Encode(msg.ID.String(), rcpts[0], msg.Recipients[rcpts[0]].Addr)
}

// startBounceListener accepts asynchronous bounces and complaints for the
// bounce domain, from anyone; package reports decides what they may do.
func (m *MTA) startBounceListener(cfg *config.Config) error {
	if cfg.Bounce.Listen == "" {
		return nil
	}
	b := cfg.Bounce
	nets, domains := b.Trusted()
	m.reports = reports.New(reports.Config{VERP: m.verp, TrustedNets: nets, TrustedDomains: domains,
		MaxReportSize: b.MaxReportSize, PerMinute: b.ReportsPerMinute, Dir: filepath.Join(cfg.Server.LogDir, "unparsed-reports"),
		MaxBytes: b.UnparsedMaxBytes, MaxFiles: b.UnparsedMaxFiles, MinFree: b.UnparsedMinFree},
		reports.Deps{Quarantine: m.Quarantine, Log: m.Log, Logger: m.logger, Now: m.opts.Now, Classifier: m.Bounce,
			CountsTowardQuarantine: countsForQuarantine, Top: m.bounceTop, Resolver: m.Resolver})
	any4, any6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	srv, err := smtpserver.New(smtpserver.Config{Listen: cfg.Bounce.Listen, Hostname: cfg.Server.Hostname,
		AllowedNetworks: []netip.Prefix{any4, any6}, MaxMessageSize: b.MaxReportSize, MaxRecipients: 10, MaxConnections: 200},
		m.reports, m.logger)
	if err != nil {
		return err
	}
	ln := m.opts.BounceListener
	if ln == nil {
		ln, err = net.Listen("tcp", cfg.Bounce.Listen)
		if err != nil {
			return fmt.Errorf("[bounce] listen %s: %w", cfg.Bounce.Listen, err)
		}
	}
	m.bounceSrv, m.bounceLn = srv, ln
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtpserver.ErrServerClosed) {
			m.logger.Error("bounce listener stopped", "err", err)
		}
	}()
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

// Reports serves api.Reports.
func (b backend) Reports() reports.Stats { return b.m.Reports() }
