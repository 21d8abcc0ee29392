// Package queue is Penstock's scheduler and dispatcher: it owns the
// in-memory queues of recipients waiting for delivery and decides when a
// connection is opened, on which path, and which messages it carries.
//
// The algorithm, as the data flows:
//
//  1. Enqueue takes a message that the spool already holds durably. Its
//     queued recipients are grouped by domain into jobs (one job = one
//     message × one domain, so a message with several recipients at one
//     domain goes out in one SMTP transaction). The queue keeps a compact
//     record per message and job (IDs, due time, validity end, interned
//     tenant, campaign, pool and domain), not the message: that is read
//     back from the spool when it is sent, and let go again once its
//     updates are durable (entry.go).
//  2. Each domain is resolved to its MX hosts (through the caching
//     resolver, one lookup in flight per domain; domains wait for theirs
//     in a queue served by at most 64 goroutines, lookup.go). The sorted
//     MX host set names the site: every domain with the same MX hosts
//     shares one site queue. A temporary DNS failure holds the domain's
//     jobs with the status "Messages queued (MX lookup failed)" and a
//     timer queues the lookup again; a permanent one (NXDOMAIN, null MX)
//     bounces them at once.
//  3. A site keeps its jobs in a heap ordered by due time, so finding work
//     is O(log n) and nothing ever scans the queue. A site with due jobs
//     has one runner goroutine; a site with none, or whose earliest job is
//     a second or more away, has no goroutine at all: it is parked, and a
//     timer starts its runner at the due time (park.go).
//  4. The runner sleeps until the earliest job is due, then asks, in
//     order: is the site suspended by the operator? does flow control hold
//     it? is the matched MX rule's connection quota met (site-local count,
//     then the quota store for the rule's scope key)? is there a
//     message-rate token? Each "no" records the exact status text and its
//     numbers on the site (shown by explain) and the runner waits for the
//     event that can change the answer: a session ending, a lease released
//     in the quota store, a timer for the next token or the end of a
//     suspension. It never polls in a busy loop.
//  5. A "yes" hands the claimed job and a connection lease to a session
//     goroutine. The session owns the socket: it dials the MX hosts in
//     preference order from its source address, sends the job, then keeps
//     claiming due jobs of the same site (connection reuse) until none is
//     due, the rule's messages-per-connection is reached, or the
//     connection breaks. With none due it lingers (2 s) for the next;
//     while a session with its connection open looks for a job, the
//     runner dials no other one for the site. The lease is released when
//     the socket closes; a lingering session closes at once when another
//     site's runner is refused under a quota key it holds (yield.go).
//     Before it starts a session, the runner offers the job and lease to a
//     lingering session of another site connected to the address the new
//     one would dial first, which takes both and serves that site from
//     then on (share.go).
//  6. Each result is qualified by the bounce rules, written to the spool
//     (durably) and to the delivery log, and fed to flow control.
//     Delivered and hard-bounced recipients are final; soft failures are
//     pushed back into the site heap at their next retry time; a
//     recipient whose validity has run out expires.
//  7. TLS: each connection's STARTTLS outcome goes to Deps.TLSReport (RFC
//     8460 reporting), once per connection and recipient domain. A new
//     connection resumes the last TLS session with its MX host (a session
//     cache on the base configuration; never under DANE or MTA-STS
//     testing, whose configurations are per connection). An MX
//     address whose opportunistic handshake failed is remembered for
//     Config.TLSFailureMemory and gets clear text at once meanwhile. A
//     message marked by Deps.RequireTLS (RFC 8689) is sent only over TLS
//     authenticated by the domain's DANE or MTA-STS policy (verifiedBy)
//     to a server advertising REQUIRETLS, and fails permanently with
//     5.7.10 otherwise.
//  8. Sites and domains are forgotten when the queue no longer needs them:
//     the owner calls Sweep periodically, and a site found with nothing to
//     do (no job, no session, no operator suspension) at 12 sweeps 5
//     minutes apart with no push between them is dropped, with its
//     domains' records. A push that reaches a site just dropped routes the
//     job again (sweep.go).
//
// The package never touches sockets of the injection side, never decides
// durability (the spool does), and never knows whether quotas and flow
// state are local or shared through Redis: both sit behind interfaces.
package queue
