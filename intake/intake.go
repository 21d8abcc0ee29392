// Package intake is the first stage of the pipeline: it takes a message
// handed in by SMTP injection, the HTTP API or the outcome stage (a DSN),
// stores it durably in the spool and gives it to the queue.
//
// Algorithm. Each recipient is checked against the quarantine first: a
// quarantined or denylisted address is marked suppressed in the stored
// message and never queued. The message is written (fsync'd) before Store
// returns, so an acknowledged message survives a crash (docs/ARCHITECTURE.md,
// invariant 1); then the reception of every recipient, and the suppression
// of the suppressed ones, is written to the delivery log, and the message is
// queued. A message whose recipients are all suppressed is deleted again:
// there is nothing left to send.
//
// The package never delivers, renders or retries: the queue does.
package intake

import (
	"context"
	"log/slog"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
)

// Spool is where messages are stored.
type Spool interface {
	Put(ctx context.Context, m *spool.Message, body []byte) error
	Delete(id spool.ID) error
}

// Deps are the stage's dependencies; all are required but Metrics, Logger
// and Now.
type Deps struct {
	Spool      Spool
	Queue      interface{ Enqueue(m *spool.Message) }
	Log        interface{ Write(r *events.Record) }
	Quarantine interface {
		Suppressed(addr string) (bool, *quarantine.Entry)
	}
	Metrics  interface{ ObserveAck(d time.Duration) } // nil: none
	Validity func() time.Duration                     // [delivery] validity, read per message
	Logger   *slog.Logger
	Now      func() time.Time
}

// Intake is the stage. Its methods are safe for concurrent use.
type Intake struct{ d Deps }

// New returns the stage.
func New(d Deps) *Intake {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Intake{d: d}
}

// Store spools one message from `from` for its recipients (flags: the
// spool message's Flags) and queues it. It returns the message's ID once
// the message is on disk. The message is sent for tenant, or when that is
// "" for the tenant its X-Penstock-Tenant header names; the header is
// removed either way. A bad tenant name is refused (tenants.ErrBadName).
func (in *Intake) Store(ctx context.Context, from string, to []string, body []byte, flags uint8, tenant string, now time.Time) (string, error) {
	named, body := takeTenant(body)
	if tenant == "" {
		tenant = named
	}
	if err := tenants.Check(tenant); err != nil {
		return "", err
	}
	msg := &spool.Message{
		Sender:   from,
		Received: now,
		Expires:  now.Add(in.d.Validity()),
		Size:     int64(len(body)),
		Flags:    flags,
		Tenant:   tenant,
	}
	msg.Recipients = make([]spool.Recipient, len(to))
	suppressed := 0
	for i, addr := range to {
		msg.Recipients[i] = spool.Recipient{Addr: addr}
		if in.Suppressed(addr) {
			msg.Recipients[i].State = spool.Suppressed
			suppressed++
		}
	}
	if err := in.d.Spool.Put(ctx, msg, body); err != nil {
		in.d.Logger.Error("spool write failed", "err", err)
		return "", err
	}
	if in.d.Metrics != nil {
		in.d.Metrics.ObserveAck(in.d.Now().Sub(now))
	}
	id := msg.ID.String()
	for i, r := range msg.Recipients {
		in.d.Log.Write(&events.Record{Type: events.Reception, Time: now, ID: id, Sender: msg.Sender, Recipient: r.Addr, Size: msg.Size})
		if r.State == spool.Suppressed {
			in.LogSuppressed(msg, i, now)
		}
	}
	if suppressed < len(to) {
		in.d.Queue.Enqueue(msg)
	} else if err := in.d.Spool.Delete(msg.ID); err != nil {
		in.d.Logger.Warn("spool delete", "id", id, "err", err)
	}
	return id, nil
}

// Suppressed reports whether an address is quarantined or denylisted.
func (in *Intake) Suppressed(addr string) bool {
	on, _ := in.d.Quarantine.Suppressed(addr)
	return on
}

// LogSuppressed logs recipient i of msg as not sent because of the
// quarantine.
func (in *Intake) LogSuppressed(msg *spool.Message, i int, now time.Time) {
	id := ""
	if msg.ID != 0 {
		id = msg.ID.String()
	}
	in.d.Log.Write(&events.Record{Type: events.Suppressed, Time: now, ID: id, DeliveryID: msg.DeliveryID,
		Sender: msg.Sender, Recipient: msg.Recipients[i].Addr, Status: "suppressed: address in quarantine"})
}
