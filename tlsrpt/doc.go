// Package tlsrpt owns SMTP TLS Reporting (RFC 8460) on the sending side: it
// records the TLS outcome of each outgoing session, aggregates the outcomes
// per policy domain (the recipient domain) per UTC day, and builds the daily
// aggregate report in the RFC's JSON format.
//
// Algorithm. Record adds one Result to the day of its time: per policy
// domain, per policy (type and policy strings), a count of successful
// sessions and a count of failed sessions per failure detail (result type,
// sending IP, MX host, receiving IP, reason). Counters by result feed the
// metrics. Days are kept in memory and saved to a spool KV (one key per day
// and domain) by Flush, which the owner calls every few seconds and on
// shutdown, so a restart loses at most the last few seconds of counts.
// Reports returns the report of each domain for a finished day; Forget
// drops a day once its reports are sent.
//
// Sending (Sender) looks up the domain's reporting policy in the TXT record
// at _smtp._tls.<domain> (RFC 8460 §3), gzips the JSON report and sends it
// to each rua URI: mailto: through a caller-supplied function that injects
// a multipart/report message (RFC 8460 §5.3) into Penstock's own spool,
// https: by POST (§5.4) with certificate verification and a timeout.
//
// The package never opens SMTP connections and never decides TLS policy:
// the queue and the policy code (MTA-STS, DANE) report to it through Record.
package tlsrpt
