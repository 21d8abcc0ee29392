// Package reports owns what the bounce listener does with a report it
// receives: a DSN (RFC 3464), a complaint (ARF, RFC 5965), an auto-reply or
// something unreadable. It decides whether the report may change the
// quarantine, acts through the small interfaces of Deps (quarantine, delivery
// log, logger, clock), and keeps unreadable reports on disk within bounds.
//
// Who may act. Anyone can send mail to the listener, so a report's body is
// never evidence on its own. Return paths are VERP addresses whose check is
// an HMAC bound to the recipient address (VERP.Encode derives a per-address
// key, then dsn.VERP signs message id and recipient index with it). A report
// acts only when one of its envelope recipients verifies for one of the
// addresses the report names, and then only on that address: other
// addresses in the body are ignored (counted), and when the verified address
// is the Original-Recipient while the Final-Recipient differs (forwarding),
// the mismatch is logged and the VERP recipient is the one acted on. A
// report without a valid VERP address (postmaster@, abuse@, a tampered
// check) is logged and counted as unverified, and never acts, unless it comes
// from a trusted reporter ([bounce] trusted_reporters): a client in a trusted
// network, or a report carrying a valid DKIM signature (RFC 6376) of a
// trusted domain or one of its subdomains, verified with keys looked up
// through Penstock's resolver. A trusted report acts on the recipients it
// names (at most MaxActions), as feedback loops expect.
//
// Bounds. Larger reports than Config.MaxReportSize are refused by the SMTP
// server (552). Each client network (/24 for IPv4, /64 for IPv6; trusted
// networks exempt) may send Config.PerMinute reports a minute, a token bucket
// refilled continuously; beyond, 450 4.7.1 asks it to retry later (RFC 5321
// §4.2.5). Reports that cannot be used are kept under Config.Dir for an
// operator, within MaxFiles and MaxBytes (the oldest kept is removed first,
// each removal counted), and only while the filesystem keeps MinFree bytes
// free; otherwise they are logged and counted, not kept.
//
// The package never touches the spool or the queue; it parses with package
// dsn and never modifies the report.
package reports
