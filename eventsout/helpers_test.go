package eventsout

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/spool"
)

// env is a delivery log and a spool KV in a temporary directory.
type env struct {
	t   *testing.T
	cfg *config.Config
	log *events.Log
	sp  *spool.Spool
	n   int // records written
}

func newEnv(t *testing.T, now func() time.Time) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.LogDir = filepath.Join(dir, "log")
	lg, err := events.Open(cfg.Server.LogDir, events.Options{Now: now, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cfg: cfg, log: lg, sp: sp}
	t.Cleanup(func() { lg.Close(); sp.Close() })
	return e
}

// write logs n records, alternating Delivery and Bounce, recipient rN.
func (e *env) write(n int) {
	for i := 0; i < n; i++ {
		typ := events.Delivery
		if e.n%2 == 1 {
			typ = events.Bounce
		}
		e.log.Write(&events.Record{Type: typ, ID: fmt.Sprintf("m%d", e.n), Recipient: fmt.Sprintf("r%d@example.com", e.n),
			Site: "example.com", DeliveryID: "camp1", Reason: "bad-mailbox"})
		e.n++
	}
	if err := e.log.Flush(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) manager(opts Options) *Manager {
	e.t.Helper()
	opts.KV = e.sp.KV(Bucket)
	opts.Poll = 10 * time.Millisecond
	if opts.MinBackoff == 0 {
		opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 40*time.Millisecond
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	m, err := New(e.cfg, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

// received is what a test receiver has taken, by event id.
type received struct {
	mu    sync.Mutex
	byID  map[string]string // event id -> recipient
	order []string          // recipients in arrival order, first time seen
	dups  int
}

func newReceived() *received { return &received{byID: map[string]string{}} }

func (r *received) add(t *testing.T, evs []map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		id, _ := ev["event_id"].(string)
		rcpt, _ := ev["recipient"].(string)
		if id == "" {
			t.Errorf("event without an id: %v", ev)
			continue
		}
		if prev, ok := r.byID[id]; ok {
			if prev != rcpt {
				t.Errorf("event id %s names two records: %s and %s", id, prev, rcpt)
			}
			r.dups++
			continue
		}
		r.byID[id] = rcpt
		r.order = append(r.order, rcpt)
	}
}

func (r *received) addJSON(t *testing.T, body []byte) error {
	var evs []map[string]any
	if err := json.Unmarshal(body, &evs); err != nil {
		return err
	}
	r.add(t, evs)
	return nil
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// waitFor polls cond every 5ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkAll asserts r holds exactly recipients r0..r(n-1), in order.
func (r *received) checkAll(t *testing.T, from, n int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) != n-from {
		t.Fatalf("received %d distinct events, want %d", len(r.order), n-from)
	}
	for i, got := range r.order {
		if want := fmt.Sprintf("r%d@example.com", from+i); got != want {
			t.Fatalf("event %d is %s, want %s (out of order or lost)", i, got, want)
		}
	}
}
