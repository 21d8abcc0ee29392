// Package dsn handles the return path of outgoing mail: the VERP addresses
// Penstock puts in MAIL FROM, the reports that later arrive at them, and the
// delivery status notifications Penstock sends to senders.
//
// VERP. The return path of each recipient's copy is
// "<prefix>+<msgid>.<rcpt>.<check>@<domain>": the 16-hex spool message id,
// the recipient's index in the message, and the first 40 bits of
// HMAC-SHA256(key, "<msgid>.<rcpt>") in lowercase base32. A bounce arriving
// days later names the message and recipient without any lookup table, and a
// forger who does not know the key cannot make one up: Decode refuses a wrong
// domain, a malformed local part and a bad check, and compares the domain
// and the encoding case-insensitively because relays fold case.
//
// Parsing. Parse takes one message that arrived at a bounce address and says
// what it is. It refuses input over 10 MB, header blocks over 512 KiB or
// 1,000 fields, MIME nested deeper than 8 levels or more than 256 parts, and
// it never panics. It walks the MIME tree (github.com/emersion/go-message)
// without entering attached messages and collects the first
// message/delivery-status (RFC 3464; or message/global-delivery-status, RFC
// 6533), message/feedback-report (RFC 5965), text/plain part and returned
// header block (message/rfc822 or text/rfc822-headers). Then, first match
// wins:
//
//  1. a feedback report is a complaint (KindARF);
//  2. a delivery status part is a DSN (KindDSN): its per-message group gives
//     Reporting-MTA, each later group one RecipientStatus, missing Status
//     and Code being filled in from Diagnostic-Code;
//  3. a read receipt (report-type=disposition-notification, RFC 8098) is
//     KindAutoReply;
//  4. a message that looks like a bounce (From MAILER-DAEMON or postmaster,
//     a bounce subject, X-Failed-Recipients) but has no report part is read
//     the way a person reads it: lines that start with an address open a
//     block, and the block's SMTP reply code and RFC 3463 enhanced code give
//     the status (qmail, Exim, old Postfix and Sendmail texts; the returned
//     copy below "This is a copy of the message" and the like is cut off
//     first). With at least one recipient it is KindDSN, otherwise
//     KindUnknown. Bounces often carry Auto-Submitted too, so this comes
//     before the next rule;
//  5. a message marked automatic (Auto-Submitted other than "no", RFC 3834
//     §5; X-Autoreply and friends; Precedence: auto_reply) or with an
//     out-of-office subject ("Out of Office", "Automatic reply",
//     "Abwesenheitsnotiz", "Réponse automatique", ...) is KindAutoReply;
//  6. anything else is KindUnknown.
//
// A report whose status part cannot be read is an error; damage after the
// status part (a truncated returned message, a missing final boundary) is
// not, because MTAs routinely cut the returned copy short. The caller keeps
// the raw message either way: Parse only reads it.
//
// Composing. Compose.Bytes writes an RFC 3464 DSN for mail Penstock finally
// failed to deliver: multipart/report with a human-readable part, a
// message/delivery-status part and the original headers as
// text/rfc822-headers, CRLF line ends, Auto-Submitted: auto-replied (RFC 3834
// §5). Text that came from remote servers is stripped of control characters
// and folded so that it cannot inject fields. It refuses an empty envelope
// sender: a DSN is never sent to the null sender (RFC 5321 §4.5.5).
//
// The package never touches the spool, the queue or the quarantine and opens
// no sockets: the bounce listener decodes and parses, and its callers decide
// what a bounce or complaint does to a recipient.
package dsn
