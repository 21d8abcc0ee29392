package spool

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// KV is a small durable key-value store kept in the spool's database for
// other packages (quarantine, delivery progress). Writes are group-committed
// with the spool's own. Values passed to and returned from it are copies.
type KV interface {
	// Get returns the value stored under key, or ErrNotFound.
	Get(key string) ([]byte, error)
	// Put durably stores val under key.
	Put(key string, val []byte) error
	// Delete durably removes key; removing a missing key is not an error.
	Delete(key string) error
	// ForEach calls fn for each key starting with prefix, in key order,
	// stopping at fn's first error, which it returns. fn runs outside any
	// transaction, so it may write to the same KV.
	ForEach(prefix string, fn func(key string, val []byte) error) error
}

// KV returns the key-value store named bucket, created on its first Put.
// Different names are independent stores.
func (s *Spool) KV(bucket string) KV {
	return &kvStore{s: s, name: []byte(bucket)}
}

type kvStore struct {
	s    *Spool
	name []byte
}

func (kv *kvStore) bucket(tx *bolt.Tx) *bolt.Bucket {
	return tx.Bucket(bucketKV).Bucket(kv.name)
}

func (kv *kvStore) check(key string) error {
	if len(kv.name) == 0 {
		return errors.New("spool: kv bucket name is empty")
	}
	return checkKey("kv", key)
}

func (kv *kvStore) Get(key string) ([]byte, error) {
	var val []byte
	err := kv.s.view(func(tx *bolt.Tx) error {
		v, ok := get(kv.bucket(tx), []byte(key))
		if !ok {
			return fmt.Errorf("spool: kv %s/%q: %w", kv.name, key, ErrNotFound)
		}
		val = bytes.Clone(v)
		if val == nil {
			val = []byte{}
		}
		return nil
	})
	return val, err
}

func (kv *kvStore) Put(key string, val []byte) error {
	if err := kv.check(key); err != nil {
		return err
	}
	k := []byte(key)
	if val == nil {
		val = []byte{}
	}
	return kv.s.submit(nil, len(k)+len(val), func(w *writeTx) error {
		b, err := w.tx.Bucket(bucketKV).CreateBucketIfNotExists(kv.name)
		if err != nil {
			return err
		}
		return b.Put(k, val)
	})
}

func (kv *kvStore) Delete(key string) error {
	if err := kv.check(key); err != nil {
		return err
	}
	k := []byte(key)
	return kv.s.submit(nil, 0, func(w *writeTx) error {
		b := kv.bucket(w.tx)
		if b == nil {
			return nil
		}
		return b.Delete(k)
	})
}

func (kv *kvStore) ForEach(prefix string, fn func(key string, val []byte) error) error {
	type pair struct {
		k string
		v []byte
	}
	p := []byte(prefix)
	var after []byte
	chunk := make([]pair, 0, scanChunk)
	for more := true; more; {
		chunk = chunk[:0]
		more = false
		err := kv.s.view(func(tx *bolt.Tx) error {
			b := kv.bucket(tx)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.Seek(p)
			} else {
				k, v = first(c, after)
			}
			for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				if len(chunk) == scanChunk {
					more = true
					break
				}
				after = append(after[:0], k...)
				if v == nil {
					continue // a nested bucket, not a value
				}
				chunk = append(chunk, pair{string(k), bytes.Clone(v)})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range chunk {
			if err := fn(e.k, e.v); err != nil {
				return err
			}
		}
	}
	return nil
}
