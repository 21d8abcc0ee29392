// Package smtpclient is Penstock's SMTP client for delivery: it owns one
// outbound connection to one MX IP address and carries messages over it, as
// many and as fast as the caller asks, reporting each recipient's fate.
//
// It speaks SMTP (RFC 5321) with the extensions bulk delivery lives on:
// PIPELINING (RFC 2920), CHUNKING (RFC 3030), SIZE (RFC 1870), 8BITMIME
// (RFC 6152), SMTPUTF8 (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034, codes from
// RFC 3463) and STARTTLS (RFC 3207). It never touches queues, DNS, quotas, flow control, bounce
// rules or the spool: the caller has already chosen the MX IP, the source
// address and the TLS mode (from the matched MX rule), holds the connection
// slot, and decides what each reply means for the recipient.
//
// # A delivery, step by step
//
// The queue's session goroutine does this for a path (source × MX IP):
//
//  1. Connect. Dial binds Options.LocalAddr (the source; zero means any)
//     and connects to "ip:port" within ConnectTimeout. A refused
//     connection, a timeout or a source address this host does not have is
//     an *Error with Command "connect" and Local set: flow control counts it,
//     and a burst of them across many sites points at our own network.
//
//  2. Greeting. The server speaks first with 220 (RFC 5321 §3.1), within
//     CommandTimeout (§4.5.3.2.1). A 421 or 554 greeting, the common answer
//     of a throttling or blocking provider, is an *Error with Command
//     "greeting" and the Reply; Dial sends QUIT and closes.
//
//  3. EHLO with Options.EHLO, the source's host name. The reply lists the
//     extensions; Extensions returns them. A server that refuses EHLO with
//     5xx gets HELO and no extensions (RFC 5321 §3.2).
//
//  4. STARTTLS, as TLSMode says. Disabled never asks. Opportunistic asks when
//     offered and does not verify the certificate (RFC 7435); if the
//     handshake fails, that connection is dead, so Dial closes it, connects
//     again, skips STARTTLS, and keeps the handshake error in TLSError for
//     the delivery log. Required fails the connection with Command
//     "STARTTLS" when STARTTLS is missing (Local false: the server's doing)
//     or the handshake fails (Local true); Verify also checks the
//     certificate against Options.ServerName. TLS failures are never
//     permanent: a retry, or an operator, may fix them. After the handshake
//     the client says EHLO again and forgets the clear-text extensions
//     (RFC 3207 §4.2). Bytes the server sends after its 220 and before the
//     handshake are refused, not read as if protected. Whatever the mode,
//     Verified says whether the certificate verified for ServerName; a
//     REQUIRETLS transaction (SetRequireTLS, RFC 8689) is sent only when it
//     did and the server advertises REQUIRETLS, else refused with
//     ErrRequireTLS before MAIL.
//
//  5. Send, once per message. The sender and every recipient go into one
//     transaction. With PIPELINING, MAIL FROM, every RCPT TO and DATA are
//     written in one flush and the replies read after, in order: one round
//     trip instead of 2+N. Without it, each command waits for its reply.
//     To a server with CHUNKING (unless Options.NoChunking), BDAT takes
//     DATA's place: "BDAT <size> LAST" and the whole body follow RCPT in
//     the same flush, and the reply to the chunk is the verdict, so a
//     message costs one round trip, not two (the wait for 354 is gone).
//     MAIL FROM carries SIZE= when the server has SIZE, BODY=8BITMIME when
//     the body has 8-bit bytes and the server has 8BITMIME, and SMTPUTF8 when
//     an address is not ASCII. Some checks refuse a message before any byte
//     is sent, with a permanent Local error: an address with CR, LF, NUL,
//     "<" or ">" (it could inject commands), a non-ASCII address for a
//     server without SMTPUTF8, a message over the server's SIZE.
//
//  6. Replies. Each RCPT reply is that recipient's: 2xx accepted, 4xx
//     temporary, 5xx permanent, with code, enhanced code and full text in
//     RcptResult. A refused MAIL fails the whole transaction. When every
//     recipient is refused, the DATA reply (503 or 554) is read and RSET
//     sent, so the connection stays usable for the next message; Send
//     returns no error then, only per-recipient ones. Otherwise the body is
//     written in one pass into the buffered writer, with lines ending in
//     CRLF (a bare LF becomes CRLF) and a leading "." doubled (RFC 5321
//     §4.5.2), then ".". The reply to the final dot is the server's verdict
//     for every accepted recipient: 2xx delivered, otherwise an *Error with
//     Command "DATA" set on each of them and returned. A chunk has the same
//     CRLF lines without the dots; the server reads it even when it refuses
//     the transaction (RFC 3030 §2), answering 503 or 554 when no recipient
//     was accepted (RSET follows, as after DATA), and its reply is the
//     verdict, with Command "BDAT" when refused.
//
//  7. Next message, or the end. The session sends more messages on the same
//     connection until the rule's messages-per-connection quota (Messages
//     counts them) or the queue runs dry, then Quit. A connection that
//     Broken reports unusable (network error, timeout, 421 from the server
//     at any point, a malformed reply, cancellation) is closed and its slot
//     given back.
//
// # Errors
//
// Every failure is an *Error: Permanent only for a 5xx reply or a local check
// no retry can fix; Command names the step; Reply is the server's words;
// Local tells our side and the network from the remote's verdict; Err is the
// cause (errors.Is works with the sentinels here, with os.ErrDeadlineExceeded
// for timeouts, with context.Canceled, with x509 errors for Verify). A
// server that refuses and hangs up while a large body is still going out
// (a BDAT chunk written behind its commands, or DATA's content) breaks our
// write; the replies it sent before are read, and its refusal (MAIL's,
// the message's, or a 421) is the error, not the broken pipe, which would
// count against our own network.
//
// # Time
//
// Every write and every reply read has a deadline: CommandTimeout for
// commands, DataTimeout for the body and the reply to its final dot
// (RFC 5321 §4.5.3.2), or the context's deadline when that is sooner. A
// context that is cancelled closes the connection at once, which unblocks
// any read or write; the client is broken afterwards.
//
// # Cost
//
// Bulk delivery does tens of thousands of messages a second over loopback,
// so the hot path is frugal: one bufio.Reader and one bufio.Writer per
// connection, replies parsed in place in reused buffers (a Reply's strings
// are made only when the caller gets it), commands written piece by piece
// into the writer, the body scanned once for 8-bit bytes and size and
// written once. A pipelined Send is one write for the commands, one for the
// body, and the reads of their replies; with CHUNKING, one write for both.
//
// A Client is not safe for concurrent use: one goroutine owns it.
package smtpclient
