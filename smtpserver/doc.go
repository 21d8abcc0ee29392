// Package smtpserver is Penstock's SMTP injection listener: applications and
// upstream MTAs hand it mail, it hands each complete message to an Acceptor
// (the spool) and acknowledges with 250 only after the Acceptor has returned
// nil, that is after the message is durable (docs/ARCHITECTURE.md §5,
// invariant 1).
//
// The protocol engine is github.com/emersion/go-smtp; this package supplies
// the policy around it:
//
//   - Relay control (docs/ARCHITECTURE.md §5, invariant 4). Penstock
//     relays everything, so every transaction is a relay: MAIL FROM is
//     refused with "550 5.7.1 relaying denied" unless the client's IP is in Config.AllowedNetworks or the
//     session authenticated (AUTH PLAIN or LOGIN against Config.Users). AUTH
//     is offered only over TLS or to loopback clients, so passwords never
//     cross a network in clear.
//   - Input checks (docs/ARCHITECTURE.md §5, invariant 5). Addresses are
//     checked against RFC 5321 §4.1.2 (dot-string local part, LDH or
//     U-label domain, address literals, RFC 5321 §4.5.3.1 length limits); non-ASCII addresses need SMTPUTF8
//     (RFC 6531). Limits on recipients and size answer with the RFC 5321
//     §4.5.3.1.10 and RFC 1870 replies. Every refusal has an enhanced status
//     code (RFC 3463) and a text that says what was wrong.
//   - Message shaping. The body is read whole, bare CR and bare LF become
//     CRLF (so the stored form is unambiguous CRLF lines, which also defuses
//     SMTP smuggling through "\n.\r\n"), and a Received: trace header
//     (RFC 5321 §4.4) is put in front.
//   - Abuse control. At connect, by address: Config.MaxConnectionsPerClient
//     per client outside AllowedNetworks, and the last
//     Config.ReservedConnections slots only for AllowedNetworks (and
//     loopback when Users is set). At 80% of MaxConnections the server is
//     under stress until it falls to 60%: the wait for a silent client drops
//     from ReadTimeout to StressIdleTimeout (Postfix's stress mode). Every
//     4xx/5xx reply counts toward Config.MaxErrors, after which the session
//     gets "421 4.7.0 Too many errors" and is closed (Postfix's
//     smtpd_hard_error_limit); the connection wrapper counts the replies it
//     carries, and in a TLS session, where it carries only ciphertext, the
//     session counts its own refusals. AUTH failures are counted per
//     address across sessions in a bounded table: past a few, each is
//     answered late, and past a threshold the address is refused AUTH for
//     a cool-down (throttle.go).
//   - Connection control. A listener wrapper tracks every connection, caps
//     them at Config.MaxConnections ("421 4.7.0 Too many connections" beyond)
//     and lets Shutdown drain: idle sessions are told 421 and closed at once,
//     sessions inside a transaction finish it (the client gets its 250) and
//     are closed right after; at the context deadline the rest are cut and
//     the Acceptor's context is cancelled. Shutdown returns only when no
//     session and no Accept call is left, so the caller may close the spool.
//   - Reply batching (RFC 2920 §3.2). go-smtp writes every reply on its own;
//     the connection wrapper holds replies back until go-smtp next waits for
//     input, so a pipelined MAIL/RCPT/DATA group is answered in one segment.
//
// The package never touches the spool's storage, DNS or delivery; it keeps no
// package-level state, and its only outputs are Acceptor calls, log records
// and the counters returned by Server.Stats.
package smtpserver
