package tlsrpt

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dns"
)

// FlushEvery is how often Daily saves the day's counts to the spool: what
// a crash can lose (a graceful stop saves them all).
const FlushEvery = 5 * time.Second

// Daily is the recorder's life in a running node: it saves the counts
// every FlushEvery and, once a day at [tlsrpt] send_at (UTC), sends the
// finished days' reports when [tlsrpt] enabled says so, or else forgets
// the days older than a few.
type Daily struct {
	Recorder *Recorder
	Config   func() *config.Config // the configuration in force (reloads apply)
	Resolver dns.Resolver
	HTTP     *http.Client // posts to https: rua URIs; nil: a verifying client with a one-minute timeout
	// Mail queues a report for delivery through Penstock itself, signed
	// like any other message (RFC 8460 §5.3 asks for DKIM).
	Mail   func(ctx context.Context, from, to string, msg []byte) error
	Logger *slog.Logger
	Now    func() time.Time
}

// Run saves and sends until ctx ends, then saves once more.
func (d *Daily) Run(ctx context.Context) {
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	lastRun := ""
	for {
		select {
		case <-ctx.Done():
			if err := d.Recorder.Flush(); err != nil {
				d.Logger.Error("tlsrpt: saving the day's TLS outcomes", "err", err)
			}
			return
		case <-t.C:
		}
		if err := d.Recorder.Flush(); err != nil {
			d.Logger.Warn("tlsrpt: saving the day's TLS outcomes", "err", err)
		}
		now := d.Now().UTC()
		today := Day(now)
		off, err := d.Config().TLSRPT.SendAtOffset()
		if err != nil || today == lastRun || now.Before(now.Truncate(24*time.Hour).Add(off)) {
			continue
		}
		lastRun = today
		d.SendDue(ctx, now)
	}
}

// SendDue sends the reports of the days finished by now (or, with
// reporting off, forgets the days older than a few) and logs each.
func (d *Daily) SendDue(ctx context.Context, now time.Time) []Outcome {
	cfg := d.Config()
	if !cfg.TLSRPT.Enabled {
		if err := d.Recorder.Prune(Day(now.Add(-3 * 24 * time.Hour))); err != nil {
			d.Logger.Warn("tlsrpt: pruning old days", "err", err)
		}
		return nil
	}
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	s := &Sender{Resolver: d.Resolver, HTTP: hc, Mail: d.Mail, From: "tlsrpt@" + cfg.Server.Hostname,
		Org: OrgOf(cfg), Now: d.Now}
	outs := s.SendDue(ctx, d.Recorder, now)
	for _, o := range outs {
		switch {
		case o.Err == nil:
			d.Logger.Info("tlsrpt: report sent", "day", o.Day, "domain", o.Domain, "to", strings.Join(o.Sent, ","))
		case len(o.Sent) == 0 && o.Dropped:
			d.Logger.Debug("tlsrpt: report not sent", "day", o.Day, "domain", o.Domain, "err", o.Err)
		default:
			d.Logger.Warn("tlsrpt: report not sent", "day", o.Day, "domain", o.Domain, "sent", strings.Join(o.Sent, ","),
				"kept_for_next_run", !o.Dropped, "err", o.Err)
		}
	}
	return outs
}

// OrgOf is the reporting organisation of cfg: [tlsrpt] organization and
// contact, or else the host name and its postmaster.
func OrgOf(cfg *config.Config) Org {
	host := cfg.Server.Hostname
	o := Org{Name: cfg.TLSRPT.Organization, Contact: cfg.TLSRPT.Contact, Submitter: host}
	if o.Name == "" {
		o.Name = host
	}
	if o.Contact == "" {
		o.Contact = "postmaster@" + host
	}
	return o
}
