package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Recipient is one envelope recipient of a message and its delivery state.
type Recipient struct {
	Addr         string
	State        State
	Attempts     uint16
	NextAttempt  time.Time // zero = due now
	LastCode     uint16
	LastEnhanced string
	LastText     string
	Vars         []byte // opaque per-recipient template variables (campaigns); empty is stored and loaded as nil
}

// Message is the stored envelope and state of one message; its body is stored
// apart (see Body). Times are kept to the nanosecond but lose their location
// and monotonic reading: compare them with Equal.
type Message struct {
	ID         ID // assigned by Put
	Sender     string
	Received   time.Time
	Expires    time.Time
	DeliveryID string // campaign id; "" for single messages. Campaign messages have no body: it is rendered from a blob at send time
	Pool       string
	Tenant     string // the customer it is sent for ("" = none): quotas and fair share
	Flags      uint8  // opaque to the spool (e.g. DSN wanted)
	Size       int64
	Recipients []Recipient
}

// Options tune Open.
type Options struct {
	// NoSync skips fsync on commit. UNSAFE: a crash can lose or corrupt
	// acknowledged mail. For tests and benchmarks only.
	NoSync bool
	// Logger receives open/close and corruption reports; nil discards them.
	Logger *slog.Logger
}

// Stats is a snapshot of the spool's size and write activity.
type Stats struct {
	Messages   int64 // stored messages
	Recipients int64 // queued (not final) recipients of stored messages
	Bytes      int64 // size of the database file
	Used       int64 // bytes of the database up to its last page in use (bbolt grows the file ahead of need)
	Commits    int64 // durable commits since Open (each is one fdatasync of its pages and meta page, see doc.go)
	Writes     int64 // write requests those commits carried since Open
}

var (
	// ErrNotFound is returned for a message, blob or key that is not stored.
	ErrNotFound = errors.New("spool: not found")
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("spool: closed")
)

const (
	fileName = "spool.db"
	// lockTimeout bounds the wait for another process holding the spool.
	lockTimeout = 10 * time.Second
	// maxBatchRequests and maxBatchBytes bound one group commit so a burst
	// cannot build a transaction without limit; what is left waits for the
	// next commit.
	maxBatchRequests = 1024
	maxBatchBytes    = 64 << 20

	// groupWait and groupFill: a busy committer waits up to groupWait for
	// groupFill requests (see run). Measured with penstock bench's zipf
	// campaign: 30% fewer commits, 5–16% less CPU per message; one domain
	// no worse; 600 µs/32 and 150 µs/8 did less well (BENCHMARKS.md, "One
	// fdatasync a commit").
	groupWait = 300 * time.Microsecond
	groupFill = 16
	// fillPercent packs pages tight: keys are appended in increasing order,
	// so the default half-full split would leave every page half empty.
	fillPercent = 0.9
	// scanChunk is how many records Load and ForEach copy out per read
	// transaction; callbacks run outside it so a slow or writing callback
	// never pins the database.
	scanChunk = 1024
	// unmapEvery is how many chunks Load reads between two unmapResident
	// calls (each walks the mapping's page tables: ~1 ms at 1 GB).
	unmapEvery = 64
	// noFreelistSync: bbolt otherwise rewrites its whole free-page list on
	// every commit, which after a large campaign drains is hundreds of KB per
	// commit (measured: 8.4k vs 13k put+delete/s with 250k freed messages).
	// The price is a scan at Open to rebuild the list: ~150 ms per million
	// campaign recipients.
	noFreelistSync = true
	// initialMmap is address space, not memory; large enough that growing
	// the file rarely has to wait for readers to remap.
	initialMmap = 1 << 30
)

var (
	bucketMeta = []byte("meta")
	bucketBody = []byte("body")
	bucketBlob = []byte("blob")
	bucketKV   = []byte("kv")
)

