package mta

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/reports"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// flagDSN on a spooled message: send a DSN to its sender when a recipient
// finally fails (relayed SMTP mail; never campaigns, never the null sender).
const flagDSN = 1

// countsForQuarantine: a hard failure, or a soft one that is about the
// address itself. A message we could not build says nothing about the
// address.
func countsForQuarantine(v bounce.Verdict) bool {
	if v.Reason == bounce.BadMessage {
		return false
	}
	return v.Class == bounce.Hard || (v.Class == bounce.Soft && v.Reason.RecipientLevel())
}

// onOutcome is the queue's hook for every attempt's outcome: campaign
// counts, metrics, the quarantine, and DSNs to senders.
func (m *MTA) onOutcome(msg *spool.Message, i int, o queue.Outcome, site string) {
	now := m.opts.Now()
	addr := msg.Recipients[i].Addr
	if o.Final && msg.DeliveryID != "" {
		m.deliveries.final(msg, o, now)
	}
	switch {
	case o.Cancelled:
	case o.Delivered:
		if !msg.Received.IsZero() {
			m.metrics.ObserveDelivered(now.Sub(msg.Received))
		}
		if err := m.Quarantine.Delivered(addr); err != nil {
			m.logger.Warn("quarantine", "addr", addr, "err", err)
		}
	case !o.Expired:
		v := o.Verdict
		if countsForQuarantine(v) {
			_, _, err := m.Quarantine.Failure(addr, quarantine.Failure{Time: now, Code: o.Code, Enhanced: o.Enhanced,
				Text: o.Text, Reason: string(v.Reason), Class: string(v.Class), Site: site, MessageID: msg.ID.String()})
			if err != nil && !errors.Is(err, quarantine.ErrBadAddress) {
				m.logger.Warn("quarantine", "addr", addr, "err", err)
			}
		}
	}
	if o.Final && !o.Delivered && !o.Cancelled && msg.Flags&flagDSN != 0 && msg.Sender != "" && m.Config().Delivery.DSN {
		if err := m.sendDSN(msg, i, o, now); err != nil {
			m.logger.Error("DSN to the sender not sent", "id", msg.ID.String(), "sender", msg.Sender, "err", err)
		}
	}
}

// sendDSN queues an RFC 3464 report to the sender of a message whose
// recipient finally failed.
func (m *MTA) sendDSN(msg *spool.Message, i int, o queue.Outcome, now time.Time) error {
	host := m.Config().Server.Hostname
	status := o.Enhanced
	if status == "" || status[0] == '4' {
		status = "5.0.0" // final failure; a temporary code that expired is final now
		if o.Expired {
			status = "4.4.7" // RFC 3463: delivery time expired
		}
	}
	diag := ""
	if o.Code != 0 {
		diag = "smtp; " + strings.TrimSpace(fmt.Sprintf("%d %s %s", o.Code, o.Enhanced, o.Text))
	} else if o.Text != "" {
		diag = "x-penstock; " + o.Text
	}
	r := msg.Recipients[i]
	if o.Expired && r.LastText != "" {
		diag = "smtp; " + strings.TrimSpace(fmt.Sprintf("%d %s %s", r.LastCode, r.LastEnhanced, r.LastText))
	}
	var headers []byte
	if body, err := m.Spool.Body(msg.ID); err == nil && body != nil && msg.Flags&flagRequireTLS == 0 {
		// A REQUIRETLS message's content never leaves but over verified
		// TLS (RFC 8689): its DSN carries none of it.
		if k := bytes.Index(body, []byte("\r\n\r\n")); k >= 0 {
			headers = body[:k+2]
		}
	}
	b, err := dsn.Compose{ReportingMTA: host, From: "MAILER-DAEMON@" + host, To: msg.Sender, Arrival: msg.Received,
		Failed:          []dsn.Failed{{Recipient: r.Addr, Status: status, Action: "failed", Diagnostic: diag, LastAttempt: now}},
		OriginalHeaders: headers, Date: now}.Bytes()
	if err != nil {
		return err
	}
	// The null sender: a DSN never causes another one (RFC 5321 §4.5.5).
	_, err = m.store(context.Background(), "", []string{msg.Sender}, b, 0, now)
	return err
}

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

// feedTop counts failure replies for `penstock bounces`, from the
// delivery log (a statistic: a record dropped under load is no harm).
func (m *MTA) feedTop(ch <-chan events.Record) {
	for r := range ch {
		if (r.Type == events.Bounce || r.Type == events.TransientFailure) && r.Text != "" && r.Status != "asynchronous bounce" {
			m.bounceTop.AddAt(r.Time, r.Site, r.Code, r.EnhancedCode, bounce.Normalize(r.Text),
				bounce.Verdict{Reason: bounce.Reason(r.Reason), Class: bounce.Class(r.Class)})
		}
	}
}
