package mta

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/outcome"
	"github.com/penstock-mta/penstock/quarantine"
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
	m.verp = &dsn.VERP{Prefix: dsn.DefaultPrefix, Domain: cfg.Bounce.Domain, Key: key}
	return nil
}

// returnPath is the MAIL FROM of a delivery: VERP-encoded when bounces are
// handled here, so a late bounce names message and recipient.
func (m *MTA) returnPath(msg *spool.Message, rcpts []int) string {
	if m.verp == nil || msg.Sender == "" || len(rcpts) == 0 {
		return msg.Sender
	}
	return m.verp.Encode(msg.ID.String(), rcpts[0])
}

// startBounceListener accepts asynchronous bounces and complaints for the
// bounce domain, from anyone.
func (m *MTA) startBounceListener(cfg *config.Config) error {
	if cfg.Bounce.Listen == "" {
		return nil
	}
	any4, any6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	srv, err := smtpserver.New(smtpserver.Config{Listen: cfg.Bounce.Listen, Hostname: cfg.Server.Hostname,
		AllowedNetworks: []netip.Prefix{any4, any6}, MaxMessageSize: dsn.MaxSize, MaxRecipients: 10, MaxConnections: 200},
		bounceAcceptor{m}, m.logger)
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

type bounceAcceptor struct{ m *MTA }

var errNotBounceDomain = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
	Message: "relaying denied: this listener only takes bounces for its bounce domain"}

// Accept takes a report addressed to a VERP return path. A report that
// cannot be parsed is kept on disk and logged, never lost.
func (a bounceAcceptor) Accept(ctx context.Context, env *smtpserver.Envelope, body []byte) (string, error) {
	m := a.m
	if m.verp == nil {
		return "", errNotBounceDomain
	}
	var msgID string
	rcptIdx := -1
	for _, to := range env.To {
		at := strings.LastIndexByte(to, '@')
		if at < 0 || !strings.EqualFold(to[at+1:], m.verp.Domain) {
			return "", errNotBounceDomain
		}
		if id, i, err := m.verp.Decode(to); err == nil {
			msgID, rcptIdx = id, i
		}
	}
	now := m.opts.Now()
	ref := "b" + strconv.FormatInt(now.UnixNano(), 36)
	rep, err := dsn.Parse(body)
	if err != nil {
		path := m.keepUnparsed(ref, body)
		m.Log.Write(&events.Record{Type: events.Bounce, Time: now, ID: msgID, Status: "asynchronous report not understood",
			Detail: fmt.Sprintf("%v; kept in %s", err, path)})
		m.logger.Warn("asynchronous report not understood, kept", "err", err, "file", path)
		return ref, nil
	}
	switch rep.Kind {
	case dsn.KindAutoReply:
		m.logger.Debug("auto-reply to a bounce address ignored", "from", env.From, "subject", rep.Subject)
	case dsn.KindARF:
		addr := ""
		if rep.Feedback != nil {
			addr = rep.Feedback.OriginalRcptTo
		}
		addr = strings.Trim(addr, "<> ")
		if addr == "" {
			m.keepUnparsed(ref, body)
			m.logger.Warn("complaint without Original-Rcpt-To, kept", "ref", ref)
			break
		}
		ftype := rep.Feedback.Type
		m.Log.Write(&events.Record{Type: events.Complaint, Time: now, ID: msgID, Recipient: addr, Reason: "complaint",
			Status: "feedback-loop complaint: " + ftype, Detail: rep.Reporter})
		if err := m.Quarantine.Complaint(addr, quarantine.Failure{Time: now, Reason: "complaint", Text: ftype, MessageID: msgID}); err != nil {
			m.logger.Warn("quarantine", "addr", addr, "err", err)
		}
	case dsn.KindDSN:
		for _, rs := range rep.Recipients {
			if rs.Action != "failed" {
				continue // delayed, delivered, relayed: nothing to learn
			}
			addr := rs.Final
			if addr == "" {
				addr = rs.Original
			}
			enh := rs.Status
			text := rs.Diagnostic
			if k := strings.Index(text, ";"); k >= 0 {
				text = strings.TrimSpace(text[k+1:])
			}
			v := m.Bounce.Classify(rs.Code, enh, text)
			m.Log.Write(&events.Record{Type: events.Bounce, Time: now, ID: msgID, Recipient: addr, Code: rs.Code,
				EnhancedCode: enh, Text: text, Reason: string(v.Reason), Class: string(v.Class), MXHost: rs.RemoteMTA,
				Status: "asynchronous bounce", Detail: fmt.Sprintf("reported by %s, rcpt #%d", rep.Reporter, rcptIdx)})
			m.bounceTop.Add("async", rs.Code, enh, bounce.Normalize(text), v)
			if countsForQuarantine(v) {
				if _, _, err := m.Quarantine.Failure(addr, quarantine.Failure{Time: now, Code: rs.Code, Enhanced: enh, Text: text,
					Reason: string(v.Reason), Class: string(v.Class), MessageID: msgID}); err != nil && !errors.Is(err, quarantine.ErrBadAddress) {
					m.logger.Warn("quarantine", "addr", addr, "err", err)
				}
			}
		}
	default:
		path := m.keepUnparsed(ref, body)
		m.logger.Info("mail to a bounce address that is no report, kept", "from", env.From, "file", path)
	}
	return ref, nil
}

// keepUnparsed writes a report Penstock could not use to log_dir, for an
// operator to read.
func (m *MTA) keepUnparsed(ref string, body []byte) string {
	dir := filepath.Join(m.Config().Server.LogDir, "unparsed-reports")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		m.logger.Error("keeping an unparsed report", "err", err)
		return ""
	}
	path := filepath.Join(dir, ref+".eml")
	if err := os.WriteFile(path, body, 0o640); err != nil {
		m.logger.Error("keeping an unparsed report", "err", err)
		return ""
	}
	return path
}
