package eventsout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/spool"
)

// Bucket is the spool KV bucket that holds the outputs' cursors.
const Bucket = "eventsout"

// Sender delivers a batch of events to one receiver. Send returns nil only
// once the receiver has taken every event (2xx, a publisher confirm, a
// committed transaction); anything else is retried.
type Sender interface {
	Send(ctx context.Context, evs []Event) error
	Close() error
}

// Options tune a Manager. KV is required.
type Options struct {
	KV     spool.KV
	Logger *slog.Logger
	// Poll is how often the log directory is looked at; default 100ms.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a
	// failed batch, doubling from one to the other; default 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// RootCAs verifies webhook servers' certificates; nil = the system's.
	RootCAs *x509.CertPool
	// SaveEvery is how often an output's cursor is written to the KV
	// while it moves, and at stop; default 1s. Each save is a spool
	// transaction: saving after every batch would compete with the
	// spool's own commits. A crash re-sends at most this much, which the
	// event ids make harmless.
	SaveEvery time.Duration
}

// Status is one output's state, for penstock status, metrics and the API.
type Status struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"` // webhook, amqp, nats, postgres
	Lag         int64     `json:"lag"`  // records behind the end of the log
	Sent        uint64    `json:"sent"`
	Failures    uint64    `json:"failures"` // failed sends (each retried)
	Skipped     uint64    `json:"skipped"`  // times the cursor's file was deleted before it was read
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Manager runs every configured output. Its methods are safe for
// concurrent use.
type Manager struct {
	tail *Tail
	opts Options
	outs []*output
	stop chan struct{}
	wg   sync.WaitGroup
}

type output struct {
	name, kind string
	types      map[string]bool // nil = all
	batch      int
	batchTime  time.Duration
	send       Sender

	mu     sync.Mutex
	cur    Cursor
	status Status

	saved   Cursor // last cursor written to the KV (run's goroutine only)
	savedAt time.Time
}

// New builds the outputs of cfg over the delivery log in logDir. Nothing
// runs until Start. Broker and database connections are made by the
// outputs themselves, and retried, so a receiver that is down at start
// delays nothing.
func New(cfg *config.Config, opts Options) (*Manager, error) {
	if opts.KV == nil {
		return nil, errors.New("eventsout: no KV store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Minute, opts.MinBackoff)
	}
	m := &Manager{tail: NewTail(cfg.Server.LogDir), opts: opts, stop: make(chan struct{})}
	for _, w := range cfg.Webhooks {
		m.add(w.Name, "webhook", w.Events, w.BatchSize, time.Duration(w.BatchTime), NewWebhook(w, opts.RootCAs))
	}
	for _, s := range cfg.Streams {
		var snd Sender
		switch s.Type {
		case config.StreamAMQP:
			snd = newAMQP(s)
		case config.StreamNATS:
			snd = newNATS(s)
		default:
			return nil, fmt.Errorf("[[stream]] %s: unknown type %q", s.Name, s.Type)
		}
		m.add(s.Name, s.Type, s.Events, s.BatchSize, 0, snd)
	}
	if cfg.Postgres.DSN != "" {
		m.add("postgres", "postgres", nil, cfg.Postgres.BatchSize, 0, newPostgres(cfg.Postgres))
	}
	return m, nil
}

func (m *Manager) add(name, kind string, types []string, batch int, batchTime time.Duration, s Sender) {
	o := &output{name: name, kind: kind, batch: batch, batchTime: batchTime, send: s,
		status: Status{Name: name, Kind: kind}}
	if len(types) > 0 {
		o.types = map[string]bool{}
		for _, t := range types {
			o.types[t] = true
		}
	}
	m.outs = append(m.outs, o)
}

// Start loads each output's cursor and starts following the log. An output
// seen for the first time starts at the end of the log: it gets the records
// written from now on, not the history.
func (m *Manager) Start() error {
	if len(m.outs) == 0 {
		return nil // nothing to follow the log for
	}
	m.tail.Refresh()
	for _, o := range m.outs {
		c, err := m.loadCursor(o.name)
		if err != nil {
			return err
		}
		o.cur, o.saved, o.savedAt = c, c, time.Now()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.tail.Run(m.opts.Poll, m.stop)
	}()
	for _, o := range m.outs {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.run(o)
		}()
	}
	return nil
}

// Close stops the outputs (a batch being sent is abandoned, to be sent
// again at the next start) and closes their connections.
func (m *Manager) Close() error {
	select {
	case <-m.stop:
		return nil
	default:
	}
	close(m.stop)
	m.wg.Wait()
	var errs []error
	for _, o := range m.outs {
		errs = append(errs, o.send.Close())
	}
	return errors.Join(errs...)
}

