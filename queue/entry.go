package queue

import (
	"errors"
	"sync"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/spool"
)

// A queued message costs the queue a compact entry, not its decoded
// envelope: what scheduling reads (ID, validity end, tenant, campaign,
// pool) is kept inline, the tenant, campaign and pool as one handle
// shared by every message that has the same three. The envelope and
// recipients are read back from the spool when something needs them (a
// session sending the message, an outcome applied, explain, an operator's
// cancel) and dropped again once nobody uses them and every update made
// to them is durable, so that the next read sees the spool as it was
// left. See BENCHMARKS.md ("Performance II", memory per queued recipient).

// msgTag is what a message's scheduling depends on besides its recipients.
type msgTag struct {
	tenant, delivery, pool string
}

// entry is the in-memory record of one spooled message, shared by the jobs
// of its domains. mu guards m, users and pending, and serialises recipient
// updates and the spool write.
type entry struct {
	mu      sync.Mutex
	id      spool.ID
	expires int64 // validity end, Unix nanoseconds; 0: none
	tag     unique.Handle[msgTag]
	m       *spool.Message // decoded while users > 0; nil otherwise
	users   int32          // sessions sending it, updates not yet durable, operator actions
	pending int32          // recipients not final
}

// entryOf builds the entry of m, keeping m decoded (Enqueue drops it).
func entryOf(m *spool.Message) *entry {
	e := &entry{m: m, id: m.ID, tag: unique.Make(msgTag{tenant: m.Tenant, delivery: m.DeliveryID, pool: m.Pool})}
	if !m.Expires.IsZero() {
		e.expires = m.Expires.UnixNano()
	}
	return e
}

func (e *entry) tenant() string   { return e.tag.Value().tenant }
func (e *entry) delivery() string { return e.tag.Value().delivery }
func (e *entry) pool() string     { return e.tag.Value().pool }

// expiresAt is the message's validity end (zero: none).
func (e *entry) expiresAt() time.Time {
	if e.expires == 0 {
		return time.Time{}
	}
	return time.Unix(0, e.expires)
}

// expired reports whether the validity ended before now.
func (e *entry) expired(now time.Time) bool {
	return e.expires != 0 && now.UnixNano() > e.expires
}

// hold returns the decoded message, reading it from the spool when nobody
// holds it, and counts one more user; every successful hold is matched by
// one drop. While a user holds it, changes made under e.mu are seen by
// the others.
func (q *Queue) hold(e *entry) (*spool.Message, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		if q.deps.Spool == nil {
			return nil, spool.ErrNotFound
		}
		m, err := q.deps.Spool.Get(e.id)
		if err != nil {
			return nil, err
		}
		e.m = m
	}
	e.users++
	return e.m, nil
}

// drop ends one hold; the last one lets the decoded message go.
func (q *Queue) drop(e *entry) {
	e.mu.Lock()
	e.users--
	if e.users <= 0 {
		e.users = 0
		e.m = nil
	}
	e.mu.Unlock()
}

// peek returns the message for reading (explain) without keeping it: the
// decoded one when held, else a fresh copy from the spool, which is then
// current (nobody holds it, so no update is in flight).
func (q *Queue) peek(e *entry) (*spool.Message, error) {
	e.mu.Lock()
	m := e.m
	e.mu.Unlock()
	if m != nil {
		return m, nil
	}
	if q.deps.Spool == nil {
		return nil, spool.ErrNotFound
	}
	return q.deps.Spool.Get(e.id)
}

// unreadable handles a job whose message the spool could not give back.
// Gone (purged or deleted meanwhile) or the spool closing: the job leaves
// the queue (a closing spool's messages are loaded again at the next
// start). Anything else: the job is retried a minute later.
func (q *Queue) unreadable(j *job, s *site, err error) {
	gone := errors.Is(err, spool.ErrNotFound) || errors.Is(err, spool.ErrClosed)
	if !errors.Is(err, spool.ErrClosed) {
		q.deps.Logger.Error("spool read failed", "id", j.e.id.String(), "err", err)
	}
	if !gone {
		j.due = dueOf(q.now().Add(time.Minute))
	}
	if s != nil {
		s.release(j, !gone)
		return
	}
	if !gone {
		q.route(j)
	}
}