// Spool is the open store. It is safe for concurrent use.
type Spool struct {
	db   *bolt.DB
	path string
	log  *slog.Logger

	mu     sync.RWMutex // held shared while sending on reqs; exclusively to close it
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the committer has exited

	groupWait time.Duration // a busy committer's wait for groupFill requests (run)
	groupFill int

	messages   atomic.Int64
	recipients atomic.Int64
	commits    atomic.Int64
	writes     atomic.Int64
	maxBatch   atomic.Int64 // largest number of requests in one commit, for tests
}

// Open opens (creating if needed) the spool in dir. It raises the ID counter
// to the time floor and counts what is stored, so Stats is right before Load.
func Open(dir string, opts Options) (_ *Spool, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create directory: %w", err)
	}
	path := filepath.Join(dir, fileName)
	start := time.Now()
	defer func() {
		// bbolt panics, instead of failing, when the page tree it walks to
		// rebuild the free list (noFreelistSync) is inconsistent.
		if r := recover(); r != nil {
			err = fmt.Errorf("spool: %s is damaged (%v); move it aside and restore from backup, or run `bbolt check` on it", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         lockTimeout,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  noFreelistSync,
		InitialMmapSize: initialMmap,
		NoSync:          opts.NoSync,
		MmapFlags:       mmapFlags,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("spool: %s is locked by another process (waited %s); is another penstock running on this spool?", path, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	s := &Spool{
		db:   db,
		path: path,
		log:  log,
		reqs: make(chan *request, maxBatchRequests),
		done: make(chan struct{}),

		groupWait: groupWait,
		groupFill: groupFill,
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketBody, bucketBlob, bucketKV} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if floor := idFloor(time.Now()); meta.Sequence() < floor {
			if err := meta.SetSequence(floor); err != nil {
				return err
			}
		}
		// Count by a scan rather than persisting counters: the scan reads no
		// more than Load will, and cannot drift from the records.
		return meta.ForEach(func(k, v []byte) error {
			q, err := queuedInRecord(v)
			if err != nil {
				log.Error("spool: unreadable meta record", "id", idFromKey(k), "err", err)
			}
			s.messages.Add(1)
			s.recipients.Add(q)
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("spool: initialise %s: %w", path, err)
	}
	s.unmapResident() // the scan's pages: Load reads them again, a chunk at a time
	// Populating the map was for this first scan. bbolt maps the file
	// again each time it outgrows the map (in the committer, at a commit);
	// populated, every such remap would make the whole file resident.
	db.MmapFlags = 0
	go s.run()
	log.Info("spool opened", "path", path, "messages", s.messages.Load(),
		"recipients", s.recipients.Load(), "took", time.Since(start), "nosync", opts.NoSync)
	return s, nil
}

// Close waits for queued writes to commit, then closes the database. Calls
// made after Close return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close %s: %w", s.path, err)
	}
	return nil
}

// idKey is a message's key: its ID, big-endian, so that keys sort by ID.
// An array: a read's key stays on the stack.
func idKey(id ID) (k [8]byte) {
	binary.BigEndian.PutUint64(k[:], uint64(id))
	return k
}

func idFromKey(k []byte) ID {
	if len(k) != 8 {
		return 0
	}
	return ID(binary.BigEndian.Uint64(k))
}

// checkMessage refuses what the spool could store but nobody could use.
func checkMessage(m *Message, body []byte) error {
	if m == nil {
		return errors.New("spool: nil message")
	}
	if len(m.Recipients) == 0 {
		return errors.New("spool: message has no recipients")
	}
	if int64(len(body)) > bolt.MaxValueSize {
		return fmt.Errorf("spool: body of %d bytes is over the store's limit of %d", len(body), bolt.MaxValueSize)
	}
	return nil
}

// Put stores m and body (which may be nil: campaign messages have none) and
// sets m.ID. It returns once the message is on disk; concurrent callers share
// one commit. If ctx ends before the write joins a commit, Put returns the
// context's error and stores nothing; once it has joined, Put waits for the
// commit (milliseconds), so a caller never sees an error for a message that
// was in fact stored. Put does not keep body or m after it returns.
func (s *Spool) Put(ctx context.Context, m *Message, body []byte) error {
	if err := checkMessage(m, body); err != nil {
		return err
	}
	rec, queued, err := encodeMeta(m)
	if err != nil {
		return fmt.Errorf("spool: put: %w", err)
	}
	var id ID
	err = s.submit(ctx, len(rec)+len(body), func(w *writeTx) error {
		id = w.nextID()
		kb := idKey(id)
		k := kb[:]
		if err := w.meta.Put(k, rec); err != nil {
			return err
		}
		if len(body) > 0 {
			if err := w.putBody(k, body); err != nil {
				return err
			}
		}
		w.messages++
		w.recipients += queued
		return nil
	})
	if err != nil {
		return err
	}
	m.ID = id
	return nil
}

// PutMany stores ms in one commit and sets their IDs; it is all or nothing.
// bodies is nil or has one entry (possibly nil) per message.
func (s *Spool) PutMany(ctx context.Context, ms []*Message, bodies [][]byte) error {
	if len(bodies) != 0 && len(bodies) != len(ms) {
		return fmt.Errorf("spool: put many: %d messages but %d bodies", len(ms), len(bodies))
	}
	if len(ms) == 0 {
		return nil
	}
	recs := make([][]byte, len(ms))
	var queued int64
	size := 0
	for i, m := range ms {
		var body []byte
		if len(bodies) > 0 {
			body = bodies[i]
		}
		if err := checkMessage(m, body); err != nil {
			return fmt.Errorf("%w (message %d of %d)", err, i+1, len(ms))
		}
		rec, q, err := encodeMeta(m)
		if err != nil {
			return fmt.Errorf("spool: put many: message %d of %d: %w", i+1, len(ms), err)
		}
		recs[i] = rec
		queued += q
		size += len(rec) + len(body)
	}
	ids := make([]ID, len(ms))
	err := s.submit(ctx, size, func(w *writeTx) error {
		// bbolt keeps keys until commit: one buffer for all of them.
		keys := make([]byte, 8*len(ms))
		for i := range ms {
			ids[i] = w.nextID()
			k := keys[8*i : 8*i+8 : 8*i+8]
			binary.BigEndian.PutUint64(k, uint64(ids[i]))
			if err := w.meta.Put(k, recs[i]); err != nil {
				return err
			}
			if len(bodies) > 0 && len(bodies[i]) > 0 {
				if err := w.putBody(k, bodies[i]); err != nil {
					return err
				}
			}
		}
		w.messages += int64(len(ms))
		w.recipients += queued
		return nil
	})
	if err != nil {
		return err
	}
	for i, m := range ms {
		m.ID = ids[i]
	}
	return nil
}

// Update durably replaces the stored meta of m.ID with m. When every
// recipient is final the message and its body are deleted instead. Update of
// an ID that is not stored returns ErrNotFound. It rewrites the whole record:
// its cost grows with the number of recipients in the message.
func (s *Spool) Update(m *Message) error {
	ch := s.UpdateAsync(m)
	return <-ch
}

// UpdateAsync is Update without waiting for the commit: m is encoded before
// it returns, so the caller may change m at once; the channel receives the
// commit's result. Updates of one message commit in the order they were
// made (one committer, FIFO).
func (s *Spool) UpdateAsync(m *Message) <-chan error {
	fail := func(err error) <-chan error {
		ch := make(chan error, 1)
		ch <- err
		return ch
	}
	if m == nil || m.ID == 0 {
		return fail(errors.New("spool: update: message without id"))
	}
	final := allFinal(m)
	var rec []byte
	var queued int64
	if !final {
		var err error
		if rec, queued, err = encodeMeta(m); err != nil {
			return fail(fmt.Errorf("spool: update %s: %w", m.ID, err))
		}
	}
	id := m.ID
	r, err := s.enqueue(nil, len(rec), func(w *writeTx) error {
		kb := idKey(id)
		k := kb[:]
		old := w.meta.Get(k)
		if old == nil {
			return refuse(fmt.Errorf("spool: update %s: %w", id, ErrNotFound))
		}
		oldQueued, _ := queuedInRecord(old) // unreadable: counted as 0 at Open too
		if final {
			return w.remove(k, oldQueued)
		}
		if err := w.meta.Put(k, rec); err != nil {
			return err
		}
		w.recipients += queued - oldQueued
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return r.done
}

// Delete removes a message and its body. It returns ErrNotFound if id is not
// stored.
func (s *Spool) Delete(id ID) error {
	return s.submit(nil, 0, func(w *writeTx) error {
		kb := idKey(id)
		k := kb[:]
		old := w.meta.Get(k)
		if old == nil {
			return refuse(fmt.Errorf("spool: delete %s: %w", id, ErrNotFound))
		}
		q, _ := queuedInRecord(old)
		return w.remove(k, q)
	})
}

// Body returns a copy of the body of message id: nil, nil for a message
// stored without one, ErrNotFound if the message is not stored.
func (s *Spool) Body(id ID) ([]byte, error) {
	return s.AppendBody(nil, id)
}

// AppendBody is Body appending the copy to dst, for a caller that reuses its
// buffers: it returns dst as is for a message stored without a body, and
// dst and ErrNotFound if the message is not stored.
func (s *Spool) AppendBody(dst []byte, id ID) ([]byte, error) {
	body := dst
	err := s.view(func(tx *bolt.Tx) error {
		k := idKey(id)
		// A body is written and deleted in the same transaction as its
		// meta, so a body found means the message is stored: the meta
		// lookup is needed only when there is none.
		if v := storedBody(tx.Bucket(bucketBody), k[:]); len(v) > 0 {
			body = append(body, v...)
			return nil
		}
		if tx.Bucket(bucketMeta).Get(k[:]) == nil {
			return fmt.Errorf("spool: body %s: %w", id, ErrNotFound)
		}
		return nil
	})
	return body, err
}

// Get returns a fresh copy of the stored message id, or ErrNotFound. The
// queue reads a message back this way when it is about to send it instead
// of keeping every queued message decoded.
func (s *Spool) Get(id ID) (*Message, error) {
	var d decoder
	m := new(Message)
	err := s.view(func(tx *bolt.Tx) error {
		k := idKey(id)
		v := tx.Bucket(bucketMeta).Get(k[:])
		if v == nil {
			return fmt.Errorf("spool: get %s: %w", id, ErrNotFound)
		}
		if err := d.decode(v, m); err != nil {
			return fmt.Errorf("spool: get %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.ID = id
	return m, nil
}

// Scan is Load without a fresh value per message: fn must not keep m (nor
// its Recipients or Vars; strings may be kept), which the next call reuses.
// A restart that only takes what it needs from each message (the queue)
// then leaves no decoded messages behind for the collector.
func (s *Spool) Scan(fn func(m *Message) error) error {
	return s.scan(false, fn)
}

// Load calls fn with every stored message, in ID order, each a fresh value fn
// may keep. It streams: records are decoded in chunks inside short read
// transactions and fn runs outside them, so fn may write to the spool. A
// record that cannot be decoded is logged and skipped (left on disk for
// inspection), so one bad record cannot keep the MTA from starting. Load
// stops at fn's first error and returns it.
func (s *Spool) Load(fn func(m *Message) error) error {
	return s.scan(true, fn)
}

// scan is Load (fresh: a new Message each) and Scan (one chunk's messages,
// reused from chunk to chunk).
func (s *Spool) scan(fresh bool, fn func(m *Message) error) error {
	var d decoder
	var after []byte
	batch := make([]*Message, 0, scanChunk)
	var reused []Message
	if !fresh {
		reused = make([]Message, scanChunk)
	}
	defer s.unmapResident()
	for chunk := 1; ; chunk++ {
		more := false
		batch = batch[:0]
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketMeta).Cursor()
			k, v := first(c, after)
			for ; k != nil; k, v = c.Next() {
				if len(batch) == scanChunk {
					more = true
					break
				}
				after = append(after[:0], k...)
				var m *Message
				if fresh {
					m = new(Message)
				} else {
					m = &reused[len(batch)]
				}
				if err := d.decode(v, m); err != nil {
					s.log.Error("spool: skipping unreadable meta record", "id", idFromKey(k), "err", err)
					continue
				}
				m.ID = idFromKey(k)
				batch = append(batch, m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for i, m := range batch {
			batch[i] = nil
			if err := fn(m); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		if chunk%unmapEvery == 0 {
			// Pages already read stay out of the resident set, so that
			// the file and what fn builds from it never add up in RSS.
			s.unmapResident()
		}
	}
}

// first positions c on the first key after the key after (the first key when
// after is nil).
func first(c *bolt.Cursor, after []byte) ([]byte, []byte) {
	if after == nil {
		return c.First()
	}
	k, v := c.Seek(after)
	if k != nil && bytes.Equal(k, after) {
		return c.Next()
	}
	return k, v
}

// PutBlob durably stores data under key (templates and other shared content).
func (s *Spool) PutBlob(key string, data []byte) error {
	if err := checkKey("blob", key); err != nil {
		return err
	}
	k := []byte(key)
	if data == nil {
		data = []byte{}
	}
	return s.submit(nil, len(key)+len(data), func(w *writeTx) error {
		return w.tx.Bucket(bucketBlob).Put(k, data)
	})
}

// Blob returns a copy of the blob stored under key, or ErrNotFound.
func (s *Spool) Blob(key string) ([]byte, error) {
	var data []byte
	err := s.view(func(tx *bolt.Tx) error {
		v, ok := get(tx.Bucket(bucketBlob), []byte(key))
		if !ok {
			return fmt.Errorf("spool: blob %q: %w", key, ErrNotFound)
		}
		data = bytes.Clone(v)
		if data == nil {
			data = []byte{}
		}
		return nil
	})
	return data, err
}

// DeleteBlob removes a blob; removing one that is not stored is not an error.
func (s *Spool) DeleteBlob(key string) error {
	k := []byte(key)
	return s.submit(nil, 0, func(w *writeTx) error {
		return w.tx.Bucket(bucketBlob).Delete(k)
	})
}

// get tells a stored empty value from a missing key, which Bucket.Get cannot.
func get(b *bolt.Bucket, key []byte) ([]byte, bool) {
	if b == nil || len(key) == 0 {
		return nil, false
	}
	k, v := b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) || v == nil && b.Bucket(key) != nil {
		return nil, false
	}
	return v, true
}

func checkKey(what, key string) error {
	if key == "" {
		return fmt.Errorf("spool: %s key is empty", what)
	}
	if len(key) > bolt.MaxKeySize {
		return fmt.Errorf("spool: %s key of %d bytes is over the limit of %d", what, len(key), bolt.MaxKeySize)
	}
	return nil
}

// Stats returns current counts. Messages and Recipients are exact: they are
// counted at Open and kept by each commit.
func (s *Spool) Stats() Stats {
	st := Stats{
		Messages:   s.messages.Load(),
		Recipients: s.recipients.Load(),
		Commits:    s.commits.Load(),
		Writes:     s.writes.Load(),
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.Bytes = fi.Size()
	}
	_ = s.view(func(tx *bolt.Tx) error { st.Used = tx.Size(); return nil })
	return st
}

// view runs a read transaction, reporting ErrClosed after Close.
func (s *Spool) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
