// Package testkv is a spool.KV kept in a map, for tests that need a real
// quarantine.Store (or anything else over a KV) without a spool on disk.
// Values are copied in and out, as the spool does, so a caller that
// reuses a buffer cannot change what is stored.
package testkv

import (
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/penstock-mta/penstock/spool"
)

// KV is a spool.KV in memory. The zero value is ready to use; it is safe
// for concurrent use.
type KV struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ spool.KV = (*KV)(nil)

// New returns an empty KV.
func New() *KV { return &KV{} }

// Get returns the value stored under key, or spool.ErrNotFound.
func (k *KV) Get(key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, spool.ErrNotFound
	}
	return slices.Clone(v), nil
}

// Put stores a copy of val under key.
func (k *KV) Put(key string, val []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string][]byte{}
	}
	k.m[key] = slices.Clone(val)
	return nil
}

// Delete removes key; a missing key is no error.
func (k *KV) Delete(key string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil
}

// ForEach calls fn for each key starting with prefix, in key order, outside
// the lock (fn may write to the KV), stopping at fn's first error.
func (k *KV) ForEach(prefix string, fn func(string, []byte) error) error {
	k.mu.Lock()
	keys := make([]string, 0, len(k.m))
	for key := range k.m {
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
	}
	k.mu.Unlock()
	sort.Strings(keys)
	for _, key := range keys {
		v, err := k.Get(key)
		if err != nil {
			continue // deleted meanwhile
		}
		if err := fn(key, v); err != nil {
			return err
		}
	}
	return nil
}
