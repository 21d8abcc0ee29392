package intake

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/spool"
)

type fakeSpool struct {
	mu      sync.Mutex
	put     []*spool.Message
	deleted []spool.ID
	err     error
}

func (s *fakeSpool) Put(ctx context.Context, m *spool.Message, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	m.ID = spool.ID(len(s.put) + 1)
	s.put = append(s.put, m)
	return nil
}

func (s *fakeSpool) Delete(id spool.ID) error { s.deleted = append(s.deleted, id); return nil }

type fakeQueue struct{ got []*spool.Message }

func (q *fakeQueue) Enqueue(m *spool.Message) { q.got = append(q.got, m) }

type fakeLog struct{ recs []events.Record }

func (l *fakeLog) Write(r *events.Record) { l.recs = append(l.recs, *r) }

type quar map[string]bool

func (q quar) Suppressed(addr string) (bool, *quarantine.Entry) { return q[addr], nil }

func newIntake() (*Intake, *fakeSpool, *fakeQueue, *fakeLog) {
	sp, q, lg := &fakeSpool{}, &fakeQueue{}, &fakeLog{}
	in := New(Deps{Spool: sp, Queue: q, Log: lg, Quarantine: quar{"gone@example.net": true},
		Validity: func() time.Duration { return time.Hour }})
	return in, sp, q, lg
}

func count(recs []events.Record, typ events.Type) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ {
			n++
		}
	}
	return n
}

// Quarantined recipients are stored as suppressed and logged; the others
// are queued once the message is stored.
func TestStoreSuppresses(t *testing.T) {
	in, sp, q, lg := newIntake()
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	id, err := in.Store(context.Background(), "app@example.org", []string{"a@example.net", "gone@example.net"}, []byte("x"), 1, "", now)
	if err != nil || id == "" {
		t.Fatalf("Store: %q, %v", id, err)
	}
	m := sp.put[0]
	if m.Recipients[1].State != spool.Suppressed || m.Recipients[0].State == spool.Suppressed || m.Flags != 1 || !m.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("stored %+v, want the second recipient suppressed, the flags and the validity", m)
	}
	if len(q.got) != 1 || count(lg.recs, events.Reception) != 2 || count(lg.recs, events.Suppressed) != 1 {
		t.Errorf("queued %d, %d receptions, %d suppressions; want 1, 2, 1", len(q.got), count(lg.recs, events.Reception), count(lg.recs, events.Suppressed))
	}
}

// A message whose recipients are all suppressed is not queued and is
// removed from the spool again.
func TestStoreAllSuppressed(t *testing.T) {
	in, sp, q, _ := newIntake()
	if _, err := in.Store(context.Background(), "", []string{"gone@example.net"}, []byte("x"), 0, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(q.got) != 0 || len(sp.deleted) != 1 {
		t.Errorf("queued %d, deleted %d; want 0 and 1", len(q.got), len(sp.deleted))
	}
}

// A spool that refuses the write is an error for the client, and nothing
// is queued or logged as received.
func TestStoreSpoolError(t *testing.T) {
	in, sp, q, lg := newIntake()
	sp.err = errors.New("disk full")
	if _, err := in.Store(context.Background(), "a@example.org", []string{"a@example.net"}, []byte("x"), 0, "", time.Now()); err == nil {
		t.Fatal("Store succeeded on a failing spool")
	}
	if len(q.got) != 0 || len(lg.recs) != 0 {
		t.Errorf("queued %d, logged %d after a failed write; want none", len(q.got), len(lg.recs))
	}
}
