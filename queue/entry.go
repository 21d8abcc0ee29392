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
// of its domains: 32 bytes. Its lock and, while it is held, its decoded
// message live in the queue's entry stripes (lockOf).
type entry struct {
	id      spool.ID
	expires int64 // validity end, Unix nanoseconds; 0: none
	tag     unique.Handle[msgTag]
	pending int32 // recipients not final (guarded by lockOf)
}

// entryStripes is how many locks the entries share: enough that two
// sessions rarely wait for each other, few enough to cost nothing.
const entryStripes = 64

// entryStripe guards the entries whose ID falls in it: their pending
// count, their recipients' updates and spool writes, and the messages held
// decoded.
type entryStripe struct {
	mu   sync.Mutex
	held map[*entry]*heldMessage
	// lets counts the messages let go (their last hold dropped): a read
	// made outside mu is current only if none was let go meanwhile.
	lets uint64
}

// heldMessage is a decoded message and how many hold it: sessions sending
// it, updates not yet durable, operator actions.
type heldMessage struct {
	m     *spool.Message
	users int32
}

func (q *Queue) stripeOf(e *entry) *entryStripe { return &q.stripes[uint64(e.id)%entryStripes] }

// lockOf is the lock that guards e (and the other entries of its stripe).
func (q *Queue) lockOf(e *entry) *sync.Mutex { return &q.stripeOf(e).mu }

// entryOf builds the entry of m.
func entryOf(m *spool.Message) *entry {
	e := &entry{id: m.ID, tag: unique.Make(msgTag{tenant: m.Tenant, delivery: m.DeliveryID, pool: m.Pool})}
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
// one drop. While a user holds it, changes made under lockOf(e) are seen
// by the others.
//
// The spool is read outside the stripe's lock, which 1/64 of all messages
// share: a message nobody holds has no update in flight (every writer
// holds it until its update is durable), so the spool is current. The
// read is kept only if, once locked again, nobody holds the message and
// no message of the stripe was let go meanwhile (a hold begun and ended
// in between could have changed it); otherwise it is read again.
func (q *Queue) hold(e *entry) (*spool.Message, error) {
	if q.deps.Spool == nil {
		return nil, spool.ErrNotFound
	}
	st := q.stripeOf(e)
	for try := 0; ; try++ {
		st.mu.Lock()
		if h := st.held[e]; h != nil {
			h.users++
			st.mu.Unlock()
			return h.m, nil
		}
		if try == 3 {
			// Let go around us again and again: read under the lock.
			defer st.mu.Unlock()
			m, err := q.deps.Spool.Get(e.id)
			if err != nil {
				return nil, err
			}
			return st.keep(e, m), nil
		}
		lets := st.lets
		st.mu.Unlock()
		m, err := q.deps.Spool.Get(e.id)
		if err != nil {
			return nil, err
		}
		st.mu.Lock()
		if h := st.held[e]; h != nil {
			h.users++ // held meanwhile: its copy may carry updates
			st.mu.Unlock()
			return h.m, nil
		}
		if st.lets == lets {
			m = st.keep(e, m)
			st.mu.Unlock()
			return m, nil
		}
		st.mu.Unlock()
	}
}

// keep records m as e's decoded message with one user. Caller holds st.mu
// and has checked that nobody holds e.
func (st *entryStripe) keep(e *entry, m *spool.Message) *spool.Message {
	if st.held == nil {
		st.held = map[*entry]*heldMessage{}
	}
	st.held[e] = &heldMessage{m: m, users: 1}
	return m
}

// drop ends one hold; the last one lets the decoded message go.
func (q *Queue) drop(e *entry) {
	st := q.stripeOf(e)
	st.mu.Lock()
	if h := st.held[e]; h != nil {
		if h.users--; h.users <= 0 {
			delete(st.held, e)
			st.lets++
		}
	}
	st.mu.Unlock()
}

// peek returns the message for reading (explain) without keeping it: the
// decoded one when held, else a fresh copy from the spool, which is then
// current (nobody holds it, so no update is in flight).
func (q *Queue) peek(e *entry) (*spool.Message, error) {
	st := q.stripeOf(e)
	st.mu.Lock()
	h := st.held[e]
	st.mu.Unlock()
	if h != nil {
		return h.m, nil
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
