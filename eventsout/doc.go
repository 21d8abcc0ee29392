// Package eventsout sends the delivery log's records to the outside:
// webhooks, AMQP and NATS streams, and PostgreSQL. It owns the outputs and
// their cursors, nothing else.
//
// Algorithm. Outputs read the delivery log's files (package events), never
// an in-memory channel, so a slow or dead receiver can never slow delivery
// nor make it drop a record: the log is written whatever the outputs do.
// One Tail polls the log directory and counts the lines of every file
// (delivery-YYYYMMDD[.N].log, oldest first, then delivery.log) and wakes the
// outputs when there is more. Each output owns a durable Cursor (file, byte
// offset, line) kept in the spool's KV: it reads a batch from its cursor,
// sends it (retrying with capped exponential backoff until the receiver
// takes it), and only then moves the cursor past it; the cursor reaches the
// KV at most every second while it moves (each write is a spool
// transaction), at once when the output is idle, and at stop. Delivery is
// thus at-least-once and in log order (a crash re-sends at most the last
// second's batches); every record carries an event_id (the
// file's key and the record's byte offset in it) for the receiver to
// deduplicate. A file is named by its key, a hash of its first line, which
// does not change when the log rotates delivery.log to its dated name.
//
// A receiver that never comes back costs disk, not memory: nothing is kept
// but the cursor. When the operator's retention deletes the file under a
// cursor, the output skips to the oldest file left, and the skip is counted
// (Status.Skipped) and logged as an error.
//
// Cost. A batch reads the log only up to its last line, in 64 KiB chunks
// into pooled buffers. AMQP writes a batch's publishes to the socket at
// once and then waits for their confirms; NATS publishes asynchronously
// and waits for the acks once per batch; PostgreSQL COPYs straight into
// the table and takes the slower ON CONFLICT road only for a batch sent
// again.
//
// Lag is the number of records between an output's cursor and the end of
// the log, from the Tail's line counts.
package eventsout
