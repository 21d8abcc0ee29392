package mta

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/spool"
)

// Campaigns ("deliveries"): the template is stored once as a spool blob;
// each recipient is a spool message without a body that carries its own
// variables, rendered when it is sent. Counts are kept from the queue's
// final outcomes (exact) and saved to the spool's KV every few seconds and
// at shutdown.

const (
	ingestBatch   = 5000 // recipients per durable spool batch
	tplBlobPrefix = "tpl/"
)

type deliveryMeta struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Sender   string         `json:"sender"`
	Pool     string         `json:"pool,omitempty"`
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

type deliveries struct {
	m  *MTA
	kv spool.KV

	mu   sync.Mutex
	byID map[string]*deliveryMeta
	// statusCache keeps each delivery's queued-by-status counts for a
	// second: computing them scans the queues, and pollers are many.
	statusCache map[string]statusCount
}

type statusCount struct {
	at     time.Time
	counts map[string]int
}

func newDeliveries(m *MTA) *deliveries {
	return &deliveries{m: m, kv: m.Spool.KV("deliveries"), byID: map[string]*deliveryMeta{}}
}

// load reads the saved deliveries; queued counts are corrected by the
// spool's own contents in reconcile, after the spool is loaded.
func (d *deliveries) load() error {
	return d.kv.ForEach("", func(key string, val []byte) error {
		var dm deliveryMeta
		if err := json.Unmarshal(val, &dm); err != nil {
			d.m.logger.Error("delivery record unreadable, skipped", "id", key, "err", err)
			return nil
		}
		dm.mu = &sync.Mutex{}
		d.byID[dm.ID] = &dm
		return nil
	})
}

// reconcile fixes counts after a crash: recipients that reached a final
// state after the last save and before the crash are neither queued nor
// counted; they are reported as "recovered" rather than guessed.
func (d *deliveries) reconcile(queued map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, dm := range d.byID {
		c := dm.Counts
		finals := c.Delivered + c.Bounced + c.Suppressed + c.Expired + c.Cancelled
		gap := dm.Total - finals - queued[id]
		if gap > 0 {
			dm.Restored += gap
			dm.dirty = true
		}
	}
}

func (d *deliveries) get(id string) *deliveryMeta {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

func (d *deliveries) save(dm *deliveryMeta) error {
	dm.mu.Lock()
	dm.dirty = false
	b, err := json.Marshal(dm)
	dm.mu.Unlock()
	if err != nil {
		return err
	}
	return d.kv.Put(dm.ID, b)
}

// saveDirty persists the counts that changed.
func (d *deliveries) saveDirty() {
	d.mu.Lock()
	var list []*deliveryMeta
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
			d.m.logger.Error("saving delivery counts", "id", dm.ID, "err", err)
		}
	}
}

