package spool

import (
	"context"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// request is one write waiting for the committer. apply runs on the
// committer goroutine inside the shared transaction; the caller blocks on
// done, which is what makes apply's writes to captured variables safe to read
// afterwards.
type request struct {
	ctx   context.Context // nil: cannot be cancelled
	size  int
	apply func(w *writeTx) error
	done  chan error
}

// writeTx is the shared transaction as the requests see it, plus the Stats
// deltas they add, applied only if the commit succeeds.
type writeTx struct {
	tx         *bolt.Tx
	meta, body *bolt.Bucket
	messages   int64
	recipients int64
}

// nextID takes the next message ID from the counter stored in the meta
// bucket, in the same transaction as the message itself.
func (w *writeTx) nextID() ID {
	// NextSequence fails only on a closed or read-only transaction, which
	// the committer never hands out.
	n, _ := w.meta.NextSequence()
	return ID(n)
}

// remove deletes the message keyed k, which held queued recipients.
func (w *writeTx) remove(k []byte, queued int64) error {
	if err := w.meta.Delete(k); err != nil {
		return err
	}
	if err := w.deleteBody(k); err != nil {
		return err
	}
	w.messages--
	w.recipients -= queued
	return nil
}

// ownBucketBody is the body size from which a body is stored in a bucket of
// its own (under bodyKey) instead of as a value of the body bucket. bbolt
// writes a leaf, every value on it included, whenever one of its keys
// changes, and never splits a leaf of four keys or fewer: bodies of a page
// or more shared leaves two to five at a time, so every put and every delete
// wrote up to four neighbouring bodies again (1.8 body sizes allocated and
// written per 100 KB message in the relay benchmark). Alone in its bucket a body is written once and
// freed without touching another. Smaller bodies pack several to a page,
// where sharing costs less than a bucket each.
const ownBucketBody = 4096

// bodyKey is the one key of a body's own bucket.
var bodyKey = []byte{0}

// putBody stores body under k, in its own bucket if it is large.
func (w *writeTx) putBody(k, body []byte) error {
	if len(body) < ownBucketBody {
		return w.body.Put(k, body)
	}
	b, err := w.body.CreateBucket(k)
	if err != nil {
		return err
	}
	return b.Put(bodyKey, body)
}

// deleteBody removes the body under k, in either form; none is no error.
// Delete first: most bodies are small values, and bbolt's Delete refuses a
// bucket (ErrIncompatibleValue) before it changes anything.
func (w *writeTx) deleteBody(k []byte) error {
	err := w.body.Delete(k)
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		return w.body.DeleteBucket(k)
	}
	return err
}

// storedBody returns the body under k in b (the body bucket), in either
// form: nil when there is none. It points into the transaction's pages.
func storedBody(b *bolt.Bucket, k []byte) []byte {
	if v := b.Get(k); v != nil {
		return v
	}
	if own := b.Bucket(k); own != nil {
		return own.Get(bodyKey)
	}
	return nil
}

// refusal marks an error returned by apply before it wrote anything: the
// committer answers it and keeps the transaction for the other requests.
// Any other error from apply may come after partial writes, so the
// transaction is rolled back and the others are applied again without it.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

func refuse(err error) error { return refusal{err} }

// submit hands apply to the committer and waits for the commit that carries
// it. The context only matters until the request joins a transaction.
func (s *Spool) submit(ctx context.Context, size int, apply func(w *writeTx) error) error {
	r, err := s.enqueue(ctx, size, apply)
	if err != nil {
		return err
	}
	return <-r.done
}

// enqueue hands apply to the committer without waiting for the commit: the
// result arrives on r.done.
func (s *Spool) enqueue(ctx context.Context, size int, apply func(w *writeTx) error) (*request, error) {
	var cancel <-chan struct{}
	if ctx != nil {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cancel = ctx.Done()
	}
	r := &request{ctx: ctx, size: size, apply: apply, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case s.reqs <- r:
	case <-cancel:
		s.mu.RUnlock()
		return nil, ctx.Err()
	}
	s.mu.RUnlock()
	return r, nil
}

