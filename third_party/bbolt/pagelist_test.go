package bbolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt/internal/common"
)

// A commit is one fdatasync, not two; one whose page list does not fit is
// two, as bbolt's, and its meta page lists nothing.
func TestCommitSyncsOnce(t *testing.T) {
	for _, nfs := range []bool{false, true} {
		t.Run(fmt.Sprintf("noFreelistSync=%v", nfs), func(t *testing.T) {
			db, err := Open(filepath.Join(t.TempDir(), "db"), 0o600, &Options{NoFreelistSync: nfs})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			put(t, db, "k", bytes.Repeat([]byte("v"), 10000)) // the bucket, and the file's growth
			const commits = 20
			before := db.syncs.Load()
			for i := range commits {
				put(t, db, fmt.Sprint("k", i), bytes.Repeat([]byte{byte(i)}, 100+i*500))
			}
			if n := db.syncs.Load() - before; n != commits {
				t.Errorf("%d commits made %d fdatasyncs, want %d", commits, n, commits)
			}
			if f := db.meta().Flags(); f&common.MetaPageListFlag == 0 {
				t.Errorf("meta flags %#x: no page list", f)
			}

			db.maxRuns = 1
			before = db.syncs.Load()
			if err := db.Update(func(tx *Tx) error {
				// Two buckets far apart in the file: two runs at least.
				for _, b := range []string{"b", "c"} {
					bk, err := tx.CreateBucketIfNotExists([]byte(b))
					if err != nil {
						return err
					}
					if err := bk.Put([]byte("x"), bytes.Repeat([]byte(b), 5000)); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if n := db.syncs.Load() - before; n != 2 {
				t.Errorf("a commit past the list's room made %d fdatasyncs, want 2", n)
			}
			if f := db.meta().Flags(); f&common.MetaPageListFlag != 0 {
				t.Errorf("meta flags %#x: a page list on a two-round commit", f)
			}
		})
	}
}

// The machine stops after a commit's meta page reached the disk but before
// one of its pages did (its sync had not returned, so the commit was never
// acknowledged): Open must take the previous transaction, whole, not a tree
// with a page that is not there.
func TestTornCommitOpensAtPreviousTransaction(t *testing.T) {
	cases := map[string]func(t *testing.T, file []byte, slot, pageSize int){
		// The first page of a listed run keeps what was there before.
		"page not written": func(t *testing.T, file []byte, slot, pageSize int) {
			id, _ := listedRun(t, file, slot, pageSize, 0)
			clear(file[id*pageSize : (id+1)*pageSize])
		},
		// The last page of the longest run (the large value) is torn.
		"large value torn": func(t *testing.T, file []byte, slot, pageSize int) {
			id, n := longestRun(t, file, slot, pageSize)
			file[(id+n)*pageSize-1] ^= 0xFF
		},
		// The list itself is torn: a run's count differs from what was written.
		"list torn": func(t *testing.T, file []byte, slot, pageSize int) {
			file[slot*pageSize+pageListOffset+pageListHeader+8]++
		},
	}
	for name, tear := range cases {
		for _, nfs := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/noFreelistSync=%v", name, nfs), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "db")
				opts := &Options{NoFreelistSync: nfs}
				db, err := Open(path, 0o600, opts)
				if err != nil {
					t.Fatal(err)
				}
				put(t, db, "k", []byte("one"))
				put(t, db, "big", bytes.Repeat([]byte("a"), 20000))
				prev := db.meta().Txid()
				if err := db.Update(func(tx *Tx) error {
					b := tx.Bucket([]byte("b"))
					if err := b.Put([]byte("k"), []byte("two")); err != nil {
						return err
					}
					return b.Put([]byte("big"), bytes.Repeat([]byte("b"), 30000))
				}); err != nil {
					t.Fatal(err)
				}
				pageSize := db.pageSize
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}

				file, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				slot := newestSlot(file, pageSize)
				tear(t, file, slot, pageSize)
				if err := os.WriteFile(path, file, 0o600); err != nil {
					t.Fatal(err)
				}

				db, err = Open(path, 0o600, opts)
				if err != nil {
					t.Fatal(err)
				}
				if got := db.meta().Txid(); got != prev {
					t.Errorf("opened at transaction %d, want the previous one, %d", got, prev)
				}
				check(t, db, "k", []byte("one"))
				check(t, db, "big", bytes.Repeat([]byte("a"), 20000))

				// The next commit writes over the torn meta page, and the
				// file opens at it after.
				put(t, db, "k", []byte("three"))
				if db.tornMeta.Load() != 0 {
					t.Error("the torn meta page is still passed over after a commit wrote over it")
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				db, err = Open(path, 0o600, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				check(t, db, "k", []byte("three"))
				check(t, db, "big", bytes.Repeat([]byte("a"), 20000))
			})
		}
	}
}

// An untouched file opens at its last commit, read-write and read-only.
func TestWholeCommitOpensAtIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		put(t, db, "k", bytes.Repeat([]byte{byte('a' + i)}, 1000*i))
	}
	last := db.meta().Txid()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []bool{false, true} {
		db, err := Open(path, 0o600, &Options{ReadOnly: ro})
		if err != nil {
			t.Fatal(err)
		}
		if got := db.meta().Txid(); got != last || db.tornMeta.Load() != 0 {
			t.Errorf("read-only %v: opened at transaction %d (torn %d), want %d", ro, got, db.tornMeta.Load(), last)
		}
		check(t, db, "k", bytes.Repeat([]byte{'j'}, 9000))
		db.Close()
	}
}