// final counts one recipient's final outcome.
func (d *deliveries) final(msg *spool.Message, o queue.Outcome, now time.Time) {
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

// template returns a delivery's compiled template, loading it once.
func (d *deliveries) template(id string) (*campaign.Compiled, error) {
	dm := d.get(id)
	if dm == nil {
		return nil, fmt.Errorf("unknown delivery %s", id)
	}
	dm.mu.Lock()
	defer dm.mu.Unlock()
	if dm.tpl != nil {
		return dm.tpl, nil
	}
	b, err := d.m.Spool.Blob(tplBlobPrefix + id)
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

// create stores a new delivery (template first, then its record) and
// queues its inline recipients.
func (d *deliveries) create(ctx context.Context, req api.DeliveryRequest) (api.DeliveryView, error) {
	if req.From != "" {
		if err := campaign.CheckAddress(req.From); err != nil {
			return api.DeliveryView{}, &api.FieldError{Field: "from", Err: err}
		}
	}
	if req.Pool != "" {
		if _, ok := d.m.Queue.Pool(req.Pool); !ok {
			return api.DeliveryView{}, &api.FieldError{Field: "pool", Err: fmt.Errorf("unknown pool %q", req.Pool)}
		}
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
	if err := d.m.Spool.PutBlob(tplBlobPrefix+id, tb); err != nil {
		return api.DeliveryView{}, err
	}
	name := req.Name
	if name == "" {
		name = id
	}
	dm := &deliveryMeta{ID: id, Name: name, Sender: req.From, Pool: req.Pool, Created: d.m.opts.Now(), tpl: c, mu: &sync.Mutex{}}
	if err := d.save(dm); err != nil {
		return api.DeliveryView{}, err
	}
	d.mu.Lock()
	d.byID[id] = dm
	d.mu.Unlock()
	d.m.Log.Write(&events.Record{Type: events.AdminAction, Time: dm.Created, DeliveryID: id, Sender: req.From, Status: "delivery created", Detail: name})
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

// addRecipients streams a CSV or NDJSON recipient list into a delivery.
func (d *deliveries) addRecipients(ctx context.Context, id, contentType string, body io.Reader) (api.AddResult, error) {
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
func (d *deliveries) ingest(ctx context.Context, dm *deliveryMeta, each func(func(campaign.Recipient) error) error) (api.AddResult, error) {
	var res api.AddResult
	now := d.m.opts.Now()
	validity := time.Duration(d.m.validity.Load())
	batch := make([]*spool.Message, 0, ingestBatch)
	var suppressed []*spool.Message
	tpl, err := d.template(dm.ID)
	if err != nil {
		return res, err
	}
	flush := func() error {
		if len(batch) > 0 {
			if err := d.m.Spool.PutMany(ctx, batch, nil); err != nil {
				return err
			}
		}
		// Suppressed recipients are counted and logged, never stored.
		for _, msg := range suppressed {
			d.m.Log.Write(&events.Record{Type: events.Reception, Time: now, DeliveryID: dm.ID, Sender: msg.Sender, Recipient: msg.Recipients[0].Addr})
			d.m.suppressedRecord(msg, 0, now)
		}
		for _, msg := range batch {
			d.m.Log.Write(&events.Record{Type: events.Reception, Time: now, ID: msg.ID.String(), DeliveryID: dm.ID, Sender: msg.Sender, Recipient: msg.Recipients[0].Addr})
			d.m.Queue.Enqueue(msg)
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
		msg := &spool.Message{Sender: dm.Sender, Received: now, Expires: now.Add(validity), DeliveryID: dm.ID, Pool: dm.Pool,
			Recipients: []spool.Recipient{{Addr: r.Address, Vars: campaign.EncodeVars(r.Vars)}}}
		if d.m.suppressed(r.Address) {
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
func (d *deliveries) check(c *campaign.Compiled, id string, r campaign.Recipient) error {
	return c.Check(r.Vars, campaign.Meta{DeliveryID: id, Recipient: r.Address,
		MessageID: campaign.MessageID(id, 0, d.m.Config().Server.Hostname)})
}

func (dm *deliveryMeta) cancelled() bool {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return dm.Stopped
}

func (d *deliveries) cancel(id, who string) (int, error) {
	dm := d.get(id)
	if dm == nil {
		return 0, &api.NotFoundError{What: "delivery " + id}
	}
	dm.mu.Lock()
	dm.Stopped = true
	dm.mu.Unlock()
	// The queue reports each cancelled recipient through the outcome hook
	// (now, or when it comes back from a connection): that is what counts.
	n := d.m.Queue.CancelDelivery(id, who)
	return n, d.save(dm)
}

func (d *deliveries) view(dm *deliveryMeta) api.DeliveryView {
	dm.mu.Lock()
	v := api.DeliveryView{ID: dm.ID, Name: dm.Name, Sender: dm.Sender, Pool: dm.Pool, Created: dm.Created, Total: dm.Total,
		Counts: dm.Counts, Recovered: dm.Restored}
	v.BouncedByReason = make(map[string]int, len(dm.Reasons))
	for k, n := range dm.Reasons {
		v.BouncedByReason[k] = n
	}
	now := d.m.opts.Now()
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

func (d *deliveries) list() []api.DeliveryView {
	d.mu.Lock()
	all := make([]*deliveryMeta, 0, len(d.byID))
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

func (d *deliveries) detail(id string) (api.DeliveryView, bool) {
	dm := d.get(id)
	if dm == nil {
		return api.DeliveryView{}, false
	}
	v := d.view(dm)
	now := d.m.opts.Now()
	d.mu.Lock()
	c, ok := d.statusCache[id]
	d.mu.Unlock()
	if !ok || now.Sub(c.at) > time.Second {
		c = statusCount{at: now, counts: d.m.Queue.QueuedByDelivery(id)}
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
