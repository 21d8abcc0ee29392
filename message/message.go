package message

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// Send is one transaction's message as the stages build it.
type Send struct {
	Msg   *spool.Message
	Rcpts []int  // indexes into Msg.Recipients of this transaction's recipients
	From  string // the envelope sender (MAIL FROM), VERP applied

	// Data is the message as it will be sent, before dot-stuffing. After
	// the header fixes it is canonical: CRLF lines, header fields, an empty
	// line, the body, a final CRLF. Stages replace it, never write into it.
	Data []byte
	// HeaderLen is the length of the header fields in Data (each ending
	// in CRLF); the empty line follows. Set by the header fixes.
	HeaderLen int
	// BodyKey, when set, names the body's bytes across sends (the same key
	// means the same body), for stages that do per-body work once.
	BodyKey string

	results []string
	loaded  *[]byte // the pipeline's buffer the message was read into; see Release
}

// Header returns the header fields, each ending in CRLF (valid after the
// header fixes).
func (s *Send) Header() []byte { return s.Data[:s.HeaderLen] }

// Body returns what follows the empty line (valid after the header fixes).
func (s *Send) Body() []byte { return s.Data[s.HeaderLen+2:] }

// Prepend adds a header field at the top of the header (where trace and
// signature fields go, RFC 5321 §4.4, RFC 6376 §5.6). field must be one
// complete field ending in CRLF. Data is copied, never written into.
func (s *Send) Prepend(field []byte) {
	d := make([]byte, 0, len(field)+len(s.Data))
	d = append(d, field...)
	s.Data = append(d, s.Data...)
	s.HeaderLen += len(field)
}

// Note records what a stage did, for the delivery log ("signed by
// d=example.com s=sel").
func (s *Send) Note(stage, text string) {
	s.results = append(s.results, stage+": "+text)
}

// Results are the stages' notes in order, "; "-joined ("" when none).
func (s *Send) Results() string { return strings.Join(s.results, "; ") }

// Scope says what a stage's output depends on.
type Scope uint8

const (
	// PerMessage: the output depends on the spooled message only, so it
	// is the same for every transaction of the message.
	PerMessage Scope = iota
	// PerSend: the output depends on the transaction: its recipients or
	// its envelope sender (VERP makes one per transaction).
	PerSend
)

// Stage is one step of the pipeline. Apply must be safe for concurrent use.
type Stage interface {
	Name() string
	Scope(m *spool.Message) Scope
	Apply(ctx context.Context, s *Send) error
}

// Error is a stage's failure.
type Error struct {
	Stage     string
	Permanent bool // no retry can change it
	Err       error
}

func (e *Error) Error() string { return "message could not be built: " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// permanent marks an error no retry can change.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err as one no retry can change (nil stays nil).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent or is a permanent *Error.
func IsPermanent(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Permanent
	}
	var p permanent
	return errors.As(err, &p)
}

// Options are the pipeline's stages by slot. Nil slots are skipped.
type Options struct {
	// Render builds messages stored as templates (campaigns); it leaves
	// Data nil for the others, which Load reads.
	Render Stage
	// Load reads a message stored whole; nil (and no AppendLoad): such
	// messages fail.
	Load func(id spool.ID) ([]byte, error)
	// AppendLoad is Load appending to dst (spool.AppendBody), into buffers
	// the pipeline reuses once the caller has Released the send. When set,
	// Load is not used.
	AppendLoad func(dst []byte, id spool.ID) ([]byte, error)
	// Sign signs the final message (DKIM); nil: no signer configured.
	Sign Stage
	// CacheEntries, CacheBytes and CacheMaxAge bound the per-message
	// cache (defaults 1024, 64 MiB and 1h); CacheEntries < 0 disables it.
	CacheEntries int
	CacheBytes   int
	CacheMaxAge  time.Duration
	Now          func() time.Time // nil: time.Now
}

// Pipeline runs the stages in order. Safe for concurrent use.
type Pipeline struct {
	stages []Stage
	bufs   *sync.Pool // *[]byte, for AppendLoad
	cache  *cache
	runs   atomic.Int64 // stage executions
	hits   atomic.Int64 // builds served from the cache
}

// Stats count the pipeline's work since New.
type Stats struct {
	StageRuns int64 // stage executions
	CacheHits int64 // builds whose per-message stages were not run again
}

