package message

import (
	"container/list"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// entry is what the per-message stages produced for one message.
type entry struct {
	data      []byte
	headerLen int
	bodyKey   string
	results   []string
	built     time.Time
}

// cache is a least-recently-used map from message ID to entry, bounded in
// entries and in bytes. Entries are immutable once stored.
type cache struct {
	maxEntries, maxBytes int
	// maxAge bounds how old a reused entry may be: a signature made now
	// should not go out with a retry days later.
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex
	bytes int
	ll    *list.List // front: most recently used; values are *cacheItem
	byID  map[spool.ID]*list.Element
}

type cacheItem struct {
	id spool.ID
	e  entry
}

func newCache(maxEntries, maxBytes int, maxAge time.Duration, now func() time.Time) *cache {
	return &cache{maxEntries: maxEntries, maxBytes: maxBytes, maxAge: maxAge, now: now, ll: list.New(), byID: map[spool.ID]*list.Element{}}
}

func (c *cache) get(id spool.ID) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return entry{}, false
	}
	e := el.Value.(*cacheItem).e
	if c.now().Sub(e.built) > c.maxAge {
		c.removeElement(el)
		return entry{}, false
	}
	c.ll.MoveToFront(el)
	return e, true
}

func (c *cache) put(id spool.ID, e entry) {
	if len(e.data) > c.maxBytes/4 {
		return // one huge message would flush everything else
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e.built = c.now()
	if el, ok := c.byID[id]; ok {
		// Built twice concurrently: keep the first, identical anyway.
		c.ll.MoveToFront(el)
		return
	}
	c.byID[id] = c.ll.PushFront(&cacheItem{id: id, e: e})
	c.bytes += len(e.data)
	for c.ll.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.removeElement(c.ll.Back())
	}
}

func (c *cache) remove(id spool.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		c.removeElement(el)
	}
}

func (c *cache) removeElement(el *list.Element) {
	it := c.ll.Remove(el).(*cacheItem)
	delete(c.byID, it.id)
	c.bytes -= len(it.e.data)
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
