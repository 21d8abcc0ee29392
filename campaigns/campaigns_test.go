package campaigns

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/spool"
)

// Unit tests of the lifecycle over a real spool in a temporary directory
// and a fake queue and log.

type fakeQueue struct {
	mu       sync.Mutex
	enqueued []*spool.Message
}

func (q *fakeQueue) Enqueue(m *spool.Message) {
	q.mu.Lock()
	q.enqueued = append(q.enqueued, m)
	q.mu.Unlock()
}
func (q *fakeQueue) Pool(name string) ([]queue.Source, bool) {
	return nil, name == "default"
}
func (q *fakeQueue) CancelDelivery(id, who string) int { return 0 }
func (q *fakeQueue) QueuedByDelivery(id string) map[string]int {
	return map[string]int{queue.StatusRetry: 1}
}
func (q *fakeQueue) count() int            { q.mu.Lock(); defer q.mu.Unlock(); return len(q.enqueued) }
func (q *fakeQueue) first() *spool.Message { q.mu.Lock(); defer q.mu.Unlock(); return q.enqueued[0] }

type nopLog struct{}

func (nopLog) Write(*events.Record) {}

func newStore(t *testing.T, sp *spool.Spool, q *fakeQueue) *Store {
	return New(Deps{Spool: sp, Queue: q, Log: nopLog{},
		Suppressed:    func(addr string) bool { return strings.HasPrefix(addr, "blocked@") },
		LogSuppressed: func(*spool.Message, int, time.Time) {},
		Validity:      func() time.Duration { return time.Hour },
		Hostname:      func() string { return "penstock.test" }})
}

func TestLifecycle(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(dir, spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQueue{}
	d := newStore(t, sp, q)
	if err := d.Load(); err != nil {
		t.Fatal(err)
	}
	req := api.DeliveryRequest{Name: "winter", From: "news@example.org",
		Template: campaign.Template{From: "News <news@example.org>", Subject: "Hello {{.first}}", Text: "Hi {{.first}}"},
		Recipients: []campaign.Recipient{{Address: "a@example.net", Vars: map[string]string{"first": "Ann"}},
			{Address: "blocked@example.net"}}}
	v, err := d.CreateDelivery(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if v.Total != 2 || v.Counts.Suppressed != 1 || v.Counts.Queued != 1 || q.count() != 1 {
		t.Fatalf("after create: %+v, %d queued; want 2 total, 1 suppressed, 1 queued", v, q.count())
	}
	if _, err := d.CreateDelivery(context.Background(), api.DeliveryRequest{From: "x@example.org", Pool: "nope", Template: req.Template}); err == nil {
		t.Error("an unknown pool was accepted")
	}

	// The body pipeline renders each recipient's message at send time
	// from the stored template.
	m := q.first()
	tpl, err := d.Template(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	vars, err := campaign.DecodeVars(m.Recipients[0].Vars)
	if err != nil {
		t.Fatal(err)
	}
	body, err := tpl.AppendRender(nil, vars, campaign.Meta{DeliveryID: v.ID, Recipient: m.Recipients[0].Addr, MessageID: "<x@y>"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "Subject: Hello Ann") {
		t.Errorf("rendered message lacks the recipient's subject:\n%s", body)
	}

	// Final outcomes count; the bounce reason is kept.
	d.Final(m, queue.Outcome{Final: true, Verdict: bounce.Verdict{Reason: bounce.UserUnknown}}, time.Now())
	v, ok := d.Delivery(v.ID)
	if !ok || v.Counts.Bounced != 1 || v.BouncedByReason[string(bounce.UserUnknown)] != 1 || !v.Done || v.ByStatus[queue.StatusRetry] != 1 {
		t.Errorf("after the bounce: %+v, want 1 bounced by user unknown and done", v)
	}

	// Counts survive a restart; a recipient final after the last save and
	// not queued any more is reported as recovered.
	other, err := d.CreateDelivery(context.Background(), api.DeliveryRequest{Name: "other", From: "news@example.org", Template: req.Template,
		Recipients: []campaign.Recipient{{Address: "b@example.net"}}})
	if err != nil {
		t.Fatal(err)
	}
	d.SaveDirty()
	d2 := newStore(t, sp, q)
	if err := d2.Load(); err != nil {
		t.Fatal(err)
	}
	d2.Reconcile(map[string]int{}) // the spool holds none of their recipients any more
	got := map[string]api.DeliveryView{}
	for _, v := range d2.Deliveries() {
		got[v.Name] = v
	}
	if w := got["winter"]; w.Counts.Bounced != 1 || w.Recovered != 0 {
		t.Errorf("after reload: %+v, want its bounce counted and nothing recovered", w)
	}
	if o := got["other"]; o.ID != other.ID || o.Recovered != 1 || !o.Done {
		t.Errorf("after reload: %+v, want its one recipient recovered", o)
	}
	if n, err := d2.CancelDelivery(v.ID, "test"); err != nil || n != 0 {
		t.Errorf("Cancel: %d, %v", n, err)
	}
	if _, err := d2.AddRecipients(context.Background(), v.ID, "application/x-ndjson", strings.NewReader(`{"address":"late@example.net"}`+"\n")); err == nil {
		t.Error("recipients were added to a cancelled campaign")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileWhileDelivering: at start the spool's mail is already being
// delivered while the counts are reconciled; the two must not race on a
// delivery's counts (the race detector caught Reconcile reading them
// without the record's lock).
func TestReconcileWhileDelivering(t *testing.T) {
	sp, err := spool.Open(t.TempDir(), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	d := newStore(t, sp, &fakeQueue{})
	if err := d.Load(); err != nil {
		t.Fatal(err)
	}
	v, err := d.CreateDelivery(context.Background(), api.DeliveryRequest{Name: "race", From: "news@example.org",
		Template:   campaign.Template{From: "news@example.org", Subject: "s", Text: "t"},
		Recipients: []campaign.Recipient{{Address: "a@example.net"}, {Address: "b@example.net"}}})
	if err != nil {
		t.Fatal(err)
	}
	msg := &spool.Message{DeliveryID: v.ID}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			d.Final(msg, queue.Outcome{Delivered: true}, time.Now())
		}
	}()
	for range 200 {
		d.Reconcile(map[string]int{v.ID: 1})
	}
	<-done
	if got, _ := d.Delivery(v.ID); got.Counts.Delivered != 200 {
		t.Fatalf("delivered = %d, want 200", got.Counts.Delivered)
	}
}
