package bbolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"

	"go.etcd.io/bbolt/internal/common"
)

// A commit in one fdatasync (a Penstock patch).
//
// bbolt commits in two rounds: it writes the dirty pages and syncs, then
// writes the meta page and syncs again, so that a meta page on disk never
// points at pages that are not. The second round is a whole device flush.
//
// Here a commit writes the pages and the meta page and syncs once. The meta
// page then carries a page list: the runs of pages the transaction wrote,
// each with its CRC-32C, and a CRC of the list itself. If the machine stops
// before the sync ends, the disk may hold the new meta page without some of
// its pages. Open reads the list of the newest meta page and checks every
// run against the file; if one does not match, or the list itself is torn,
// that meta page is passed over for the other one, which is the previous
// transaction's: it was synced in full before this one began, and its pages
// are intact, because a transaction only writes pages that were free when
// it began, and a page the previous transaction's tree uses becomes free
// only at a later transaction. The write that was cut short was never
// acknowledged (Commit had not returned), so nothing acknowledged is lost.
//
// A transaction whose list does not fit in the meta page commits in the two
// rounds, as bbolt does, with no list. An unpatched bbolt reads either kind
// of file; after a crash in the middle of a one-sync commit it could take
// the newest meta page without checking its list.

// pageListMagic opens the list in the meta page, after the Meta struct.
const pageListMagic = 0x50534b31 // "PSK1"

// pageListOffset is where the list starts in a meta page: after the page
// header and the Meta struct, which keep their layout.
const pageListOffset = int(common.PageHeaderSize) + int(unsafe.Sizeof(common.Meta{}))

// pageListHeader is the magic, the count of runs and the list's CRC.
const pageListHeader = 12

// pageRunSize is one run on disk: first page id, page count, CRC-32C.
const pageRunSize = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pageRun is a run of contiguous pages written by one commit.
type pageRun struct {
	id    common.Pgid
	count uint32
	crc   uint32
}

// pageListCap is how many runs fit in a meta page of pageSize bytes.
func pageListCap(pageSize int) int {
	return (pageSize - pageListOffset - pageListHeader) / pageRunSize
}

// pageListCap is how many runs this database's meta page holds.
func (db *DB) pageListCap() int {
	if db.maxRuns > 0 {
		return db.maxRuns
	}
	return pageListCap(db.pageSize)
}

// addRun records that buf was written at page id: it extends the last run
// when buf follows it, which keeps the list short for the contiguous
// allocations of a large value.
func addRun(runs []pageRun, id common.Pgid, buf []byte, pageSize int) []pageRun {
	n := uint32(len(buf) / pageSize)
	if k := len(runs) - 1; k >= 0 && runs[k].id+common.Pgid(runs[k].count) == id {
		runs[k].count += n
		runs[k].crc = crc32.Update(runs[k].crc, castagnoli, buf)
		return runs
	}
	return append(runs, pageRun{id: id, count: n, crc: crc32.Checksum(buf, castagnoli)})
}

// putPageList writes runs after the meta struct in the meta page buf.
func putPageList(buf []byte, runs []pageRun) {
	b := buf[pageListOffset:]
	binary.LittleEndian.PutUint32(b[0:], pageListMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(runs)))
	r := b[pageListHeader:]
	for i, run := range runs {
		e := r[i*pageRunSize:]
		binary.LittleEndian.PutUint64(e[0:], uint64(run.id))
		binary.LittleEndian.PutUint32(e[8:], run.count)
		binary.LittleEndian.PutUint32(e[12:], run.crc)
	}
	binary.LittleEndian.PutUint32(b[8:], pageListSum(buf, len(runs)))
}

// pageListSum is the CRC of a meta page's Meta struct, its list's magic and
// count and its runs: a list is only good with the meta it was written with.
func pageListSum(buf []byte, n int) uint32 {
	h := crc32.Update(0, castagnoli, buf[common.PageHeaderSize:pageListOffset+8])
	start := pageListOffset + pageListHeader
	return crc32.Update(h, castagnoli, buf[start:start+n*pageRunSize])
}

// pageListIntact reports whether every run listed in the meta page at slot
// (0 or 1) holds what the commit wrote. It reads the file, not the map: a
// map longer than the file would fault past its end.
func (db *DB) pageListIntact(slot int) bool {
	meta := make([]byte, db.pageSize)
	if _, err := db.file.ReadAt(meta, int64(slot)*int64(db.pageSize)); err != nil {
		return false
	}
	b := meta[pageListOffset:]
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if binary.LittleEndian.Uint32(b[0:]) != pageListMagic || n > pageListCap(db.pageSize) ||
		binary.LittleEndian.Uint32(b[8:]) != pageListSum(meta, n) {
		return false
	}
	var buf []byte
	for i := 0; i < n; i++ {
		e := b[pageListHeader+i*pageRunSize:]
		id := int64(binary.LittleEndian.Uint64(e[0:]))
		size := int(binary.LittleEndian.Uint32(e[8:])) * db.pageSize
		if cap(buf) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := db.file.ReadAt(buf, id*int64(db.pageSize)); err != nil {
			return false // a run past the end of the file never reached it
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(e[12:]) {
			return false
		}
	}
	return true
}

// checkNewestMeta runs at Open: if the newest valid meta page lists its
// pages and one of them is not on disk, the meta page is marked torn and
// meta() takes the other one until a commit writes over it.
func (db *DB) checkNewestMeta() {
	slot, older := 0, db.meta1
	newest := db.meta0
	if db.meta1.Txid() > db.meta0.Txid() {
		slot, newest, older = 1, db.meta1, db.meta0
	}
	if newest.Validate() != nil || newest.Flags()&common.MetaPageListFlag == 0 || older.Validate() != nil {
		return // meta() passes over an invalid page itself; with no good older one, keep the newest
	}
	if !db.pageListIntact(slot) {
		db.Logger().Warningf("meta page %d (txid %d) lists pages that are not on disk: its commit did not finish; using txid %d",
			slot, newest.Txid(), older.Txid())
		db.tornMeta.Store(int32(slot) + 1)
	}
}

// syncFile is fdatasync, counted for tests. A sync that fails stops the
// database's writes until it is opened again (beginRWTx): the meta page of
// the commit is already written, and the map shows it, while the commit
// rolls back its free list, so a later commit could reuse the pages it
// wrote. Which of the two commits the disk holds is then for Open to tell.
// (bbolt's second sync, of the meta page, had the same hazard.)
func (db *DB) syncFile() error {
	db.syncs.Add(1)
	sync := fdatasync
	if db.syncHook != nil {
		sync = db.syncHook
	}
	err := sync(db)
	if err != nil {
		db.syncErr.CompareAndSwap(nil, &err)
	}
	return err
}

// ErrSyncFailed wraps the error of an earlier failed sync: writes stopped.
var ErrSyncFailed = errors.New("bbolt: an earlier fdatasync failed; writes stopped until the database is opened again")

// syncFailure is ErrSyncFailed with the failed sync's error, or nil.
func (db *DB) syncFailure() error {
	if p := db.syncErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrSyncFailed, *p)
	}
	return nil
}
