// Package dns finds where a domain's mail goes: its MX hosts in the order to
// try them, and the IP addresses of a host. It owns every DNS query Penstock
// makes and hides github.com/miekg/dns behind the small Resolver interface.
//
// Algorithm. A lookup validates and normalises the name (lowercase ASCII,
// IDNs to A-labels, RFC 1035 §2.3.4 length limits), then asks each
// configured nameserver in turn over UDP with EDNS0 (RFC 6891), repeating
// over TCP when the reply is truncated (RFC 7766 §5). A reply is used only if
// its ID, question, opcode and QR bit match the query; stray or garbled
// datagrams are skipped, so a spoofer cannot end a lookup early. CNAMEs in the
// answer are followed up to 8 hops. MX records are sorted by preference and
// hosts of equal preference shuffled (RFC 5321 §5.1); a domain with no MX but
// an address gets the implicit MX (itself, preference 0); a null MX (RFC 7505)
// is a permanent error, as are NXDOMAIN and a domain with neither MX nor
// address. Each query to a server off the host goes from a fresh random
// source port (RFC 5452 §4); to a loopback server, which nobody off the
// host can forge, it reuses a socket whose last exchange was clean.
// Everything else that goes wrong (SERVFAIL, REFUSED, timeouts,
// network errors, hostile or malformed replies) is Temporary: the queue
// retries later. Nothing here panics on any reply.
//
// NewCache wraps a Resolver with a TTL cache: positive answers live for the
// records' TTL, permanent errors for the SOA negative TTL capped at 5 minutes
// (RFC 2308 §5), temporary errors for 2 seconds, and concurrent lookups of the
// same name share one query. NewTLSACache does the same for the TLSA
// lookups of DANE (an answer without records lives for the negative TTL).
// A cache runs each lookup on a goroutine of its own, so one caller giving
// up never fails the others; these goroutines, and the one that asks A
// while AAAA is asked, are kept between lookups (workers.go: unpacking a
// reply grows a fresh goroutine's stack at every query). Close on a
// resolver of this package ends them and closes its kept sockets.
//
// This package never decides what to do with an answer: filtering addresses
// (loopback, private ranges), MX rules and retries belong to its callers.
package dns
