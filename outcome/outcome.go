// Package outcome is the stage that runs after each delivery attempt: the
// queue hands it every recipient's outcome (Stage.Observe, the queue's
// Deps.Outcome hook) and it updates what depends on that outcome, in this
// order:
//
//  1. the campaign's final counts, when the recipient's delivery is over
//     and it belongs to a campaign (Deps.Campaigns);
//  2. a delivered recipient: the delivery-latency metric and the
//     quarantine's success (which resets the address's error count);
//  3. a failure that says something about the address (CountsForQuarantine):
//     one more error in the quarantine;
//  4. a final failure of relayed SMTP mail (FlagDSN) with a sender: an RFC
//     3464 delivery status notification, queued from the null sender.
//
// Cancelled recipients only count (1). Expired ones count and get a DSN but
// never touch the quarantine: expiry says nothing about the address.
//
// FeedTop keeps the "top failure replies" statistic from the delivery log.
//
// The package owns no state of its own and never touches the queue or the
// spool's message records: everything it changes is reached through the
// small interfaces of Deps, so a test can replace each.
package outcome

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/spool"
)

// FlagDSN on a spooled message: send a DSN to its sender when a recipient
// finally fails (relayed SMTP mail; never campaigns, never the null sender).
const FlagDSN uint8 = 1

// FlagRequireTLS on a spooled message: it came with REQUIRETLS (RFC 8689)
// and leaves only over TLS authenticated by the recipient domain's DANE or
// MTA-STS policy, to a server that advertises REQUIRETLS (the queue bounces
// it with 5.7.10 otherwise).
const FlagRequireTLS uint8 = 2

// Flags are the flags of a message injected by SMTP or the API: a DSN is
// wanted, and REQUIRETLS when it came with it.
func Flags(requireTLS bool) uint8 {
	if requireTLS {
		return FlagDSN | FlagRequireTLS
	}
	return FlagDSN
}

// RequiresTLS tells a message that came with REQUIRETLS.
func RequiresTLS(m *spool.Message) bool { return m.Flags&FlagRequireTLS != 0 }

// CountsForQuarantine: a hard failure, or a soft one that is about the
// address itself (bounce.Reason.RecipientLevel: a refusal for reputation
// or a connection problem is about us or the site). A message we could
// not build says nothing about the address.
func CountsForQuarantine(v bounce.Verdict) bool {
	if v.Reason == bounce.BadMessage {
		return false
	}
	return v.Class == bounce.Hard || (v.Class == bounce.Soft && v.Reason.RecipientLevel())
}

// Quarantine is what the stage changes in the quarantine.
type Quarantine interface {
	Delivered(addr string) error
	Failure(addr string, f quarantine.Failure) (quarantine.Entry, bool, error)
}

// Campaigns counts the final outcome of a campaign's recipient.
type Campaigns interface {
	Final(msg *spool.Message, o queue.Outcome, now time.Time)
}

// Metrics observes the time from reception to delivery.
type Metrics interface {
	ObserveDelivered(d time.Duration)
}

// Bodies reads a stored message's body (for the DSN's returned headers).
type Bodies interface {
	Body(id spool.ID) ([]byte, error)
}

// Settings are the parts of the configuration the stage reads on each
// outcome (they change on reload).
type Settings struct {
	DSN      bool   // [delivery] dsn
	Hostname string // [server] hostname: the DSN's Reporting-MTA
}

// Deps are the stage's dependencies; all are required but Campaigns and
// Metrics.
type Deps struct {
	Quarantine Quarantine
	Campaigns  Campaigns // nil: no campaigns
	Metrics    Metrics   // nil: no metrics
	Bodies     Bodies
	// Inject spools and queues a new message (the DSN) from the null
	// sender, returning once it is durable.
	Inject   func(ctx context.Context, to string, body []byte, now time.Time) error
	Settings func() Settings
	Logger   *slog.Logger
	Now      func() time.Time
}

// Stage is the outcome stage. Its methods are safe for concurrent use as
// far as its Deps are.
type Stage struct{ d Deps }

// New returns the stage.
func New(d Deps) *Stage {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Stage{d: d}
}

// Observe is the queue's hook for every attempt's outcome (queue.Deps.Outcome).
func (s *Stage) Observe(msg *spool.Message, i int, o queue.Outcome, site string) {
	now := s.d.Now()
	addr := msg.Recipients[i].Addr
	switch {
	case o.Cancelled:
	case o.Delivered:
		if !msg.Received.IsZero() && s.d.Metrics != nil {
			s.d.Metrics.ObserveDelivered(now.Sub(msg.Received))
		}
		if err := s.d.Quarantine.Delivered(addr); err != nil {
			s.d.Logger.Warn("quarantine", "addr", addr, "err", err)
		}
	case !o.Expired:
		v := o.Verdict
		if CountsForQuarantine(v) {
			_, _, err := s.d.Quarantine.Failure(addr, quarantine.Failure{Time: now, Code: o.Code, Enhanced: o.Enhanced,
				Text: o.Text, Reason: string(v.Reason), Class: string(v.Class), Site: site, MessageID: msg.ID.String()})
			if err != nil && !errors.Is(err, quarantine.ErrBadAddress) {
				s.d.Logger.Warn("quarantine", "addr", addr, "err", err)
			}
		}
	}
	// The campaign counts last: whoever sees a recipient final there also
	// finds its quarantine entry.
	if o.Final && msg.DeliveryID != "" && s.d.Campaigns != nil {
		s.d.Campaigns.Final(msg, o, now)
	}
	if o.Final && !o.Delivered && !o.Cancelled && msg.Flags&FlagDSN != 0 && msg.Sender != "" {
		st := s.d.Settings()
		if !st.DSN {
			return
		}
		if err := s.sendDSN(msg, i, o, st.Hostname, now); err != nil {
			s.d.Logger.Error("DSN to the sender not sent", "id", msg.ID.String(), "sender", msg.Sender, "err", err)
		}
	}
}

// sendDSN queues an RFC 3464 report to the sender of a message whose
// recipient finally failed.
func (s *Stage) sendDSN(msg *spool.Message, i int, o queue.Outcome, host string, now time.Time) error {
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
	// A REQUIRETLS message's content never leaves but over verified TLS
	// (RFC 8689): its DSN carries none of it.
	if body, err := s.d.Bodies.Body(msg.ID); err == nil && body != nil && msg.Flags&FlagRequireTLS == 0 {
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
	return s.d.Inject(context.Background(), msg.Sender, b, now)
}

// FeedTop counts failure replies for `penstock bounces` from the delivery
// log until ch closes (a statistic: a record dropped under load is no
// harm). Asynchronous bounces are counted where they are parsed.
func FeedTop(top *bounce.Top, ch <-chan *events.Record) {
	for r := range ch {
		if (r.Type == events.Bounce || r.Type == events.TransientFailure) && r.Text != "" && r.Status != "asynchronous bounce" {
			top.AddAt(r.Time, r.Site, r.Code, r.EnhancedCode, bounce.Normalize(r.Text),
				bounce.Verdict{Reason: bounce.Reason(r.Reason), Class: bounce.Class(r.Class)})
		}
	}
}
