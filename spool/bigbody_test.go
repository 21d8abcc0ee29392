package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Bodies of every size around the own-bucket threshold read back the same
// and go with their message.
func TestBodySizes(t *testing.T) {
	s := openT(t, t.TempDir())
	for _, n := range []int{1, 100, ownBucketBody - 1, ownBucketBody, ownBucketBody + 1, 100 << 10, 1 << 20} {
		m := sampleMessage()
		b := body(n, fmt.Sprintf("body of %d bytes ", n))
		if err := s.Put(context.Background(), m, b); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, err := s.Body(m.ID)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%d bytes: read back %d bytes, %v", n, len(got), err)
		}
		if err := s.Delete(m.ID); err != nil {
			t.Fatalf("%d bytes: delete: %v", n, err)
		}
		if _, err := s.Body(m.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%d bytes: body after delete: %v", n, err)
		}
	}
	err := s.view(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketBody).Cursor().First(); k != nil {
			return fmt.Errorf("body bucket still holds %x", k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A spool written before bodies had buckets of their own holds large bodies
// as plain values: they read back and delete as before.
func TestLargeBodyStoredAsValue(t *testing.T) {
	s := openT(t, t.TempDir())
	m := sampleMessage()
	if err := s.Put(context.Background(), m, []byte("b")); err != nil {
		t.Fatal(err)
	}
	old := body(100<<10, "stored as a value ")
	k := idKey(m.ID)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBody).Put(k[:], old) }); err != nil {
		t.Fatal(err)
	}
	got, err := s.Body(m.ID)
	if err != nil || !bytes.Equal(got, old) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if err := s.Delete(m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Body(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body after delete: %v", err)
	}
}

// Putting or deleting one large body writes that body and a few small
// pages, never its neighbours again. When large bodies shared bbolt leaves,
// each commit allocated and wrote up to three other bodies with its own.
func TestLargeBodyWrittenOnce(t *testing.T) {
	s := openT(t, t.TempDir())
	const n = 100 << 10
	// The body, its page headers, and the few small pages a commit
	// rewrites (meta leaf, branches, the body bucket's leaf).
	limit := int64(n + 8*s.db.Info().PageSize)
	allocated := func() int64 {
		st := s.db.Stats()
		return st.TxStats.GetPageAlloc()
	}
	ids := make([]ID, 0, 8)
	for i := range 8 {
		m := sampleMessage()
		before := allocated()
		if err := s.Put(context.Background(), m, body(n, fmt.Sprintf("message %d ", i))); err != nil {
			t.Fatal(err)
		}
		if got := allocated() - before; got > limit {
			t.Errorf("put %d: %d bytes written, want at most %d", i, got, limit)
		}
		ids = append(ids, m.ID)
	}
	for i, id := range ids {
		before := allocated()
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
		// A delete writes no body at all.
		if got := allocated() - before; got > limit-n {
			t.Errorf("delete %d: %d bytes written, want at most %d", i, got, limit-n)
		}
	}
}

// AppendBody appends to what dst holds, in either storage form, and leaves
// dst as it was for a message without a body or one not stored.
func TestAppendBody(t *testing.T) {
	s := openT(t, t.TempDir())
	small, large := sampleMessage(), sampleMessage()
	if err := s.Put(context.Background(), small, []byte("small")); err != nil {
		t.Fatal(err)
	}
	lb := body(100<<10, "large ")
	if err := s.Put(context.Background(), large, lb); err != nil {
		t.Fatal(err)
	}
	none := sampleMessage()
	if err := s.Put(context.Background(), none, nil); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 0, 16)
	dst = append(dst, "prefix:"...)
	got, err := s.AppendBody(dst, small.ID)
	if err != nil || string(got) != "prefix:small" {
		t.Fatalf("small: %q, %v", got, err)
	}
	got, err = s.AppendBody(got[:7], large.ID)
	if err != nil || string(got[:7]) != "prefix:" || !bytes.Equal(got[7:], lb) {
		t.Fatalf("large: %d bytes, %v", len(got), err)
	}
	if got, err := s.AppendBody(dst, none.ID); err != nil || string(got) != "prefix:" {
		t.Fatalf("no body: %q, %v", got, err)
	}
	if got, err := s.AppendBody(dst, 999999); !errors.Is(err, ErrNotFound) || string(got) != "prefix:" {
		t.Fatalf("not stored: %q, %v", got, err)
	}
}
