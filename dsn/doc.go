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
// it never panics. A leading mbox "From " line is dropped and lone CRs
// become line ends first. It walks the MIME tree
// (github.com/emersion/go-message) without entering attached messages and
// collects the first message/delivery-status (RFC 3464; or
// message/global-delivery-status, RFC 6533), message/feedback-report (RFC
// 5965), text/plain part (or, failing one, text/html read as text) and
// returned header block (message/rfc822 or text/rfc822-headers). When the
// tree is damaged before a report part was read whole (a truncated
// multipart, a boundary parameter folded without indentation, a header's
// boundary the body does not use), the message is read again by a lenient
// walker that trusts only boundary lines, guesses a lost boundary and keeps
// what decodes. Delivery-status fields left inside the text by a boundary
// the reader did not see count as the status part. Then, first match wins:
//
//  1. a feedback report is a complaint (KindARF); without Original-Rcpt-To
//     the returned message's To and Cc name the complainant
//     (FeedbackRecipients);
//  2. a delivery status part is a DSN (KindDSN): each group with a
//     Final-Recipient (or Original-Recipient) gives one RecipientStatus,
//     groups run together without blank lines being split at a repeated
//     field. Code, and Status when missing or only x.0.0, come from
//     Diagnostic-Code; a recipient whose diagnostic has no code takes it
//     from the text about it in the human-readable part. A status part
//     with no usable group falls to rule 4 as a bounce;
//  3. a read receipt (report-type=disposition-notification, RFC 8098) is
//     KindAutoReply;
//  4. a message that looks like a bounce (From MAILER-DAEMON or postmaster,
//     a bounce subject, X-Failed-Recipients, or a returned copy of the
//     original without an out-of-office mark) but has no report part is
//     read the way a person reads it, after the returned copy below "This
//     is a copy of the message" and the like is cut off. The recipients are
//     the X-Failed-Recipients and the addresses that start a line; failing
//     those, any address the text names other than the reporter's, the
//     notified sender's and the original sender's; failing those, the
//     returned message's single To. Each gets the text from its mentions
//     to the next mention of another one, and the reply code that reports
//     the failure in it (see bestCode: 4xx and 5xx only, not an IPv6
//     fragment nor a greeting, a code followed by an enhanced code of its
//     class first, a permanent one before a transient one, a 503 last)
//     gives the status; without a code it is 5.0.0 and the words are left
//     to the classifier (Diagnostic typed X-Text). An Amazon SES
//     notification (JSON) is read as what it is, and a report forwarded as
//     an attachment is read from the attachment. With at least one
//     recipient it is KindDSN, otherwise KindUnknown. Bounces often carry
//     Auto-Submitted too, so this comes before the next rule;
//  5. a message marked automatic (Auto-Submitted other than "no", RFC 3834
//     §5; X-Autoreply and friends; Precedence: auto_reply) or with an
//     out-of-office subject ("Out of Office", "Automatic reply",
//     "Abwesenheitsnotiz", "Réponse automatique", ...) is KindAutoReply;
//  6. anything else is KindUnknown.
//
// A message of which nothing can be read (no header, no report part, no
// text) is an error; damage anywhere else is not, because MTAs routinely
// send broken MIME and cut the returned copy short. The caller keeps the
// raw message either way: Parse only reads it.
//
// How well this works on real bounces is measured by TestCorpusEvaluation
// on the corpus in testdata/corpus (docs/bounces.md).
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
