// Package sim is Penstock's simulated world: the outside parties a bulk MTA talks
// to, run in-process on loopback so that tests, `penstock demo` and `penstock bench`
// exercise real sockets and real protocols without touching the Internet.
//
// It has two parts:
//
//   - a loopback DNS server (dnsserver.go) that answers for the test domains, so the
//     MTA resolves MX hosts the way it does in production;
//   - scripted receiving providers (provider.go): a minimal, fast SMTP server of our
//     own listening on one or more 127.0.0.x addresses, whose Behavior says how it
//     answers (greeting refusals, per-recipient replies, replies per client IP,
//     rate limits, messages and connections per client, stalls, drops, STARTTLS,
//     outages).
//
// A Provider counts what a real receiving provider would see: connections in total
// and open at once, per client IP and per path (client IP × MX IP), transaction
// attempts, accepted messages and recipients with their timestamps (also per client
// IP), and rejections by reply code. Tests assert on those counts — what the far side observed — never on
// Penstock's own counters. Behaviour is swapped live with SetBehavior to script an
// outage and its recovery.
//
// The SMTP server runs one goroutine per connection. It reads commands from a
// buffered reader and queues replies in a buffered writer, flushing only when no
// complete command is waiting in the input (RFC 2920 §3.1), so a pipelining client
// gets one write per command group; message bodies are dot-unstuffed line by line and
// kept only when a BodyHook asks for them. CHUNKING (RFC 3030) is offered: a BDAT
// chunk is read by its count of octets, as it is, and a refused one is still read so
// the session stays in step; while a chunk is incomplete the queued replies go out
// before we wait on the socket, since the client is still writing and waits for none.
// The LAST chunk ends the message as the dot ends DATA, with the same verdict. All counters of a provider sit under one
// mutex, taken a couple of times per message, and Stats copies them out as one
// consistent snapshot.
//
// Everything listens on loopback only (NewProvider refuses any other address). The
// package keeps no global state and never touches files, the spool or the MTA's
// internals.
package sim
