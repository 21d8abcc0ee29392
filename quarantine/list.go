package quarantine

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Filter selects entries; zero fields match everything.
type Filter struct {
	Status Status    // effective status (a lapsed with_errors entry is valid)
	Reason string    // exact bounce reason, e.g. user_unknown
	Match  string    // regexp (RE2) on LastText
	Domain string    // exact domain, case-insensitive
	From   time.Time // Updated >= From
	To     time.Time // Updated < To
}

type matcher struct {
	status    int // statusCode, or -1 for any
	reason    string
	hasReason bool
	re        *regexp.Regexp
	domain    string // "@example.com"
	from, to  int64
	now       time.Time
}

func (s *Store) compile(f Filter) (*matcher, error) {
	m := &matcher{status: -1, reason: f.Reason, hasReason: f.Reason != "", now: s.now()}
	if f.Status != "" {
		st, err := ParseStatus(string(f.Status))
		if err != nil {
			return nil, fmt.Errorf("quarantine: filter: %w", err)
		}
		m.status = int(statusCode(st))
	}
	if f.Match != "" {
		re, err := regexp.Compile(f.Match)
		if err != nil {
			return nil, fmt.Errorf("quarantine: filter: match: %w", err)
		}
		m.re = re
	}
	if d := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(f.Domain), "@"), "."); d != "" {
		m.domain = "@" + string(appendLower(nil, d))
	}
	if !f.From.IsZero() {
		m.from = f.From.UnixNano()
	}
	if !f.To.IsZero() {
		m.to = f.To.UnixNano()
	}
	return m, nil
}

// memOK checks what the index knows; false means the entry surely does not
// match.
func (m *matcher) memOK(s *Store, key string, r rec) bool {
	st := r.status
	if s.expired(st, r.lastSig, m.now) {
		st = statusCode(Valid)
	}
	switch {
	case m.status >= 0 && int(st) != m.status,
		m.domain != "" && !strings.HasSuffix(key, m.domain),
		m.from != 0 && r.updated < m.from,
		m.to != 0 && r.updated >= m.to:
		return false
	}
	if m.hasReason {
		if reason, known := s.reason(r.reason); known && reason != m.reason {
			return false
		}
	}
	return true
}

// diskOK checks the fields only the stored record has.
func (m *matcher) diskOK(e *Entry) bool {
	return (!m.hasReason || e.Reason == m.reason) && (m.re == nil || m.re.MatchString(e.LastText))
}

// candidates returns, sorted, the keys after `after` that the index says
// may match.
func (s *Store) candidates(m *matcher, after string) []string {
	var keys []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for k, r := range sh.m {
			if k > after && m.memOK(s, k, r) {
				keys = append(keys, k)
			}
		}
		sh.mu.RUnlock()
	}
	slices.Sort(keys)
	return keys
}

