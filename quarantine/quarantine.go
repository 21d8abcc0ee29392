package quarantine

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// Status is an address's standing.
type Status string

const (
	Valid       Status = "valid"       // sent to; had errors once, or was released
	WithErrors  Status = "with_errors" // soft errors counting toward quarantine
	Quarantined Status = "quarantined" // not sent to: a hard failure or too many soft ones
	Denylisted  Status = "denylisted"  // not sent to: a complaint or the operator
	Allowlisted Status = "allowlisted" // always sent to: failures never quarantine it
)

const numStatus = 5

// statusCode is a Status's byte on disk and in the index. The order is fixed:
// it is in every stored record.
func statusCode(s Status) uint8 {
	switch s {
	case WithErrors:
		return 1
	case Quarantined:
		return 2
	case Denylisted:
		return 3
	case Allowlisted:
		return 4
	}
	return 0
}

func codeStatus(c uint8) Status {
	switch c {
	case 1:
		return WithErrors
	case 2:
		return Quarantined
	case 3:
		return Denylisted
	case 4:
		return Allowlisted
	}
	return Valid
}

// rank orders statuses by how strongly they stop mail; when two entries
// merge (a normalisation change) the higher rank wins: when in doubt, do not
// send.
func rank(s Status) int {
	switch s {
	case Denylisted:
		return 4
	case Quarantined:
		return 3
	case Allowlisted:
		return 2
	case WithErrors:
		return 1
	}
	return 0
}

// ParseStatus returns the Status named s, or an error listing the names.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case Valid, WithErrors, Quarantined, Denylisted, Allowlisted:
		return st, nil
	}
	return "", fmt.Errorf("status %q: want valid, with_errors, quarantined, denylisted or allowlisted", s)
}

// Defaults of Config's zero fields (README.md, [quarantine]).
const (
	DefaultMaxErrors             = 5
	DefaultSignificantErrorDelay = 24 * time.Hour
	DefaultResetAfter            = 10 * 24 * time.Hour
)

// Config is [quarantine]. The zero value is the defaults.
type Config struct {
	// MaxErrors: a soft error that makes the count go above it quarantines
	// the address. 0 means DefaultMaxErrors.
	MaxErrors int
	// SignificantErrorDelay: the count rises at most once per this delay.
	// 0 means DefaultSignificantErrorDelay.
	SignificantErrorDelay time.Duration
	// ResetAfter: this long without a significant error and a with_errors
	// address is valid again. 0 means DefaultResetAfter.
	ResetAfter time.Duration
	// CaseInsensitiveLocal folds the local part's case too. The default
	// (false) keeps it exact, as RFC 5321 §2.4 says a sender must; this is
	// [quarantine] case_sensitive_local = false.
	CaseInsensitiveLocal bool
	// Logger receives load-time reports (unreadable records, re-keyed
	// entries); nil discards them.
	Logger *slog.Logger
}

// Failure is one failed attempt, as qualified by package bounce.
type Failure struct {
	Time      time.Time // zero: now
	Code      int       // SMTP reply code, 0 for a local error
	Enhanced  string    // RFC 3463 enhanced code, "" if none
	Text      string    // reply text
	Reason    string    // bounce reason, e.g. user_unknown
	Class     string    // hard, soft or ignored
	Site      string
	MessageID string
}

// HistoryItem is one status change.
type HistoryItem struct {
	Time time.Time `json:"time"`
	From Status    `json:"from"`
	To   Status    `json:"to"`
	Why  string    `json:"why"`
}

// Entry is one address's record.
type Entry struct {
	Address         string        `json:"address"` // normalised
	Status          Status        `json:"status"`
	Errors          int           `json:"errors"` // significant soft errors (hard ones count too)
	Reason          string        `json:"reason,omitempty"`
	LastCode        int           `json:"last_code,omitempty"`
	LastEnhanced    string        `json:"last_enhanced,omitempty"`
	LastText        string        `json:"last_text,omitempty"`
	LastSite        string        `json:"last_site,omitempty"`
	LastMessageID   string        `json:"last_message_id,omitempty"`
	First           time.Time     `json:"first"`                     // entry created
	Updated         time.Time     `json:"updated"`                   // last write
	LastSignificant time.Time     `json:"last_significant,omitzero"` // last error that counted
	Note            string        `json:"note,omitempty"`            // operator's
	History         []HistoryItem `json:"history,omitempty"`         // last 10 status changes, oldest first
}

