package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openT(t testing.TB, dir string) *Spool {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func body(n int, seed string) []byte {
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func loadAll(t *testing.T, s *Spool) map[ID]*Message {
	t.Helper()
	got := map[ID]*Message{}
	var last ID
	err := s.Load(func(m *Message) error {
		if m.ID <= last {
			return fmt.Errorf("Load out of order: %s after %s", m.ID, last)
		}
		last = m.ID
		got[m.ID] = m
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestPutLoadBodyAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ctx := context.Background()
	var want []*Message
	for i := 0; i < 50; i++ {
		m := sampleMessage()
		m.Sender = fmt.Sprintf("s%d@example.com", i)
		var b []byte
		if i%5 != 0 { // every fifth has no body
			b = body(2048, m.Sender)
		}
		if err := s.Put(ctx, m, b); err != nil {
			t.Fatal(err)
		}
		if i > 0 && m.ID <= want[i-1].ID {
			t.Fatalf("ID %s not above previous %s", m.ID, want[i-1].ID)
		}
		want = append(want, m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	got := loadAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("loaded %d, want %d", len(got), len(want))
	}
	for i, m := range want {
		sameMessage(t, got[m.ID], m)
		b, err := s.Body(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if b != nil {
				t.Fatalf("%s: body %q, want nil", m.ID, b)
			}
		} else if !bytes.Equal(b, body(2048, m.Sender)) {
			t.Fatalf("%s: body differs", m.ID)
		}
	}
	if _, err := s.Body(want[len(want)-1].ID + 1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Body of unknown id: %v", err)
	}
	// IDs keep rising after reopen.
	m := sampleMessage()
	if err := s.Put(ctx, m, nil); err != nil {
		t.Fatal(err)
	}
	if m.ID <= want[len(want)-1].ID {
		t.Fatalf("ID after reopen %s not above %s", m.ID, want[len(want)-1].ID)
	}
	if floor := ID(idFloor(time.Now().Add(-time.Minute))); want[0].ID < floor {
		t.Fatalf("first ID %s below the time floor %s", want[0].ID, floor)
	}
}

func TestIDsRiseAfterEverythingDeleted(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	m := sampleMessage()
	if err := s.Put(context.Background(), m, nil); err != nil {
		t.Fatal(err)
	}
	first := m.ID
	if err := s.Delete(first); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	m = sampleMessage()
	if err := s.Put(context.Background(), m, nil); err != nil {
		t.Fatal(err)
	}
	if m.ID <= first {
		t.Fatalf("ID %s reused or lower than deleted %s", m.ID, first)
	}
}

func TestPutRefuses(t *testing.T) {
	s := openT(t, t.TempDir())
	ctx := context.Background()
	if err := s.Put(ctx, &Message{Sender: "x"}, nil); err == nil {
		t.Error("message without recipients stored")
	}
	bad := sampleMessage()
	bad.Recipients[0].State = 42
	if err := s.Put(ctx, bad, nil); err == nil {
		t.Error("invalid state stored")
	}
	if bad.ID != 0 {
		t.Error("refused message got an ID")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	m := sampleMessage()
	if err := s.Put(cctx, m, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put: %v", err)
	}
	if st := s.Stats(); st.Messages != 0 {
		t.Errorf("refused puts stored %d messages", st.Messages)
	}
}

func TestUpdate(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	m := sampleMessage()
	m.Recipients = append(m.Recipients, Recipient{Addr: "c@example.com"})
	if err := s.Put(context.Background(), m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 1 || st.Recipients != 2 {
		t.Fatalf("stats after put: %+v", st)
	}
	// A retry scheduled on one recipient, the other delivered.
	m.Recipients[0].Attempts = 1
	m.Recipients[0].NextAttempt = time.Now().Add(10 * time.Minute)
	m.Recipients[0].LastCode, m.Recipients[0].LastEnhanced, m.Recipients[0].LastText = 451, "4.7.1", "try later"
	m.Recipients[2].State = Delivered
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 1 || st.Recipients != 1 {
		t.Fatalf("stats after update: %+v", st)
	}
	s.Close()
	s = openT(t, dir)
	got := loadAll(t, s)
	sameMessage(t, got[m.ID], m)
	if st := s.Stats(); st.Messages != 1 || st.Recipients != 1 {
		t.Fatalf("stats after reopen: %+v", st)
	}
	// Last queued recipient final: message and body go.
	m.Recipients[0].State = Expired
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Body(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body after final update: %v", err)
	}
	if n := len(loadAll(t, s)); n != 0 {
		t.Fatalf("%d messages left after final update", n)
	}
	if st := s.Stats(); st.Messages != 0 || st.Recipients != 0 {
		t.Fatalf("stats after final update: %+v", st)
	}
	if err := s.Update(m); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of deleted message: %v", err)
	}
	if err := s.Update(&Message{Recipients: m.Recipients}); err == nil {
		t.Fatal("update without id accepted")
	}
}

// Get reads back one message as Update left it; a message that is gone is
// ErrNotFound.
func TestGet(t *testing.T) {
	s := openT(t, t.TempDir())
	m := sampleMessage()
	if err := s.Put(context.Background(), m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameMessage(t, got, m)
	m.Recipients[0].Attempts = 2
	m.Recipients[0].LastCode, m.Recipients[0].LastText = 451, "try later"
	if err := s.Update(m); err != nil {
		t.Fatal(err)
	}
	if got, err = s.Get(m.ID); err != nil {
		t.Fatal(err)
	}
	sameMessage(t, got, m)
	if err := s.Delete(m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get of a deleted message: %v, want ErrNotFound", err)
	}
}

func TestDelete(t *testing.T) {
	s := openT(t, t.TempDir())
	m := sampleMessage()
	if err := s.Put(context.Background(), m, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(m.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Body(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body after delete: %v", err)
	}
	if st := s.Stats(); st.Messages != 0 || st.Recipients != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// A refused request (Update of an unknown ID) shares a commit with good
// ones and must not disturb them; a failing apply is rolled back alone.
func TestCommitIsolatesFailures(t *testing.T) {
	s := openT(t, t.TempDir())
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 60)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch i % 3 {
			case 0:
				errs[i] = s.Put(ctx, sampleMessage(), nil)
			case 1:
				errs[i] = s.Update(&Message{ID: 1, Recipients: []Recipient{{}}})
			case 2:
				errs[i] = s.submit(nil, 0, func(w *writeTx) error {
					_ = w.meta.Put([]byte("partial"), []byte("x"))
					return errors.New("apply failed")
				})
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		switch i % 3 {
		case 0:
			if err != nil {
				t.Errorf("put %d: %v", i, err)
			}
		case 1:
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("update %d: %v", i, err)
			}
		case 2:
			if err == nil || err.Error() != "apply failed" {
				t.Errorf("failing apply %d: %v", i, err)
			}
		}
	}
	if n := len(loadAll(t, s)); n != 20 {
		t.Fatalf("%d messages stored, want 20", n)
	}
	err := s.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("partial")) != nil {
			return errors.New("write of a failed request was committed")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPutMany(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ms := make([]*Message, 10000)
	bodies := make([][]byte, len(ms))
	for i := range ms {
		ms[i] = &Message{DeliveryID: "camp-1", Sender: "news@example.com",
			Recipients: []Recipient{{Addr: fmt.Sprintf("u%d@example.org", i), Vars: []byte(fmt.Sprintf(`{"n":%d}`, i))}}}
		if i%100 == 0 {
			bodies[i] = body(100, fmt.Sprint(i))
		}
	}
	if err := s.PutMany(context.Background(), ms, bodies); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Messages != 10000 || st.Recipients != 10000 || st.Commits != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if err := s.PutMany(context.Background(), ms[:3], nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMany(context.Background(), ms[:3], bodies[:2]); err == nil {
		t.Fatal("mismatched bodies accepted")
	}
	bad := []*Message{sampleMessage(), {}}
	if err := s.PutMany(context.Background(), bad, nil); err == nil || bad[0].ID != 0 {
		t.Fatalf("batch with an invalid message: %v, id %s", err, bad[0].ID)
	}
	s.Close()
	s = openT(t, dir)
	got := loadAll(t, s)
	if len(got) != 10003 { // the first three were stored twice
		t.Fatalf("loaded %d", len(got))
	}
	for i, m := range ms {
		sameMessage(t, got[m.ID], m)
		want := bodies[i]
		if i < 3 {
			want = nil // their second copy was stored without a body
		}
		b, err := s.Body(m.ID)
		if err != nil || !bytes.Equal(b, want) || (want == nil) != (b == nil) {
			t.Fatalf("body %d: %q %v", i, b, err)
		}
	}
}

func TestLoad(t *testing.T) {
	var logged bytes.Buffer
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ms := make([]*Message, 3*scanChunk+7)
	for i := range ms {
		ms[i] = &Message{Recipients: []Recipient{{Addr: fmt.Sprint(i)}}}
	}
	if err := s.PutMany(context.Background(), ms, nil); err != nil {
		t.Fatal(err)
	}
	// A corrupt record in the middle is skipped and reported, not fatal.
	corrupt := ms[scanChunk].ID
	err = s.db.Update(func(tx *bolt.Tx) error {
		k := idKey(corrupt)
		return tx.Bucket(bucketMeta).Put(k[:], []byte{metaVersion, 0, 99})
	})
	if err != nil {
		t.Fatal(err)
	}
	// The callback may write to the spool while Load runs.
	n := 0
	err = s.Load(func(m *Message) error {
		n++
		if m.ID == corrupt {
			t.Fatal("corrupt record delivered")
		}
		return s.Delete(m.ID)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms)-1 {
		t.Fatalf("Load gave %d messages, want %d", n, len(ms)-1)
	}
	if !strings.Contains(logged.String(), corrupt.String()) {
		t.Fatalf("corrupt record %s not logged: %s", corrupt, logged.String())
	}
	// Callback errors stop Load.
	stop := errors.New("stop")
	if err := s.PutMany(context.Background(), ms[:5], nil); err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := s.Load(func(*Message) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Load with failing callback: %v after %d calls", err, calls)
	}
}

func TestBlobs(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	tmpl := body(100000, "template ")
	if err := s.PutBlob("tmpl/camp-1", tmpl); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob("empty", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob("", []byte("x")); err == nil {
		t.Fatal("empty key accepted")
	}
	s.Close()
	s = openT(t, dir)
	if b, err := s.Blob("tmpl/camp-1"); err != nil || !bytes.Equal(b, tmpl) {
		t.Fatalf("blob: %d bytes, %v", len(b), err)
	}
	if b, err := s.Blob("empty"); err != nil || b == nil || len(b) != 0 {
		t.Fatalf("empty blob: %q %v", b, err)
	}
	if _, err := s.Blob("tmpl/camp"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	if err := s.PutBlob("tmpl/camp-1", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.Blob("tmpl/camp-1"); string(b) != "v2" {
		t.Fatalf("overwrite: %q", b)
	}
	if err := s.DeleteBlob("tmpl/camp-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBlob("tmpl/camp-1"); err != nil {
		t.Fatalf("deleting a missing blob: %v", err)
	}
	if _, err := s.Blob("tmpl/camp-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted blob: %v", err)
	}
}

func TestKV(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	q := s.KV("quarantine")
	other := s.KV("other")
	if _, err := q.Get("a@x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get from unused bucket: %v", err)
	}
	if err := q.ForEach("", func(string, []byte) error { return errors.New("called") }); err != nil {
		t.Fatalf("ForEach on unused bucket: %v", err)
	}
	if err := q.Delete("a@x"); err != nil {
		t.Fatalf("delete from unused bucket: %v", err)
	}
	n := 2*scanChunk + 10
	for i := 0; i < n; i++ {
		if err := q.Put(fmt.Sprintf("addr/%05d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"addq", "adds/1", "zzz"} {
		if err := q.Put(k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Put("addr/00001", []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := q.Put("", nil); err == nil {
		t.Fatal("empty key accepted")
	}
	if err := s.KV("").Put("k", nil); err == nil {
		t.Fatal("empty bucket name accepted")
	}
	s.Close()
	s = openT(t, dir)
	q = s.KV("quarantine")
	if v, err := q.Get("addr/00001"); err != nil || string(v) != "1" {
		t.Fatalf("get: %q %v", v, err)
	}
	if v, err := s.KV("other").Get("addr/00001"); err != nil || string(v) != "other" {
		t.Fatalf("other bucket: %q %v", v, err)
	}
	// ForEach sees only the prefix, in order, across chunks, and its
	// callback may write to the same store.
	seen := 0
	err := q.ForEach("addr/", func(k string, v []byte) error {
		if want := fmt.Sprintf("addr/%05d", seen); k != want || string(v) != fmt.Sprint(seen) {
			return fmt.Errorf("entry %d: %q=%q", seen, k, v)
		}
		seen++
		return q.Delete(k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != n {
		t.Fatalf("ForEach saw %d, want %d", seen, n)
	}
	if _, err := q.Get("addr/00001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	var rest []string
	_ = q.ForEach("", func(k string, _ []byte) error { rest = append(rest, k); return nil })
	if strings.Join(rest, ",") != "addq,adds/1,zzz" {
		t.Fatalf("left: %v", rest)
	}
	stop := errors.New("stop")
	if err := q.ForEach("", func(string, []byte) error { return stop }); err != stop {
		t.Fatalf("ForEach error: %v", err)
	}
}

// Concurrent writers must share commits: far fewer fsync rounds than Puts.
func TestGroupCommit(t *testing.T) {
	s := openT(t, t.TempDir())
	const writers, each = 20, 50
	b := body(2048, "group commit ")
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				if err := s.Put(context.Background(), sampleMessage(), b); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	puts := int64(writers * each)
	if st.Messages != puts || st.Writes != puts {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("%d puts in %d commits: mean batch %.1f, largest %d",
		puts, st.Commits, float64(puts)/float64(st.Commits), s.maxBatch.Load())
	if st.Commits >= puts/2 {
		t.Fatalf("%d commits for %d concurrent puts: writes are not sharing fsyncs", st.Commits, puts)
	}
}

func TestStatsBytes(t *testing.T) {
	s := openT(t, t.TempDir())
	before := s.Stats().Bytes
	if before <= 0 {
		t.Fatalf("empty spool has %d bytes", before)
	}
	ms := make([]*Message, 2000)
	bodies := make([][]byte, len(ms))
	for i := range ms {
		ms[i] = sampleMessage()
		bodies[i] = body(2048, "x")
	}
	if err := s.PutMany(context.Background(), ms, bodies); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Bytes < 2000*2048 {
		t.Fatalf("2000 × 2 KB stored in %d bytes", st.Bytes)
	}
	if st.Messages != 2000 || st.Recipients != 2000 { // sample: one queued, one bounced
		t.Fatalf("stats: %+v", st)
	}
}

func TestClosed(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMessage()
	if err := s.Put(context.Background(), m, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Put":    s.Put(context.Background(), sampleMessage(), nil),
		"Update": s.Update(m),
		"Delete": s.Delete(m.ID),
		"Blob":   func() error { _, err := s.Blob("x"); return err }(),
		"Body":   func() error { _, err := s.Body(m.ID); return err }(),
		"Load":   s.Load(func(*Message) error { return nil }),
		"KV":     s.KV("x").Put("k", nil),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

func TestOpenRefusesDamagedFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/"+fileName, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("opened a file that is not a spool")
	}
}

// Scan gives every message as Load does, although it reuses the values:
// recipients of a larger message before never leak into a smaller one.
func TestScanMatchesLoad(t *testing.T) {
	s := openT(t, t.TempDir())
	now := time.Now()
	var ms []*Message
	for i := range 2*scanChunk + 5 {
		m := &Message{Sender: "s@example.org", Received: now, Expires: now.Add(time.Hour), Size: int64(i)}
		for r := range 1 + (i*7)%3 {
			rc := Recipient{Addr: fmt.Sprintf("r%d-%d@example.com", i, r)}
			if (i+r)%2 == 0 {
				rc.Vars = []byte(fmt.Sprintf("v%d", i))
				rc.Attempts, rc.LastCode, rc.LastText = 1, 451, "later"
			}
			m.Recipients = append(m.Recipients, rc)
		}
		ms = append(ms, m)
	}
	if err := s.PutMany(context.Background(), ms, nil); err != nil {
		t.Fatal(err)
	}
	want := loadAll(t, s)
	n := 0
	err := s.Scan(func(m *Message) error {
		w := want[m.ID]
		if w == nil {
			return fmt.Errorf("Scan gave %s, which Load did not", m.ID)
		}
		sameMessage(t, m, w)
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("Scan gave %d messages, want %d", n, len(ms))
	}
}

// A busy committer (requests queued when a commit ends) waits for groupFill
// requests before it commits; an idle one commits a lone write at once. The
// wait is made a minute long, so a committer that waited when idle would
// hold the last Put past the test's deadline.
func TestBusyCommitterWaitsForAFullerGroup(t *testing.T) {
	s := openT(t, t.TempDir())
	s.groupWait, s.groupFill = time.Minute, 4
	nop := func(w *writeTx) error { return nil }
	entered, gate := make(chan struct{}), make(chan struct{})
	first, err := s.enqueue(nil, 0, func(w *writeTx) error { close(entered); <-gate; return nil })
	if err != nil {
		t.Fatal(err)
	}
	<-entered // the committer holds the first commit
	commits := s.Stats().Commits + 1
	var reqs []*request
	for range 2 { // queued while the first commit is held: the committer will be busy
		r, err := s.enqueue(nil, 0, nop)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	close(gate)
	if err := <-first.done; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r, err := s.enqueue(nil, 0, nop)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Stats().Commits - commits; n != 1 || s.maxBatch.Load() != 4 {
		t.Errorf("four requests after a busy commit: %d commits, largest %d; want one commit of 4", n, s.maxBatch.Load())
	}

	done := make(chan error, 1)
	go func() { done <- s.Put(context.Background(), sampleMessage(), body(100, "idle")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a lone Put to an idle committer waited for a fuller group")
	}
}