// List returns up to limit entries matching f (limit <= 0: all), sorted by
// address, starting after the address `after` (the last one of the previous
// page; "" for the first). It scans the index, then reads each candidate's
// record: a page of 100 out of 1M entries takes a few hundred milliseconds,
// fine for an operator, not for a hot path.
func (s *Store) List(f Filter, limit int, after string) ([]Entry, error) {
	m, err := s.compile(f)
	if err != nil {
		return nil, err
	}
	out := []Entry{}
	for _, key := range s.candidates(m, after) {
		e, ok, err := s.read(key)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // removed since the scan
		}
		s.view(&e, m.now)
		if !m.diskOK(&e) {
			continue
		}
		out = append(out, e)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

// Release sets every quarantined entry matching f back to valid with 0
// errors, the note kept on the entry and in its history, and returns how
// many it released. f.Status must be empty or quarantined: denylisted
// entries are complaints or the operator's, never released in bulk. After a
// provider incident: Filter{Match: "temporarily deferred", Domain:
// "yahoo.com", From: start, To: end}. On an error it stops and returns the
// count released so far.
func (s *Store) Release(f Filter, note string) (int, error) {
	if f.Status != "" && f.Status != Quarantined {
		return 0, fmt.Errorf("quarantine: release: status %q: only quarantined entries are released", f.Status)
	}
	f.Status = Quarantined
	m, err := s.compile(f)
	if err != nil {
		return 0, err
	}
	why := "released"
	if note != "" {
		why += ": " + note
	}
	return s.parallel(s.candidates(m, ""), func(key string) (bool, error) {
		defer s.lock(key)()
		r, ok := s.lookupString(key)
		if !ok || !m.memOK(s, key, r) {
			return false, nil // changed since the scan
		}
		e, ok, err := s.read(key)
		if err != nil || !ok || !m.diskOK(&e) {
			return false, err
		}
		now := s.now()
		e.Errors = 0
		if note != "" {
			e.Note = clip(note, maxNote)
		}
		e.Updated = now
		e.addHistory(now, Valid, why)
		return true, s.write(&e)
	})
}

// parallel runs fn for each key on up to `workers` goroutines (so that the
// spool's group commit puts many writes in each fsync) and counts the trues.
// After an error it starts no more keys and returns the first error.
func (s *Store) parallel(keys []string, fn func(key string) (bool, error)) (int, error) {
	var (
		next, done atomic.Int64
		failed     atomic.Bool
		once       sync.Once
		first      error
		wg         sync.WaitGroup
	)
	for range min(workers, len(keys)) {
		wg.Go(func() {
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(len(keys)) {
					return
				}
				ok, err := fn(keys[i])
				if err != nil {
					once.Do(func() { first = err })
					failed.Store(true)
					return
				}
				if ok {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(done.Load()), first
}

// maxImportErrors is how many bad lines an import error lists.
const maxImportErrors = 10

// Import sets status st on every address read from r, with the note, and
// returns how many entries it changed (addresses already at st are left
// alone, so a repeated import returns 0). r is one address per line or a CSV
// whose first column is the address; a first line without '@' is a header
// and is skipped, as are empty lines and lines starting with '#'. The whole
// input is validated first: with any bad line nothing is written, and the
// error names the first bad lines by number. A write error stops the import
// part way (what was written stays; importing again is safe).
func (s *Store) Import(r io.Reader, st Status, note string) (int, error) {
	if err := operatorStatus(st); err != nil {
		return 0, err
	}
	br := bufio.NewReader(r)
	if b, _ := br.Peek(3); bytes.Equal(b, []byte("\xef\xbb\xbf")) {
		_, _ = br.Discard(3) // a byte order mark, as spreadsheets write
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.TrimLeadingSpace = true
	cr.Comment = '#'
	cr.ReuseRecord = true

	var (
		keys  []string
		seen  = map[string]bool{}
		bad   []string
		nbad  int
		first = true
	)
	for {
		fields, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("quarantine: import: %w", err)
		}
		line, _ := cr.FieldPos(0)
		addr := strings.TrimSpace(fields[0])
		if first {
			first = false
			if !strings.Contains(addr, "@") {
				continue
			}
		}
		if addr == "" {
			continue
		}
		key, err := s.key(addr)
		if err != nil {
			nbad++
			if len(bad) < maxImportErrors {
				bad = append(bad, fmt.Sprintf("line %d: %v", line, errors.Unwrap(err)))
			}
			continue
		}
		if !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	}
	if nbad > 0 {
		more := ""
		if nbad > len(bad) {
			more = fmt.Sprintf("; and %d more", nbad-len(bad))
		}
		return 0, fmt.Errorf("quarantine: import: %d bad lines, nothing imported: %s%s", nbad, strings.Join(bad, "; "), more)
	}
	return s.parallel(keys, func(key string) (bool, error) {
		return s.setStatus(key, st, note, "import", true)
	})
}

// Counts returns the number of entries in each status (every status is a
// key), with the lazy reset applied.
func (s *Store) Counts() map[Status]int {
	var n [numStatus]int
	now := s.now()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, r := range sh.m {
			st := r.status
			if s.expired(st, r.lastSig, now) {
				st = statusCode(Valid)
			}
			n[st]++
		}
		sh.mu.RUnlock()
	}
	out := make(map[Status]int, numStatus)
	for c, v := range n {
		out[codeStatus(uint8(c))] = v
	}
	return out
}
