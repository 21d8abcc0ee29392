package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The spool's database (the patched bbolt in third_party/bbolt, pagelist.go)
// commits in one fdatasync. The layout of a meta page that this test reads:
// a 16-byte page header, the 64-byte meta (txid at bytes 48–55 of it), then
// the page list: magic, count of runs, CRC (4 bytes each), and 16-byte runs
// (first page id, page count, CRC-32C).
const (
	metaTxid      = 16 + 48
	pageListStart = 16 + 64
)

// A power loss in the middle of a commit: the meta page of the last commit
// reached the disk, one of its pages did not. Put had not returned, so the
// message was never acknowledged; the spool must open at the commit before,
// with every acknowledged message, and go on working.
func TestTornLastCommitOpensAtThePreviousOne(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(s *Spool, rcpt string, size int) ID {
		t.Helper()
		m := &Message{Sender: "a@example.com", Received: time.Now(), Recipients: []Recipient{{Addr: rcpt}}}
		if err := s.Put(context.Background(), m, body(size, rcpt)); err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	acked := put(s, "one@example.org", 2048)
	big := put(s, "big@example.org", 100<<10)
	torn := put(s, "torn@example.org", 100<<10) // the commit the power loss cuts
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(dir, fileName)
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	slot := 0
	if binary.LittleEndian.Uint64(file[pageSize+metaTxid:]) > binary.LittleEndian.Uint64(file[metaTxid:]) {
		slot = 1
	}
	list := file[slot*pageSize+pageListStart:]
	if magic := binary.LittleEndian.Uint32(list); magic != 0x50534b31 {
		t.Fatalf("the last commit's meta page has no page list (%#x): it was not a one-sync commit", magic)
	}
	// The run with most pages is the torn message's body: its last page
	// never reached the disk.
	var id, n uint64
	for i := range int(binary.LittleEndian.Uint32(list[4:])) {
		run := list[12+16*i:]
		if c := uint64(binary.LittleEndian.Uint32(run[8:])); c > n {
			id, n = binary.LittleEndian.Uint64(run), c
		}
	}
	clear(file[(id+n-1)*pageSize : (id+n)*pageSize])
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir)
	got := loadAll(t, s)
	for _, want := range []ID{acked, big} {
		if got[want] == nil {
			t.Errorf("acknowledged message %s lost", want)
		}
	}
	if got[torn] != nil {
		t.Errorf("message %s of the torn commit loaded", torn)
	}
	if b, err := s.Body(big); err != nil || string(b) != string(body(100<<10, "big@example.org")) {
		t.Errorf("body of %s: %d bytes, %v", big, len(b), err)
	}
	if _, err := s.Body(torn); !errors.Is(err, ErrNotFound) {
		t.Errorf("body of the torn message: %v, want not found", err)
	}

	// The spool goes on: a new message is stored, and there after a reopen.
	next := put(s, "next@example.org", 100<<10)
	if next <= acked {
		t.Errorf("ID %s after %s", next, acked)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	got = loadAll(t, s)
	if len(got) != 3 || got[acked] == nil || got[big] == nil || got[next] == nil {
		t.Errorf("after reopening: %d messages, want %s, %s and %s", len(got), acked, big, next)
	}
}