// run is the committer: it takes every request already queued (up to the
// batch limits), applies them in one transaction, commits — one fsync for
// all — and answers each caller. While one commit is syncing, the next batch
// gathers by itself, so batches grow with load.
//
// A busy committer waits a little for a fuller batch. When requests were
// already queued as the last commit ended, commits run back to back, and
// each costs a device flush and its own CPU however few writes it carries;
// the quicker a commit, the more and the smaller they become. So, busy, the
// committer waits up to groupWait for groupFill requests before it commits,
// as PostgreSQL's commit_delay does only while commit_siblings other
// transactions are active. An idle committer, with nothing queued when a
// commit ended, commits a lone write at once.
func (s *Spool) run() {
	defer close(s.done)
	batch := make([]*request, 0, maxBatchRequests)
	var wait *time.Timer
	busy := false
	for r := range s.reqs {
		batch = append(batch[:0], r)
		size := r.size
		var timeout <-chan time.Time
		if busy && s.groupWait > 0 {
			if wait == nil {
				wait = time.NewTimer(s.groupWait)
			} else {
				wait.Reset(s.groupWait)
			}
			timeout = wait.C
		}
	gather:
		for len(batch) < maxBatchRequests && size < maxBatchBytes {
			var r *request
			ok := true
			select {
			case r, ok = <-s.reqs:
			default:
				if timeout == nil || len(batch) >= s.groupFill {
					break gather
				}
				select {
				case r, ok = <-s.reqs:
				case <-timeout:
					break gather
				}
			}
			if !ok {
				break gather
			}
			batch = append(batch, r)
			size += r.size
		}
		if timeout != nil {
			wait.Stop() // Go 1.23 timers: a stopped or fired one resets clean
		}
		s.commit(batch)
		clear(batch)
		busy = len(s.reqs) > 0
	}
	if wait != nil {
		wait.Stop()
	}
}

func (s *Spool) commit(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx != nil && r.ctx.Err() != nil {
			r.done <- r.ctx.Err() // abandoned before it was written
			continue
		}
		live = append(live, r)
	}
	for len(live) > 0 {
		failed, err := s.try(live)
		if failed < 0 {
			for _, r := range live {
				if r != nil { // nil: already answered by try
					r.done <- err
				}
			}
			return
		}
		// One request failed after it may have written: it gets its error,
		// the rest go again in a fresh transaction.
		live[failed].done <- err
		live = append(live[:failed:failed], live[failed+1:]...)
	}
}

// try applies reqs in one transaction and commits it. It returns the index
// of a request whose apply failed (the transaction rolled back) with that
// error, or -1 with the commit's result for all.
func (s *Spool) try(reqs []*request) (int, error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			err = ErrClosed
		}
		return -1, err
	}
	w := &writeTx{tx: tx, meta: tx.Bucket(bucketMeta), body: tx.Bucket(bucketBody)}
	w.meta.FillPercent = fillPercent
	w.body.FillPercent = fillPercent
	answered := make([]error, len(reqs))
	for i, r := range reqs {
		err := r.apply(w)
		var ref refusal
		if errors.As(err, &ref) {
			answered[i] = ref.err
			continue
		}
		if err != nil {
			_ = tx.Rollback()
			return i, err
		}
	}
	if err := tx.Commit(); err != nil {
		s.log.Error("spool: commit failed", "path", s.path, "requests", len(reqs), "err", err)
		return -1, err
	}
	s.commits.Add(1)
	s.writes.Add(int64(len(reqs)))
	s.messages.Add(w.messages)
	s.recipients.Add(w.recipients)
	if n := int64(len(reqs)); n > s.maxBatch.Load() {
		s.maxBatch.Store(n) // only the committer writes it
	}
	// Refused requests get their own error; the others learn of the commit.
	for i, r := range reqs {
		if answered[i] != nil {
			r.done <- answered[i]
			reqs[i] = nil
		}
	}
	return -1, nil
}
