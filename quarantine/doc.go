// Package quarantine keeps the addresses Penstock will not send to: for each
// address that ever failed, was complained about or was set by an operator, a
// status (valid, with_errors, quarantined, denylisted, allowlisted), its error
// count, its last error and reason, its dates and the last ten status changes.
//
// Algorithm. Every entry is stored in a spool KV (bucket "quarantine", key =
// the normalised address, value = a compact binary record, encoding.go). New
// loads all of them into an in-memory index: 64 shards, each a map from the
// normalised address to a 24-byte record (status, error count, interned
// reason, update time, last significant error) under an RWMutex, so a check
// at injection (Suppressed) or after a delivery (Delivered) is a hash and a
// map lookup without allocation. Texts, notes and history stay on disk only
// and are read when an entry is shown or changed. That keeps the index at
// about 95 bytes an entry at 100k and 135 at 1M (BenchmarkMemory), and New
// loads 100k entries in about 0.1 s (BenchmarkLoad).
//
// Transitions, decided under a per-address stripe lock so two concurrent
// failures for one address cannot both count:
//   - hard failure: quarantined at once;
//   - soft failure: the count rises at most once per SignificantErrorDelay;
//     when it goes above MaxErrors (the 6th significant error with the
//     default 5) the address is quarantined, otherwise it is with_errors;
//   - ResetAfter without a significant error and a with_errors entry counts
//     as valid with 0 errors. The reset is lazy: reads show it at once, the
//     record is rewritten only when the next failure comes;
//   - a delivery to a with_errors address sets it back to valid (0 errors);
//     to any other address it does nothing and writes nothing;
//   - a complaint denylists the address, allowlisted or not: a feedback-loop
//     complaint is the recipient's own wish, which outranks the operator's
//     allowlist (re-allowlist it by hand if it was a seed address);
//   - allowlisted, quarantined and denylisted addresses ignore failures.
//
// Writes happen only on changes an operator would look at: a new status, a
// new count, a new entry. A soft failure inside SignificantErrorDelay writes
// nothing, so LastText is the reply of the last significant error; every
// reply is in the delivery log anyway. The index is updated after the write
// is durable, so a reader never sees a state that a crash would undo.
//
// Addresses are normalised (Normalize): the domain is lowercased, the local
// part is kept exact unless Config.CaseInsensitiveLocal. Entries stored under
// another normalisation (the setting changed) are re-keyed at New; when two
// collide the more restrictive status wins.
//
// Operator tools: Add, Remove, List (filters, sorted, paged by a cursor),
// Release (bulk: quarantined entries back to valid, e.g. everything a
// provider bounced with a given reply during an incident) and Import
// (validates the whole file before writing anything). Bulk writes run on 64
// goroutines so that the spool's group commit shares each fsync among them.
//
// The package never sends, never classifies replies (package bounce does)
// and never touches the spool beyond its own KV bucket.
package quarantine