// Status returns every output's state, in configuration order; nil when
// none is configured.
func (m *Manager) Status() []Status {
	if m == nil || len(m.outs) == 0 {
		return nil
	}
	out := make([]Status, 0, len(m.outs))
	for _, o := range m.outs {
		o.mu.Lock()
		s, c := o.status, o.cur
		o.mu.Unlock()
		s.Lag, _ = m.tail.Lag(c)
		out = append(out, s)
	}
	return out
}

func cursorKey(name string) string { return "cursor/" + name }

func (m *Manager) loadCursor(name string) (Cursor, error) {
	b, err := m.opts.KV.Get(cursorKey(name))
	if errors.Is(err, spool.ErrNotFound) {
		c := m.tail.End()
		return c, m.saveCursor(name, c)
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("eventsout: cursor of %s: %w", name, err)
	}
	var c Cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return Cursor{}, fmt.Errorf("eventsout: cursor of %s: %w", name, err)
	}
	return c, nil
}

func (m *Manager) saveCursor(name string, c Cursor) error {
	b, _ := json.Marshal(c)
	return m.opts.KV.Put(cursorKey(name), b)
}

func (o *output) fail(err error) {
	o.mu.Lock()
	o.status.Failures++
	o.status.LastError = err.Error()
	o.status.LastErrorAt = time.Now()
	o.mu.Unlock()
}

// run is one output's loop: read from the cursor, wait for a batch to fill
// or age, send until taken, advance the cursor.
func (m *Manager) run(o *output) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer m.save(o, true)
	go func() {
		<-m.stop
		cancel()
	}()
	var pendingSince time.Time
	for {
		wake := m.tail.Wait()
		o.mu.Lock()
		cur := o.cur
		o.mu.Unlock()
		evs, next, skipped, bad, err := m.tail.Read(cur, o.batch)
		if err != nil {
			o.fail(err)
		}
		if skipped {
			o.mu.Lock()
			o.status.Skipped++
			o.mu.Unlock()
			m.opts.Logger.Error("EVENTS LOST: the delivery log file under this output's cursor was deleted before it was sent; going on from the oldest file left",
				"output", o.name, "file", cur.File)
		}
		if bad > 0 {
			m.opts.Logger.Warn("delivery log lines that are not records were passed over", "output", o.name, "lines", bad)
		}
		if len(evs) == 0 {
			pendingSince = time.Time{}
			if next != cur { // bad lines, a skip, or the end of a file
				m.advance(o, next, 0)
				continue
			}
			m.save(o, true) // idle: the cursor reaches the KV now
			select {
			case <-m.stop:
				return
			case <-wake:
			case <-time.After(time.Second): // the poller wakes us; this is a fallback
			}
			continue
		}
		// Batching: a partial batch waits for more until batch_time.
		if len(evs) < o.batch && o.batchTime > 0 {
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			if left := o.batchTime - time.Since(pendingSince); left > 0 {
				select {
				case <-m.stop:
					return
				case <-wake:
				case <-time.After(left):
				}
				continue
			}
		}
		pendingSince = time.Time{}
		if o.types != nil {
			evs = slices.DeleteFunc(evs, func(e Event) bool { return !o.types[e.Type] })
		}
		if len(evs) > 0 && !m.deliver(ctx, o, evs) {
			return
		}
		m.advance(o, next, len(evs))
	}
}

// advance moves o's cursor past events that went out.
func (m *Manager) advance(o *output, next Cursor, sent int) {
	o.mu.Lock()
	o.cur = next
	o.status.Sent += uint64(sent)
	o.mu.Unlock()
	m.save(o, false)
}

// save writes o's cursor to the KV if it moved, at most every SaveEvery
// unless final.
func (m *Manager) save(o *output, final bool) {
	o.mu.Lock()
	cur := o.cur
	o.mu.Unlock()
	if cur == o.saved || (!final && time.Since(o.savedAt) < m.opts.SaveEvery) {
		return
	}
	if err := m.saveCursor(o.name, cur); err != nil {
		// The events went out; without the cursor they go again after a
		// restart, which the event ids make harmless.
		o.fail(fmt.Errorf("saving the cursor: %w", err))
		return
	}
	o.saved, o.savedAt = cur, time.Now()
}

// deliver sends evs until the receiver takes them; false when stopped.
func (m *Manager) deliver(ctx context.Context, o *output, evs []Event) bool {
	wait := m.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		err := o.send.Send(ctx, evs)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		o.fail(err)
		m.opts.Logger.Warn("event output failed; retrying", "output", o.name, "attempt", attempt,
			"events", len(evs), "retry_in", wait, "error", err)
		select {
		case <-m.stop:
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, m.opts.MaxBackoff)
	}
}

func tlsConfig(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
