// Package spool is Penstock's durable store: every accepted message's
// envelope and per-recipient state (its "meta"), its body, shared blobs such
// as campaign templates, and small key-value stores for other packages. A
// message acknowledged to a client is in the spool, fsynced, before the ack;
// kill -9 at any moment loses none.
//
// Storage is one bbolt database file (dir/spool.db) with buckets meta and
// body keyed by the 8-byte big-endian message ID (a body of 4 KB or more in
// a nested bucket of its own, so that no commit writes it twice), blob, and
// kv (one nested bucket per KV). bbolt was chosen over pebble by measurement
// (bench_engines_test.go): with a realistic backlog both sustain several
// times the needed rate here, bbolt at less CPU per message, with a smaller
// dependency and no background compaction.
//
// Group commit: every write (Put, PutMany, Update, Delete, blobs, KV) is a
// request on a channel to one committer goroutine. It takes all requests
// already queued, applies them in one read-write transaction, commits (one
// fdatasync for the lot: the patched bbolt in third_party/bbolt writes the
// pages and a meta page that lists them with their checksums, syncs once,
// and at Open passes over a newest commit whose listed pages are not all on
// disk) and then answers each caller with its own error.
// While one commit is on disk the next batch forms, so batch size follows
// load. A busy committer (requests already queued as a commit ends) waits
// up to 300 µs for 16 requests, since back-to-back commits of a few writes
// each cost a flush; an idle one commits a lone write at once. Callers
// encode meta on their own goroutine, so the committer does little more
// than copy bytes.
//
// Message IDs come from the meta bucket's sequence, incremented in the same
// transaction as the write, so an ID returned to a caller is never reused,
// not even after a crash; see ID for the time floor that keeps IDs rising
// across a recreated spool.
//
// Meta is a compact binary record (see encoding.go: a version byte, then
// varints and length-prefixed strings) so that a queued campaign recipient
// costs well under 300 bytes. Load streams records in chunks of short read
// transactions; Scan does the same into values it reuses, for a caller that
// keeps nothing of them (the restart: the queue reads a message back with
// Get when it sends it). The file is mapped; Open's scan and Load drop the
// pages they read from the process's resident set (they stay in the page
// cache), so a large spool does not count in RSS for good.
//
// The spool never interprets bodies, variables or flags, never schedules,
// and never talks to the network: the queue decides what is due, the spool
// only remembers it.
package spool