// ErrNotFound is returned (wrapped) for an address that has no entry.
var ErrNotFound = errors.New("not in the quarantine")

// Bucket is the spool KV bucket the serve command passes to New.
const Bucket = "quarantine"

const (
	nShards  = 64   // index maps: spreads readers' RWMutex traffic
	nStripes = 1024 // write locks: one address's read-modify-write at a time
	workers  = 64   // bulk writes in flight, so group commit batches them
)

// rec is an entry's in-memory part: 24 bytes.
type rec struct {
	updated int64 // Unix ns
	lastSig int64 // Unix ns, 0 if none
	errors  uint16
	reason  uint16 // index in Store.reasons; reasonOther: look on disk
	status  uint8
}

const reasonOther = 1<<16 - 1

type shard struct {
	mu sync.RWMutex
	m  map[string]rec
	_  [32]byte // one shard per cache line
}

// Store is the quarantine. Its methods are safe for concurrent use.
type Store struct {
	kv   spool.KV
	cfg  Config
	now  func() time.Time
	log  *slog.Logger
	seed maphash.Seed

	shards  [nShards]shard
	stripes [nStripes]sync.Mutex

	rmu       sync.RWMutex
	reasons   []string // interned Entry.Reason values; reasons[0] == ""
	reasonIdx map[string]uint16
}

