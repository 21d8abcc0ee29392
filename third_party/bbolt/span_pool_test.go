package bbolt

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt/internal/common"
)

// A commit writes a large value from a span buffer that an earlier,
// larger value used: the bytes of the span past the new value are zero
// on disk, not what the earlier value left there.
func TestSpanPoolZeroesReusedSpans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ps := db.Info().PageSize
	put := func(v []byte) {
		t.Helper()
		if err := db.Update(func(tx *Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// 26 pages, then 18: both spans of the 32-page class.
	big := bytes.Repeat([]byte{0xAA}, 25*ps)
	small := bytes.Repeat([]byte{0xBB}, 17*ps+ps/2)
	k26, ok26 := db.spanClass(26)
	k18, ok18 := db.spanClass(18)
	if k26 != k18 || !ok26 || !ok18 {
		t.Fatalf("classes %d (%v) and %d (%v): the test needs one, pooled", k26, ok26, k18, ok18)
	}
	if _, ok := db.spanClass(maxSpanBytes/ps + 1); ok {
		t.Errorf("a span over %d bytes is pooled", maxSpanBytes)
	}
	// sync.Pool may drop a buffer (the race detector drops some on
	// purpose): a few rounds make a reuse all but certain.
	for range 8 {
		put(big)
		put(small)
		var root int
		var info *common.PageInfo
		if err := db.View(func(tx *Tx) error {
			root = int(tx.Bucket([]byte("b")).Root())
			info, err = tx.Page(root)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if info.OverflowCount != 17 {
			t.Fatalf("the value's leaf spans %d pages, want 18", info.OverflowCount+1)
		}
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		span := file[root*ps : (root+info.OverflowCount+1)*ps]
		end := bytes.LastIndexByte(span, 0xBB) + 1
		if end < len(small) {
			t.Fatalf("the value is not in its leaf's span (its last byte at %d)", end)
		}
		if i := bytes.IndexFunc(span[end:], func(r rune) bool { return r != 0 }); i >= 0 {
			t.Fatalf("the span has %#x at %d past the value: a reused buffer was not zeroed", span[end+i], end+i)
		}
	}
}

// One commit a round, each a 100 KB value (a 26-page span) over one of 16
// keys, without fsync: the cost of the span buffers shows in B/op.
func BenchmarkCommitLargeValue(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "db"), 0o600, &Options{NoSync: true, NoFreelistSync: true, FreelistType: FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := bytes.Repeat([]byte("x"), 100<<10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := db.Update(func(tx *Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return bk.Put([]byte{byte(i % 16)}, v)
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// The meta page is written from a pooled one-page buffer: each commit's
// meta pages hold the meta, its page list (pagelist.go) and zeros after it, the buffers that go back
// are zeroed (node.write asserts that a page buffer is empty, so a dirty
// one would fail a later commit), and the file opens again at the last
// transaction.
func TestMetaBufferPooled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	const commits = 64
	for i := range commits {
		if err := db.Update(func(tx *Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return b.Put([]byte{byte(i)}, bytes.Repeat([]byte{0xCC}, 100))
		}); err != nil {
			t.Fatal(err)
		}
	}
	var txid common.Txid
	if err := db.View(func(tx *Tx) error { txid = tx.meta.Txid(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for m := range 2 {
		page := file[m*ps : (m+1)*ps]
		metaEnd := pageListOffset + pageListHeader + pageRunSize*int(binary.LittleEndian.Uint32(page[pageListOffset+4:]))
		if i := bytes.IndexFunc(page[metaEnd:], func(r rune) bool { return r != 0 }); i >= 0 {
			t.Errorf("meta page %d has %#x at %d, past the meta", m, page[metaEnd+i], metaEnd+i)
		}
	}
	db, err = Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *Tx) error {
		if tx.meta.Txid() != txid {
			t.Errorf("reopened at transaction %d, want %d", tx.meta.Txid(), txid)
		}
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != commits {
			t.Errorf("%d keys, want %d", n, commits)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Small commits, as the spool makes a thousand a second: the meta page's
// buffer shows in B/op.
func BenchmarkCommitSmallValue(b *testing.B) {
	db, err := Open(filepath.Join(b.TempDir(), "db"), 0o600, &Options{NoSync: true, NoFreelistSync: true, FreelistType: FreelistMapType})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := bytes.Repeat([]byte("x"), 200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := db.Update(func(tx *Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return bk.Put([]byte{byte(i % 64)}, v)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