// New builds the pipeline: render, load, header fixes, sign.
func New(o Options) *Pipeline {
	p := &Pipeline{bufs: &sync.Pool{New: func() any { return new([]byte) }}}
	if o.Render != nil {
		p.stages = append(p.stages, o.Render)
	}
	p.stages = append(p.stages, &loadStage{load: o.Load, appendLoad: o.AppendLoad, bufs: p.bufs}, FixHeaders{})
	if o.Sign != nil {
		p.stages = append(p.stages, o.Sign)
	}
	if o.CacheEntries >= 0 {
		n, b := o.CacheEntries, o.CacheBytes
		if n == 0 {
			n = 1024
		}
		if b <= 0 {
			b = 64 << 20
		}
		age, now := o.CacheMaxAge, o.Now
		if age <= 0 {
			age = time.Hour
		}
		if now == nil {
			now = time.Now
		}
		p.cache = newCache(n, b, age, now)
	}
	return p
}

// Stats returns the work counters.
func (p *Pipeline) Stats() Stats {
	return Stats{StageRuns: p.runs.Load(), CacheHits: p.hits.Load()}
}

// Build runs the stages for one transaction of m. Errors are *Error.
func (p *Pipeline) Build(ctx context.Context, m *spool.Message, rcpts []int, from string) (*Send, error) {
	s := &Send{Msg: m, Rcpts: rcpts, From: from}
	// The leading stages whose output depends on the message only can be
	// shared by its transactions.
	shared := 0
	for shared < len(p.stages) && p.stages[shared].Scope(m) == PerMessage {
		shared++
	}
	useCache := p.cache != nil && shared > 0 && len(m.Recipients) > 1
	start := 0
	if useCache {
		if e, ok := p.cache.get(m.ID); ok {
			s.Data, s.HeaderLen, s.BodyKey = e.data, e.headerLen, e.bodyKey
			s.results = append(s.results, e.results...)
			start = shared
			p.hits.Add(1)
		}
	}
	for i := start; i < len(p.stages); i++ {
		st := p.stages[i]
		p.runs.Add(1)
		if err := st.Apply(ctx, s); err != nil {
			return nil, &Error{Stage: st.Name(), Permanent: IsPermanent(err), Err: err}
		}
		if useCache && start == 0 && i == shared-1 {
			s.loaded = nil // the cache may hold the buffer now
			p.cache.put(m.ID, entry{data: s.Data, headerLen: s.HeaderLen, bodyKey: s.BodyKey,
				results: append([]string(nil), s.results...)})
		}
	}
	return s, nil
}

// maxReusedBuf keeps one large message from pinning its buffer for reuse.
const maxReusedBuf = 1 << 20

// Release hands back the buffer s was read into, if the pipeline lent one
// (AppendLoad, and no cache holds it): the caller is done with s.Data,
// which nobody may use after. Release of nil does nothing.
func (p *Pipeline) Release(s *Send) {
	if s == nil || s.loaded == nil {
		return
	}
	b := s.loaded
	s.loaded, s.Data = nil, nil
	if cap(*b) <= maxReusedBuf {
		p.bufs.Put(b)
	}
}

// Forget drops what the cache holds for a message (its delivery is over).
func (p *Pipeline) Forget(id spool.ID) {
	if p.cache != nil {
		p.cache.remove(id)
	}
}

// loadStage reads a message stored whole, when no render produced it.
type loadStage struct {
	load       func(id spool.ID) ([]byte, error)
	appendLoad func(dst []byte, id spool.ID) ([]byte, error)
	bufs       *sync.Pool // *[]byte, for appendLoad
}

func (*loadStage) Name() string               { return "load" }
func (*loadStage) Scope(*spool.Message) Scope { return PerMessage }
func (l *loadStage) Apply(_ context.Context, s *Send) error {
	if s.Data != nil {
		return nil
	}
	if s.Msg.DeliveryID != "" {
		// A campaign message has no stored body: without a render stage
		// it can only fail, and a restart with one configured fixes that.
		return fmt.Errorf("campaign message %s: no render stage configured", s.Msg.ID)
	}
	var b []byte
	var buf *[]byte // lent by the pipeline (appendLoad), nil for load
	var err error
	switch {
	case l.appendLoad != nil:
		buf = l.bufs.Get().(*[]byte)
		b, err = l.appendLoad((*buf)[:0], s.Msg.ID)
	case l.load != nil:
		b, err = l.load(s.Msg.ID)
	default:
		return fmt.Errorf("message %s: no spool to read it from", s.Msg.ID)
	}
	if err != nil || len(b) == 0 {
		if buf != nil {
			l.bufs.Put(buf)
		}
		if err != nil {
			// Temporary, even when not found: a recipient is never
			// bounced for our own storage trouble (one purged meanwhile
			// is already final and the queue skips it).
			return fmt.Errorf("reading the message: %w", err)
		}
		s.Data = []byte{}
		return nil
	}
	if buf != nil {
		*buf = b // grown: kept at its new size
		// Capped: a stage that appends copies rather than writing into
		// the buffer.
		b, s.loaded = b[:len(b):len(b)], buf
	}
	s.Data = b
	return nil
}