// New returns the Store kept in kv (normally spool.KV(Bucket)), loading every
// entry into memory. now is the clock (nil: time.Now). A record that cannot
// be read is logged and skipped: the MTA must start, and the address only
// loses its standing until it fails again.
func New(kv spool.KV, cfg Config, now func() time.Time) (*Store, error) {
	if kv == nil {
		return nil, errors.New("quarantine: no KV store")
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.MaxErrors >= 1<<16-1 {
		return nil, fmt.Errorf("quarantine: max_errors %d is over %d", cfg.MaxErrors, 1<<16-2)
	}
	if cfg.SignificantErrorDelay <= 0 {
		cfg.SignificantErrorDelay = DefaultSignificantErrorDelay
	}
	if cfg.ResetAfter <= 0 {
		cfg.ResetAfter = DefaultResetAfter
	}
	if now == nil {
		now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		kv:        kv,
		cfg:       cfg,
		now:       now,
		log:       log,
		seed:      maphash.MakeSeed(),
		reasons:   []string{""},
		reasonIdx: map[string]uint16{"": 0},
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]rec)
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load fills the index from the KV and re-keys entries stored under another
// normalisation.
func (s *Store) load() error {
	var rekey []string
	var buf [maxAddressLen]byte
	bad := 0
	err := s.kv.ForEach("", func(key string, val []byte) error {
		h, d := decodeHead(val)
		k, err := normalizeInto(buf[:0], key, s.cfg.CaseInsensitiveLocal)
		switch {
		case d.err != nil:
			s.log.Warn("quarantine: unreadable record skipped", "address", key, "err", d.err)
			bad++
		case err != nil:
			s.log.Warn("quarantine: record with an invalid address skipped", "address", key, "err", err)
			bad++
		case string(k) != key:
			rekey = append(rekey, key)
		default:
			s.set(key, rec{
				updated: h.updated,
				lastSig: h.lastSig,
				errors:  uint16(min(h.errors, 1<<16-1)),
				reason:  s.internBytes(h.reason),
				status:  h.status,
			})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("quarantine: load: %w", err)
	}
	if len(rekey) > 0 {
		n, err := s.parallel(rekey, s.rekey)
		s.log.Info("quarantine: entries re-keyed for a changed case_sensitive_local", "count", n)
		if err != nil {
			return fmt.Errorf("quarantine: load: %w", err)
		}
	}
	s.log.Info("quarantine: loaded", "entries", s.Len(), "skipped", bad)
	return nil
}

// rekey moves the entry stored under old to its normalised key; when one is
// there already, the more restrictive status wins (ties: the newer).
func (s *Store) rekey(old string) (bool, error) {
	key := Normalize(old, !s.cfg.CaseInsensitiveLocal)
	defer s.lock(key)()
	val, err := s.kv.Get(old)
	if err != nil {
		return false, err
	}
	e, err := decode(key, val)
	if err != nil {
		return false, err
	}
	cur, ok, err := s.read(key)
	if err != nil {
		return false, err
	}
	if !ok || rank(e.Status) > rank(cur.Status) ||
		rank(e.Status) == rank(cur.Status) && e.Updated.After(cur.Updated) {
		if err := s.write(&e); err != nil {
			return false, err
		}
	}
	return true, s.kv.Delete(old)
}

// Len returns the number of entries.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (s *Store) shardOf(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)%nShards]
}

// lock takes key's write stripe and returns its unlock.
func (s *Store) lock(key string) func() {
	m := &s.stripes[maphash.String(s.seed, key)/nShards%nStripes]
	m.Lock()
	return m.Unlock
}

func (s *Store) lookup(key []byte) (rec, bool) {
	sh := s.shardOf(key)
	sh.mu.RLock()
	r, ok := sh.m[string(key)] // no allocation: the compiler sees the conversion
	sh.mu.RUnlock()
	return r, ok
}

func (s *Store) lookupString(key string) (rec, bool) {
	sh := &s.shards[maphash.String(s.seed, key)%nShards]
	sh.mu.RLock()
	r, ok := sh.m[key]
	sh.mu.RUnlock()
	return r, ok
}

func (s *Store) set(key string, r rec) {
	sh := &s.shards[maphash.String(s.seed, key)%nShards]
	sh.mu.Lock()
	sh.m[key] = r // keys are always fresh strings of their own length: nothing pinned
	sh.mu.Unlock()
}

func (s *Store) unset(key string) {
	sh := &s.shards[maphash.String(s.seed, key)%nShards]
	sh.mu.Lock()
	delete(sh.m, key)
	sh.mu.Unlock()
}

func (s *Store) intern(reason string) uint16 {
	s.rmu.RLock()
	i, ok := s.reasonIdx[reason]
	s.rmu.RUnlock()
	if ok {
		return i
	}
	return s.add(reason)
}

// internBytes is intern without allocating when the reason is known.
func (s *Store) internBytes(reason []byte) uint16 {
	s.rmu.RLock()
	i, ok := s.reasonIdx[string(reason)]
	s.rmu.RUnlock()
	if ok {
		return i
	}
	return s.add(string(reason))
}

func (s *Store) add(reason string) uint16 {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if i, ok := s.reasonIdx[reason]; ok {
		return i
	}
	if len(s.reasons) >= reasonOther {
		return reasonOther // a free-text reason per entry: filters read the disk
	}
	i := uint16(len(s.reasons))
	s.reasons = append(s.reasons, reason)
	s.reasonIdx[reason] = i
	return i
}

func (s *Store) reason(i uint16) (string, bool) {
	if i == reasonOther {
		return "", false
	}
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	return s.reasons[i], true
}

func (s *Store) key(addr string) (string, error) {
	var buf [maxAddressLen]byte
	k, err := normalizeInto(buf[:0], addr, s.cfg.CaseInsensitiveLocal)
	if err != nil {
		return "", fmt.Errorf("quarantine: %w", err)
	}
	return string(k), nil
}

// expired says whether r is a with_errors entry whose count has lapsed.
func (s *Store) expired(status uint8, lastSig int64, now time.Time) bool {
	return status == statusCode(WithErrors) && now.UnixNano()-lastSig >= int64(s.cfg.ResetAfter)
}

// view applies the lazy reset to an entry read from disk.
func (s *Store) view(e *Entry, now time.Time) {
	if e.Status == WithErrors && !now.Before(e.LastSignificant.Add(s.cfg.ResetAfter)) {
		e.Errors = 0
		e.addHistory(e.LastSignificant.Add(s.cfg.ResetAfter), Valid,
			fmt.Sprintf("no significant error for reset_after (%s)", s.cfg.ResetAfter))
	}
}

func (e *Entry) addHistory(t time.Time, to Status, why string) {
	if e.Status == to {
		return
	}
	if len(e.History) >= maxHistory {
		e.History = append(e.History[:0], e.History[len(e.History)-maxHistory+1:]...)
	}
	e.History = append(e.History, HistoryItem{Time: t, From: e.Status, To: to, Why: clip(why, maxWhy)})
	e.Status = to
}

// read returns key's entry from disk; ok is false when there is none.
func (s *Store) read(key string) (Entry, bool, error) {
	val, err := s.kv.Get(key)
	if errors.Is(err, spool.ErrNotFound) {
		return Entry{Address: key, Status: Valid}, false, nil
	}
	if err != nil {
		return Entry{}, false, fmt.Errorf("quarantine: read %s: %w", key, err)
	}
	e, err := decode(key, val)
	if err != nil {
		// Unreadable: start it afresh rather than refuse to ever change it.
		s.log.Warn("quarantine: unreadable record replaced", "address", key, "err", err)
		return Entry{Address: key, Status: Valid}, false, nil
	}
	return e, true, nil
}

// write stores e durably, then updates the index. The caller holds e's
// stripe lock.
func (s *Store) write(e *Entry) error {
	if err := s.kv.Put(e.Address, encode(e)); err != nil {
		return fmt.Errorf("quarantine: write %s: %w", e.Address, err)
	}
	var lastSig int64
	if !e.LastSignificant.IsZero() {
		lastSig = e.LastSignificant.UnixNano()
	}
	s.set(e.Address, rec{
		updated: e.Updated.UnixNano(),
		lastSig: lastSig,
		errors:  uint16(min(e.Errors, 1<<16-1)),
		reason:  s.intern(e.Reason),
		status:  statusCode(e.Status),
	})
	return nil
}

// memEntry is an Entry from the index alone: no texts, note or history.
func (s *Store) memEntry(key string, r rec) *Entry {
	e := &Entry{Address: key, Status: codeStatus(r.status), Errors: int(r.errors)}
	e.Reason, _ = s.reason(r.reason)
	e.Updated = time.Unix(0, r.updated)
	if r.lastSig != 0 {
		e.LastSignificant = time.Unix(0, r.lastSig)
	}
	return e
}

// Suppressed says whether mail to addr must not be sent: its entry is
// quarantined or denylisted. The Entry returned with true holds the fields
// kept in memory (Address, Status, Errors, Reason, Updated, LastSignificant);
// Get has the rest. An address that is not valid is not suppressed (the
// caller validates addresses at injection). It costs a hash and a map lookup
// under a read lock, and allocates only for a hit or a non-ASCII domain.
func (s *Store) Suppressed(addr string) (bool, *Entry) {
	var buf [maxAddressLen]byte
	k, err := normalizeInto(buf[:0], addr, s.cfg.CaseInsensitiveLocal)
	if err != nil {
		return false, nil
	}
	r, ok := s.lookup(k)
	if !ok || (r.status != statusCode(Quarantined) && r.status != statusCode(Denylisted)) {
		return false, nil
	}
	return true, s.memEntry(string(k), r)
}

// Get returns addr's entry, with the lazy reset applied; false when there is
// none or addr is not an address.
func (s *Store) Get(addr string) (Entry, bool) {
	key, err := s.key(addr)
	if err != nil {
		return Entry{}, false
	}
	r, ok := s.lookupString(key)
	if !ok {
		return Entry{}, false
	}
	e, ok, err := s.read(key)
	if err != nil || !ok {
		e = *s.memEntry(key, r) // the disk failed us: show what memory knows
	}
	s.view(&e, s.now())
	return e, true
}

// Failure records a failed attempt to addr and returns the entry as it now
// stands and whether its status changed. Class hard quarantines at once,
// soft counts (see the package comment), ignored does nothing. Allowlisted,
// quarantined and denylisted entries are left as they are, unwritten.
func (s *Store) Failure(addr string, f Failure) (Entry, bool, error) {
	key, err := s.key(addr)
	if err != nil {
		return Entry{}, false, err
	}
	t := f.Time
	if t.IsZero() {
		t = s.now()
	}
	switch f.Class {
	case "hard", "soft":
	case "ignored":
		e, _ := s.Get(key)
		if e.Address == "" {
			e = Entry{Address: key, Status: Valid}
		}
		return e, false, nil
	default:
		return Entry{}, false, fmt.Errorf("quarantine: failure class %q: want hard, soft or ignored", f.Class)
	}

	defer s.lock(key)()
	r, ok := s.lookupString(key)
	old, errs := Valid, 0
	if ok {
		old, errs = codeStatus(r.status), int(r.errors)
		if s.expired(r.status, r.lastSig, t) {
			old, errs = Valid, 0
		}
	}
	switch old {
	case Allowlisted, Quarantined, Denylisted:
		e, _, err := s.read(key)
		s.view(&e, t)
		return e, false, err
	}
	var to Status
	var why string
	if f.Class == "hard" {
		to, why = Quarantined, "hard failure: "+describe(&f)
	} else {
		if errs > 0 && t.Sub(time.Unix(0, r.lastSig)) < s.cfg.SignificantErrorDelay {
			// Not significant: nothing an operator would look at changes.
			e, _, err := s.read(key)
			return e, false, err
		}
		to, why = WithErrors, "soft failure: "+describe(&f)
		if errs+1 > s.cfg.MaxErrors {
			to = Quarantined
			why = fmt.Sprintf("%d significant soft errors, over max_errors %d: %s", errs+1, s.cfg.MaxErrors, describe(&f))
		}
	}
	e, exists, err := s.read(key)
	if err != nil {
		return Entry{}, false, err
	}
	if !exists {
		e.First = t
	}
	s.view(&e, t)
	e.Errors = errs + 1
	e.LastSignificant = t
	e.Updated = t
	e.setFailure(&f)
	e.addHistory(t, to, why)
	if err := s.write(&e); err != nil {
		return Entry{}, false, err
	}
	return e, old != to, nil
}

func (e *Entry) setFailure(f *Failure) {
	e.Reason = clip(f.Reason, maxField)
	e.LastCode = f.Code
	e.LastEnhanced = clip(f.Enhanced, maxField)
	e.LastText = clip(f.Text, maxText)
	e.LastSite = clip(f.Site, maxField)
	e.LastMessageID = clip(f.MessageID, maxField)
}

// describe is a failure in a history line: "550 5.1.1 user unknown (user_unknown)".
func describe(f *Failure) string {
	var b strings.Builder
	if f.Code != 0 {
		fmt.Fprintf(&b, "%d ", f.Code)
	}
	if f.Enhanced != "" {
		b.WriteString(f.Enhanced + " ")
	}
	b.WriteString(clip(strings.Join(strings.Fields(f.Text), " "), 100))
	if f.Reason != "" {
		fmt.Fprintf(&b, " (%s)", f.Reason)
	}
	if f.Site != "" {
		fmt.Fprintf(&b, " at %s", f.Site)
	}
	return strings.TrimSpace(b.String())
}

// Delivered records a delivery to addr: a with_errors entry becomes valid
// with 0 errors. For any other address (unknown, valid, lapsed, allowlisted,
// quarantined, denylisted) it only looks and writes nothing: it runs after
// every delivery. A quarantined address stays quarantined: a catch-all that
// accepts and bounces later must not undo a hard bounce.
func (s *Store) Delivered(addr string) error {
	var buf [maxAddressLen]byte
	k, err := normalizeInto(buf[:0], addr, s.cfg.CaseInsensitiveLocal)
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	r, ok := s.lookup(k)
	if !ok || r.status != statusCode(WithErrors) {
		return nil
	}
	now := s.now()
	if s.expired(r.status, r.lastSig, now) {
		return nil // lazily valid already; the next failure rewrites it
	}
	key := string(k)
	defer s.lock(key)()
	if r, ok := s.lookupString(key); !ok || r.status != statusCode(WithErrors) {
		return nil
	}
	e, _, err := s.read(key)
	if err != nil {
		return err
	}
	e.Errors = 0
	e.Updated = now
	e.addHistory(now, Valid, "delivered")
	return s.write(&e)
}

// Complaint records a feedback-loop complaint: addr is denylisted, even when
// allowlisted (the recipient's own wish; see the package comment). f carries
// what the report said (Reason defaults to "complaint").
func (s *Store) Complaint(addr string, f Failure) error {
	key, err := s.key(addr)
	if err != nil {
		return err
	}
	t := f.Time
	if t.IsZero() {
		t = s.now()
	}
	if f.Reason == "" {
		f.Reason = "complaint"
	}
	defer s.lock(key)()
	if r, ok := s.lookupString(key); ok && r.status == statusCode(Denylisted) {
		return nil
	}
	e, exists, err := s.read(key)
	if err != nil {
		return err
	}
	if !exists {
		e.First = t
	}
	s.view(&e, t)
	e.Updated = t
	e.setFailure(&f)
	e.addHistory(t, Denylisted, "complaint: "+describe(&f))
	return s.write(&e)
}

// operatorStatus checks a status an operator may set: with_errors is only
// ever the result of failures.
func operatorStatus(st Status) error {
	switch st {
	case Valid, Quarantined, Denylisted, Allowlisted:
		return nil
	}
	return fmt.Errorf("quarantine: status %q cannot be set by hand: want valid, quarantined, denylisted or allowlisted", st)
}

// Add sets addr's status by hand (creating its entry), with a note kept on
// the entry (an empty note keeps the previous one) and in its history. valid
// and allowlisted clear the error count.
func (s *Store) Add(addr string, st Status, note string) error {
	if err := operatorStatus(st); err != nil {
		return err
	}
	key, err := s.key(addr)
	if err != nil {
		return err
	}
	_, err = s.setStatus(key, st, note, "operator", false)
	return err
}

// setStatus is Add's and Import's write. With skipSame, an entry already at
// st is left alone.
func (s *Store) setStatus(key string, st Status, note, who string, skipSame bool) (bool, error) {
	defer s.lock(key)()
	if r, ok := s.lookupString(key); ok && skipSame && r.status == statusCode(st) {
		return false, nil
	}
	now := s.now()
	e, exists, err := s.read(key)
	if err != nil {
		return false, err
	}
	if !exists {
		e.First = now
	}
	s.view(&e, now)
	if st == Valid || st == Allowlisted {
		e.Errors = 0
	}
	if note != "" {
		e.Note = clip(note, maxNote)
	}
	e.Updated = now
	why := who
	if note != "" {
		why += ": " + note
	}
	e.addHistory(now, st, why)
	return true, s.write(&e)
}

// Remove deletes addr's entry: the address is forgotten, as if it had never
// failed. An address with no entry is ErrNotFound.
func (s *Store) Remove(addr string) error {
	key, err := s.key(addr)
	if err != nil {
		return err
	}
	defer s.lock(key)()
	if _, ok := s.lookupString(key); !ok {
		// An unreadable record skipped at load is on disk only: remove it too.
		if _, err := s.kv.Get(key); err != nil {
			if errors.Is(err, spool.ErrNotFound) {
				return fmt.Errorf("quarantine: %s: %w", key, ErrNotFound)
			}
			return fmt.Errorf("quarantine: read %s: %w", key, err)
		}
	}
	if err := s.kv.Delete(key); err != nil {
		return fmt.Errorf("quarantine: remove %s: %w", key, err)
	}
	s.unset(key)
	return nil
}
