// Package events is the delivery log: one JSON object per line, one line per
// event (a reception, a delivery, a transient failure, a bounce, a flow-control
// state change, ...), written to <dir>/delivery.log and fanned out to in-process
// subscribers such as the HTTP API and the dashboard.
//
// Algorithm. Write encodes the Record with a hand-written encoder (no
// reflection) and appends the bytes to an in-memory buffer under a short mutex;
// it does no file I/O unless the buffer has grown past a hard cap because the
// disk has stalled (then it flushes itself, which is the only back-pressure).
// A background goroutine flushes the buffer to the file every FlushInterval
// (default 200ms) and when the buffer passes a soft cap. Flush and Close flush
// synchronously; Close also fsyncs.
//
// Rotation is daily, at midnight in the location of Options.Now: when a record
// is written on a later day by that clock, the buffer remembers the offset,
// and the flush writes the bytes before it to the old file, renames
// delivery.log to delivery-YYYYMMDD.log (the day it holds) and carries on in a
// new delivery.log. Open also rotates a delivery.log left over from an earlier
// day. Nothing is compressed or deleted: retention is the operator's business.
//
// Times are written as RFC 3339 with nanoseconds, in the location the Record
// carries (the clock's, when Write fills it in).
//
// Subscribers get a copy of every record on a buffered channel, one copy
// shared by all of them (read-only). A subscriber
// that does not keep up loses records (counted by Dropped); the writer never
// waits for it.
//
// The package owns the log files only. It never interprets records, and it
// never touches the spool: the delivery log is an audit trail, not the source
// of truth for delivery state.
package events