func put(t *testing.T, db *DB, k string, v []byte) {
	t.Helper()
	if err := db.Update(func(tx *Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("b"))
		if err != nil {
			return err
		}
		return b.Put([]byte(k), v)
	}); err != nil {
		t.Fatal(err)
	}
}

// check asserts k's value and that the tree is sound.
func check(t *testing.T, db *DB, k string, want []byte) {
	t.Helper()
	if err := db.View(func(tx *Tx) error {
		if got := tx.Bucket([]byte("b")).Get([]byte(k)); !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes %.10q, want %d bytes %.10q", k, len(got), got, len(want), want)
		}
		for err := range tx.Check() {
			t.Errorf("check: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// newestSlot is the meta page with the higher transaction ID in file.
func newestSlot(file []byte, pageSize int) int {
	if common.LoadPageMeta(file[pageSize:]).Txid() > common.LoadPageMeta(file).Txid() {
		return 1
	}
	return 0
}

// listedRun is run i of the meta page at slot: first page and count.
func listedRun(t *testing.T, file []byte, slot, pageSize, i int) (id, n int) {
	t.Helper()
	b := file[slot*pageSize+pageListOffset:]
	if binary.LittleEndian.Uint32(b) != pageListMagic {
		t.Fatalf("meta page %d has no page list", slot)
	}
	if c := int(binary.LittleEndian.Uint32(b[4:])); i >= c {
		t.Fatalf("meta page %d lists %d runs, not %d", slot, c, i+1)
	}
	e := b[pageListHeader+i*pageRunSize:]
	return int(binary.LittleEndian.Uint64(e)), int(binary.LittleEndian.Uint32(e[8:]))
}

func longestRun(t *testing.T, file []byte, slot, pageSize int) (id, n int) {
	t.Helper()
	c := int(binary.LittleEndian.Uint32(file[slot*pageSize+pageListOffset+4:]))
	for i := range c {
		if ri, rn := listedRun(t, file, slot, pageSize, i); rn > n {
			id, n = ri, rn
		}
	}
	if n < 2 {
		t.Fatalf("no run of more than one page in %d runs", c)
	}
	return id, n
}

// A failed sync stops writes until the file is opened again (the commit's
// meta page is written, its free list rolled back); the file then opens at
// one commit or the other, sound.
func TestFailedSyncStopsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, "k", []byte("one"))
	eio := errors.New("input/output error")
	db.syncHook = func(*DB) error { return eio }
	if err := db.Update(func(tx *Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("two")) }); !errors.Is(err, eio) {
		t.Fatalf("commit with a failing sync: %v, want %v", err, eio)
	}
	db.syncHook = nil // the device answers again: writes stay stopped
	err = db.Update(func(tx *Tx) error { return tx.Bucket([]byte("b")).Put([]byte("k"), []byte("three")) })
	if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, eio) {
		t.Fatalf("commit after a failed sync: %v, want ErrSyncFailed wrapping %v", err, eio)
	}
	if err := db.View(func(tx *Tx) error { return nil }); err != nil {
		t.Errorf("reads after a failed sync: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *Tx) error {
		if v := string(tx.Bucket([]byte("b")).Get([]byte("k"))); v != "one" && v != "two" {
			t.Errorf("k = %q, want one or two", v)
		}
		for err := range tx.Check() {
			t.Errorf("check: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	put(t, db, "k", []byte("four"))
	check(t, db, "k", []byte("four"))
}
