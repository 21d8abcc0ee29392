// Package bounce qualifies SMTP replies: it maps a failed attempt's reply
// (basic code, RFC 3463 enhanced code, text) or one of our own local errors to
// a failure reason and a class, and it keeps a bounded count of the most
// frequent replies per site for operators.
//
// Algorithm. A Classifier holds an ordered list of rules: the operator's
// [[bounce_rule]] entries, then the shipped set (rules.toml, real texts of the
// big providers), then the RFC 3463 defaults. Classify walks the rules and the
// first match wins. Each rule is checked cheapest first: the code pattern, the
// enhanced-code pattern, and only then the text. For the text, New splits
// every pattern into its top-level alternatives and finds, for each, words
// one of which any match must contain; all words go into one Aho-Corasick
// automaton (prefilter.go). Classify scans the text once, on the first rule
// that needs it, and then runs only the regexps of alternatives whose words it
// saw; an alternative that is nothing but words needs no regexp at all. When
// no rule matches, the enhanced code decides (rfc3463.go), or failing that the
// basic code; the reply code always decides permanence (RFC 5321 §4.2.1).
// Without a reply code (a text bounce), the enhanced code's class stands in
// for it in code patterns, and a multiline reply's repeated codes are
// removed from the text before matching.
//
// Reasons. Only user_unknown, invalid_domain, account_disabled (hard) and
// mailbox_full (soft) are about the recipient's address. Everything about
// us, the message, the connection or our reputation (refused,
// sender_rejected for a refused return path, unreachable, not_connected,
// error_ignored) never counts against it, and a reply that says nothing
// precise is unknown/soft: no address is quarantined on a vague reply. The
// mapping from other tools' vocabularies and the measurement on real
// bounces are in docs/bounces.md.
//
// Normalize turns a reply text into a stable key by replacing its variable
// parts (addresses, IPs, ids, URLs, dates, numbers) with placeholders, so that
// Top can count "the same reply" across recipients.
//
// The package never touches the queue, the spool or the quarantine: it answers
// what a reply means; what to do about it is the scheduler's business.
package bounce
