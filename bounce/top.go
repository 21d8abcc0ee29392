package bounce

import (
	"container/heap"
	"sort"
	"sync"
	"time"
)

// maxTopText caps the stored text of one entry, so that maxKeys bounds memory.
const maxTopText = 512

// TopEntry is one distinct reply at one site and how often it was seen.
type TopEntry struct {
	Site     string
	Code     int
	Enhanced string
	Text     string // normalized
	Reason   Reason // of the latest occurrence
	Class    Class
	Count    uint64
	Last     time.Time
}

// Top counts distinct (site, code, enhanced, normalized text) replies, keeping
// at most maxKeys of them. When a new reply arrives and the table is full, the
// entry with the lowest count goes (the least recently seen among equals): the
// frequent replies stay, rare ones churn. Safe for concurrent use.
type Top struct {
	mu      sync.Mutex
	maxKeys int
	index   map[topKey]*topItem
	h       topHeap // min-heap on (Count, Last)
}

type topKey struct {
	site     string
	code     int
	enhanced string
	text     string
}

type topItem struct {
	TopEntry
	pos int // index in the heap
}

// NewTop returns a counter that keeps at most maxKeys distinct replies
// (at least 1).
func NewTop(maxKeys int) *Top {
	if maxKeys < 1 {
		maxKeys = 1
	}
	return &Top{maxKeys: maxKeys, index: make(map[topKey]*topItem)}
}

// Add counts one occurrence now.
func (t *Top) Add(site string, code int, enhanced, normalized string, v Verdict) {
	t.AddAt(time.Now(), site, code, enhanced, normalized, v)
}

// AddAt counts one occurrence at the given time (the event's own time).
func (t *Top) AddAt(at time.Time, site string, code int, enhanced, normalized string, v Verdict) {
	if len(normalized) > maxTopText {
		normalized = truncateUTF8(normalized, maxTopText)
	}
	k := topKey{site, code, enhanced, normalized}
	t.mu.Lock()
	defer t.mu.Unlock()
	if it, ok := t.index[k]; ok {
		it.Count++
		if at.After(it.Last) {
			it.Last = at
		}
		it.Reason, it.Class = v.Reason, v.Class
		heap.Fix(&t.h, it.pos)
		return
	}
	if len(t.h) >= t.maxKeys {
		old := heap.Pop(&t.h).(*topItem)
		delete(t.index, topKey{old.Site, old.Code, old.Enhanced, old.Text})
	}
	it := &topItem{TopEntry: TopEntry{
		Site: site, Code: code, Enhanced: enhanced, Text: normalized,
		Reason: v.Reason, Class: v.Class, Count: 1, Last: at,
	}}
	t.index[k] = it
	heap.Push(&t.h, it)
}

// List returns up to n entries for site ("" for all sites), most frequent
// first, then most recent; n <= 0 means all.
func (t *Top) List(site string, n int) []TopEntry {
	t.mu.Lock()
	out := make([]TopEntry, 0, len(t.h))
	for _, it := range t.h {
		if site == "" || it.Site == site {
			out = append(out, it.TopEntry)
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if !a.Last.Equal(b.Last) {
			return a.Last.After(b.Last)
		}
		return a.Text < b.Text // stable output for equal entries
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// Len is the number of distinct replies held.
func (t *Top) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.h)
}

type topHeap []*topItem

func (h topHeap) Len() int { return len(h) }
func (h topHeap) Less(i, j int) bool {
	if h[i].Count != h[j].Count {
		return h[i].Count < h[j].Count
	}
	return h[i].Last.Before(h[j].Last)
}
func (h topHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *topHeap) Push(x any) {
	it := x.(*topItem)
	it.pos = len(*h)
	*h = append(*h, it)
}
func (h *topHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

func truncateUTF8(s string, n int) string {
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n-- // don't cut a character in two
	}
	return s[:n]
}
