// Package campaigns owns the lifecycle of campaigns (the API calls them
// deliveries): creating one, ingesting its recipients, rendering each
// recipient's message at send time, counting final outcomes, cancelling,
// listing, and keeping all of it across restarts.
//
// It is a package apart from campaign, which is the template engine: that
// one is pure (bytes in, bytes out, no spool, no queue, no API types) and
// the API package imports it for its request types, so the stateful
// lifecycle, which needs the spool, the queue, the delivery log and the API
// types, cannot live there without a cycle and would blur what campaign is.
//
// Storage. A campaign's compiled template is stored once as a spool blob
// ("tpl/<id>"); each recipient is a spool message without a body that
// carries its own variables, rendered when it is sent (Render, the queue's
// renderer). Recipients are written in durable batches of 5,000 and queued
// once on disk; quarantined addresses are counted and logged as suppressed,
// never stored. Counts come from the queue's final outcomes (Final, called
// by the outcome stage), so they are exact; they are saved to the spool's
// "deliveries" KV bucket every few seconds and at shutdown (SaveDirty).
// After a crash, recipients that became final after the last save are
// neither queued nor counted: Reconcile reports them as "recovered"
// instead of guessing.
//
// The package never delivers, classifies or retries anything: that is the
// queue's.
package campaigns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
)

// Spool is the part of the spool campaigns use.
type Spool interface {
	KV(bucket string) spool.KV
	PutMany(ctx context.Context, ms []*spool.Message, bodies [][]byte) error
	PutBlob(key string, data []byte) error
	Blob(key string) ([]byte, error)
}

// Queue is the part of the scheduler campaigns use.
type Queue interface {
	Enqueue(m *spool.Message)
	Pool(name string) ([]queue.Source, bool)
	CancelDelivery(deliveryID, who string) int
	QueuedByDelivery(deliveryID string) map[string]int
}

// Log is where campaign events are written.
type Log interface {
	Write(r *events.Record)
}

// Deps are the store's dependencies; all are required but Logger and Now.
type Deps struct {
	Spool Spool
	Queue Queue
	Log   Log
	// Suppressed reports whether an address is quarantined or denylisted;
	// LogSuppressed writes the record of recipient i not sent for that.
	Suppressed    func(addr string) bool
	LogSuppressed func(msg *spool.Message, i int, now time.Time)
	Validity      func() time.Duration // [delivery] validity, read per batch
	Hostname      func() string        // [server] hostname, for Message-IDs
	Logger        *slog.Logger
	Now           func() time.Time
}

const (
	ingestBatch   = 5000 // recipients per durable spool batch
	tplBlobPrefix = "tpl/"
)

// record is one campaign as saved in the KV bucket.
type record struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Sender   string         `json:"sender"`
	Pool     string         `json:"pool,omitempty"`
	PerHour  int            `json:"messages_per_hour,omitempty"`
	Tenant   string         `json:"tenant,omitempty"`
	Created  time.Time      `json:"created"`
	Total    int            `json:"total"`
	Counts   api.Counts     `json:"counts"`
	Reasons  map[string]int `json:"bounced_by_reason,omitempty"`
	First    time.Time      `json:"first_delivery,omitempty"`
	Last     time.Time      `json:"last_final,omitempty"`
	Recent   perSecond      `json:"-"` // deliveries of the last minute, for the rate
	Restored int            `json:"recovered,omitempty"`
	Stopped  bool           `json:"cancelled,omitempty"` // no more recipients are taken
	tpl      *campaign.Compiled
	dirty    bool
	mu       *sync.Mutex
}

// Store holds every campaign of this node.
type Store struct {
	d  Deps
	kv spool.KV

	mu   sync.Mutex
	byID map[string]*record
	// statusCache keeps each delivery's queued-by-status counts for a
	// second: computing them scans the queues, and pollers are many.
	statusCache map[string]statusCount
}

type statusCount struct {
	at     time.Time
	counts map[string]int
}

// New returns the store of campaigns kept in d.Spool's "deliveries" KV
// bucket. Nothing is read until Load.
func New(d Deps) *Store {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Store{d: d, kv: d.Spool.KV("deliveries"), byID: map[string]*record{}}
}

// Load reads the saved deliveries; queued counts are corrected by the
// spool's own contents in Reconcile, after the spool is loaded.
func (d *Store) Load() error {
	return d.kv.ForEach("", func(key string, val []byte) error {
		var dm record
		if err := json.Unmarshal(val, &dm); err != nil {
			d.d.Logger.Error("delivery record unreadable, skipped", "id", key, "err", err)
			return nil
		}
		dm.mu = &sync.Mutex{}
		d.byID[dm.ID] = &dm
		return nil
	})
}

// Reconcile fixes counts after a crash: recipients that reached a final
// state after the last save and before the crash are neither queued nor
// counted; they are reported as "recovered" rather than guessed.
func (d *Store) Reconcile(queued map[string]int) {
	d.mu.Lock()
	recs := make([]*record, 0, len(d.byID))
	for _, dm := range d.byID {
		recs = append(recs, dm)
	}
	d.mu.Unlock()
	// The queue already delivers what was loaded: a record's counts are
	// read under its own lock, as Final writes them.
	for _, dm := range recs {
		dm.mu.Lock()
		c := dm.Counts
		finals := c.Delivered + c.Bounced + c.Suppressed + c.Expired + c.Cancelled
		gap := dm.Total - finals - queued[dm.ID]
		if gap > 0 {
			dm.Restored += gap
			dm.dirty = true
		}
		dm.mu.Unlock()
	}
}

// PerHour is a campaign's messages_per_hour (0: unlimited or unknown), for
// the queue's claim.
func (d *Store) PerHour(id string) int {
	if dm := d.get(id); dm != nil {
		return dm.PerHour
	}
	return 0
}

func (d *Store) get(id string) *record {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

func (d *Store) save(dm *record) error {
	dm.mu.Lock()
	dm.dirty = false
	b, err := json.Marshal(dm)
	dm.mu.Unlock()
	if err != nil {
		return err
	}
	return d.kv.Put(dm.ID, b)
}

// SaveDirty persists the counts that changed.
func (d *Store) SaveDirty() {
	d.mu.Lock()
	var list []*record
	for _, dm := range d.byID {
		dm.mu.Lock()
		if dm.dirty {
			list = append(list, dm)
		}
		dm.mu.Unlock()
	}
	d.mu.Unlock()
	for _, dm := range list {
		if err := d.save(dm); err != nil {
			d.d.Logger.Error("saving delivery counts", "id", dm.ID, "err", err)
		}
	}
}

// Final counts one recipient's final outcome.
func (d *Store) Final(msg *spool.Message, o queue.Outcome, now time.Time) {
	dm := d.get(msg.DeliveryID)
	if dm == nil {
		return
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	switch {
	case o.Cancelled:
		dm.Counts.Cancelled++
	case o.Delivered:
		dm.Counts.Delivered++
		if dm.First.IsZero() {
			dm.First = now
		}
		dm.Recent.add(now)
	case o.Expired:
		dm.Counts.Expired++
	default:
		dm.Counts.Bounced++
		if dm.Reasons == nil {
			dm.Reasons = map[string]int{}
		}
		r := string(o.Verdict.Reason)
		if r == "" {
			r = "unknown"
		}
		dm.Reasons[r]++
	}
	dm.Last = now
	dm.dirty = true
}

// Template returns a delivery's compiled template, loading it once (the
// body pipeline's render stage reads it).
func (d *Store) Template(id string) (*campaign.Compiled, error) {
	dm := d.get(id)
	if dm == nil {
		return nil, fmt.Errorf("unknown delivery %s", id)
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.tpl != nil {
		return dm.tpl, nil
	}
	b, err := d.d.Spool.Blob(tplBlobPrefix + id)
	if err != nil {
		return nil, fmt.Errorf("template of delivery %s: %w", id, err)
	}
	c, err := campaign.Load(b)
	if err != nil {
		return nil, fmt.Errorf("template of delivery %s: %w", id, err)
	}
	dm.tpl = c
	return c, nil
}

func newDeliveryID() string {
	var b [8]byte
	rand.Read(b[:])
	return "d" + hex.EncodeToString(b[:])
}

// CreateDelivery stores a new delivery (template first, then its record) and
// queues its inline recipients.
func (d *Store) CreateDelivery(ctx context.Context, req api.DeliveryRequest) (api.DeliveryView, error) {
	if req.From != "" {
		if err := campaign.CheckAddress(req.From); err != nil {
			return api.DeliveryView{}, &api.FieldError{Field: "from", Err: err}
		}
	}
	if req.Pool != "" {
		if _, ok := d.d.Queue.Pool(req.Pool); !ok {
			return api.DeliveryView{}, &api.FieldError{Field: "pool", Err: fmt.Errorf("unknown pool %q", req.Pool)}
		}
	}
	if req.MessagesPerHour < 0 {
		return api.DeliveryView{}, &api.FieldError{Field: "messages_per_hour", Err: fmt.Errorf("%d is negative (leave it out for no limit)", req.MessagesPerHour)}
	}
	if err := tenants.Check(req.Tenant); err != nil {
		return api.DeliveryView{}, &api.FieldError{Field: "tenant", Err: err}
	}
	c, err := campaign.Compile(req.Template)
	if err != nil {
		return api.DeliveryView{}, &api.FieldError{Field: "template", Err: err}
	}
	id := newDeliveryID()
	for i := range req.Recipients {
		if err := campaign.CheckAddress(req.Recipients[i].Address); err != nil {
			return api.DeliveryView{}, &api.FieldError{Field: fmt.Sprintf("recipients[%d].address", i), Err: err}
		}
		if err := d.check(c, id, req.Recipients[i]); err != nil {
			return api.DeliveryView{}, &api.FieldError{Field: fmt.Sprintf("recipients[%d].vars", i), Err: err}
		}
	}
	tb, err := c.Bytes()
	if err != nil {
		return api.DeliveryView{}, err
	}
	if err := d.d.Spool.PutBlob(tplBlobPrefix+id, tb); err != nil {
		return api.DeliveryView{}, err
	}
	name := req.Name
	if name == "" {
		name = id
	}
	dm := &record{ID: id, Name: name, Sender: req.From, Pool: req.Pool, PerHour: req.MessagesPerHour, Tenant: req.Tenant,
		Created: d.d.Now(), tpl: c, mu: &sync.Mutex{}}
	if err := d.save(dm); err != nil {
		return api.DeliveryView{}, err
	}
	d.mu.Lock()
	d.byID[id] = dm
	d.mu.Unlock()
	d.d.Log.Write(&events.Record{Type: events.AdminAction, Time: dm.Created, DeliveryID: id, Sender: req.From, Status: "delivery created", Detail: name})
	i := 0
	_, err = d.ingest(ctx, dm, func(fn func(campaign.Recipient) error) error {
		for ; i < len(req.Recipients); i++ {
			if err := fn(req.Recipients[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return d.view(dm), err
	}
	return d.view(dm), nil
}

// AddRecipients streams a CSV or NDJSON recipient list into a delivery.
func (d *Store) AddRecipients(ctx context.Context, id, contentType string, body io.Reader) (api.AddResult, error) {
	dm := d.get(id)
	if dm == nil {
		return api.AddResult{}, &api.NotFoundError{What: "delivery " + id}
	}
	read := campaign.ReadNDJSON
	switch {
	case strings.HasPrefix(contentType, "text/csv"):
		read = campaign.ReadCSV
	case strings.HasPrefix(contentType, "application/x-ndjson"), strings.HasPrefix(contentType, "application/ndjson"), contentType == "":
	default:
		return api.AddResult{}, &api.FieldError{Field: "Content-Type", Err: fmt.Errorf("%q: send text/csv or application/x-ndjson", contentType)}
	}
	return d.ingest(ctx, dm, func(fn func(campaign.Recipient) error) error { return read(body, fn) })
}

// ingest writes recipients in durable batches and queues each batch once
// it is on disk. Quarantined addresses are suppressed here.
func (d *Store) ingest(ctx context.Context, dm *record, each func(func(campaign.Recipient) error) error) (api.AddResult, error) {
	var res api.AddResult
	now := d.d.Now()
	validity := d.d.Validity()
	batch := make([]*spool.Message, 0, ingestBatch)
	var suppressed []*spool.Message
	tpl, err := d.Template(dm.ID)
	if err != nil {
		return res, err
	}
	flush := func() error {
		if len(batch) > 0 {
			if err := d.d.Spool.PutMany(ctx, batch, nil); err != nil {
				return err
			}
		}
		// Suppressed recipients are counted and logged, never stored.
		for _, msg := range suppressed {
			d.d.Log.Write(&events.Record{Type: events.Reception, Time: now, DeliveryID: dm.ID, Sender: msg.Sender, Recipient: msg.Recipients[0].Addr})
			d.d.LogSuppressed(msg, 0, now)
		}
		for _, msg := range batch {
			d.d.Log.Write(&events.Record{Type: events.Reception, Time: now, ID: msg.ID.String(), DeliveryID: dm.ID, Sender: msg.Sender, Recipient: msg.Recipients[0].Addr})
			d.d.Queue.Enqueue(msg)
		}
		dm.mu.Lock()
		dm.Total += len(batch) + len(suppressed)
		dm.Counts.Suppressed += len(suppressed)
		dm.dirty = true
		dm.mu.Unlock()
		res.Accepted += len(batch)
		res.Suppressed += len(suppressed)
		batch, suppressed = batch[:0], suppressed[:0]
		return nil
	}
	err = each(func(r campaign.Recipient) error {
		if dm.cancelled() {
			return errors.New("delivery cancelled")
		}
		if err := d.check(tpl, dm.ID, r); err != nil {
			return fmt.Errorf("vars: %w", err)
		}
		msg := &spool.Message{Sender: dm.Sender, Received: now, Expires: now.Add(validity), DeliveryID: dm.ID, Pool: dm.Pool, Tenant: dm.Tenant,
			Recipients: []spool.Recipient{{Addr: r.Address, Vars: campaign.EncodeVars(r.Vars)}}}
		if d.d.Suppressed(r.Address) {
			msg.Recipients[0].State = spool.Suppressed
			suppressed = append(suppressed, msg)
		} else {
			batch = append(batch, msg)
		}
		if len(batch)+len(suppressed) >= ingestBatch {
			return flush()
		}
		return nil
	})
	if ferr := flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return res, err
	}
	return res, d.save(dm)
}

// check refuses, at acceptance, a recipient whose variables would make a
// message that cannot be built (an invalid Reply-To, say): sent, it could
// only fail.
func (d *Store) check(c *campaign.Compiled, id string, r campaign.Recipient) error {
	return c.Check(r.Vars, campaign.Meta{DeliveryID: id, Recipient: r.Address,
		MessageID: campaign.MessageID(id, 0, d.d.Hostname())})
}

func (dm *record) cancelled() bool {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.Stopped
}

// CancelDelivery stops a campaign: no more recipients are taken and the queue
// drops those it holds.
func (d *Store) CancelDelivery(id, who string) (int, error) {
	dm := d.get(id)
	if dm == nil {
		return 0, &api.NotFoundError{What: "delivery " + id}
	}
	dm.mu.Lock()
	dm.Stopped = true
	dm.mu.Unlock()
	// The queue reports each cancelled recipient through the outcome hook
	// (now, or when it comes back from a connection): that is what counts.
	n := d.d.Queue.CancelDelivery(id, who)
	return n, d.save(dm)
}

func (d *Store) view(dm *record) api.DeliveryView {
	dm.mu.Lock()
	v := api.DeliveryView{ID: dm.ID, Name: dm.Name, Sender: dm.Sender, Pool: dm.Pool, MessagesPerHour: dm.PerHour, Tenant: dm.Tenant,
		Created: dm.Created, Total: dm.Total,
		Counts: dm.Counts, Recovered: dm.Restored}
	v.BouncedByReason = make(map[string]int, len(dm.Reasons))
	for k, n := range dm.Reasons {
		v.BouncedByReason[k] = n
	}
	now := d.d.Now()
	v.RatePerMinute = deliveryRate(now, dm.First, &dm.Recent)
	dm.mu.Unlock()
	c := v.Counts
	v.Counts.Queued = max(0, v.Total-c.Delivered-c.Bounced-c.Suppressed-c.Expired-c.Cancelled-v.Recovered)
	v.Done = v.Counts.Queued == 0
	// The list does not ask the queue for statuses: its ETA counts every
	// queued recipient; detail's leaves out those held.
	v.ETA, v.Held, v.ETANote = deliveryETA(now, v.Counts.Queued, v.RatePerMinute, nil)
	return v
}

// Deliveries returns every campaign, newest first.
func (d *Store) Deliveries() []api.DeliveryView {
	d.mu.Lock()
	all := make([]*record, 0, len(d.byID))
	for _, dm := range d.byID {
		all = append(all, dm)
	}
	d.mu.Unlock()
	out := make([]api.DeliveryView, 0, len(all))
	for _, dm := range all {
		out = append(out, d.view(dm))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// Delivery returns one campaign with its queued recipients by status text.
func (d *Store) Delivery(id string) (api.DeliveryView, bool) {
	dm := d.get(id)
	if dm == nil {
		return api.DeliveryView{}, false
	}
	v := d.view(dm)
	now := d.d.Now()
	d.mu.Lock()
	c, ok := d.statusCache[id]
	d.mu.Unlock()
	if !ok || now.Sub(c.at) > time.Second {
		c = statusCount{at: now, counts: d.d.Queue.QueuedByDelivery(id)}
		d.mu.Lock()
		if d.statusCache == nil {
			d.statusCache = map[string]statusCount{}
		}
		d.statusCache[id] = c
		d.mu.Unlock()
	}
	v.ByStatus = c.counts
	v.ETA, v.Held, v.ETANote = deliveryETA(now, v.Counts.Queued, v.RatePerMinute, v.ByStatus)
	return v, true
}
