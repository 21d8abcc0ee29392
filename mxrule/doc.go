// Package mxrule holds the ordered MX rules: named connection and rate limits
// matched against the MX host names of a site.
//
// # Algorithm
//
// A Set is an ordered list of rules, each with one or more wildcard patterns.
// Match walks the rules in order and, for each rule, tries each of its patterns
// against each of the site's MX host names; the first rule with a hit wins. New
// always appends a built-in catch-all rule named "default" with the pattern
// "*", so every site matches some rule. A Set is immutable after New and safe
// for concurrent use; on reload the caller builds a new Set and swaps a pointer
// atomically, so a dispatcher never sees half a rule set.
//
// # Patterns
//
// A pattern is made of letters, digits, '-', '.', and the wildcards '*' (any
// run of characters, dots included, possibly empty) and '?' (exactly one
// character). Matching is case-insensitive (ASCII; MX names are A-labels, RFC
// 5890 §2.3.2.1) and ignores one trailing dot on the host or the pattern, so
// "mx.example.com." and "mx.example.com" are the same name.
//
// "*.google.com" matches "gmail-smtp-in.l.google.com" and
// "alt1.gmail-smtp-in.l.google.com" (the '*' crosses dots), but not the apex
// "google.com": the pattern needs the literal ".google.com" suffix. A rule that
// wants the apex too lists it: mx = ["google.com", "*.google.com"].
//
// The matcher is an iterative glob with one backtrack point (the last '*'
// seen), so it runs in O(len(pattern) × len(host)) at worst and never
// backtracks exponentially, whatever the pattern; no regular expressions.
//
// # Defaults
//
// The catch-all rule "default" carries conservative values, meant for a
// receiver we know nothing about:
//
//	scope                        source
//	max_connections              10
//	max_messages_per_connection  100
//	messages_per_hour            0 (unlimited; dynamic flow control still applies)
//	max_connection_rate          unlimited (connection opens per period, e.g. "30/1m")
//	messages_per_day             0 (unlimited; rolling 24 hours)
//	connect_timeout              30s
//	command_timeout              5m
//	data_timeout                 10m
//	tls                          default (takes [server] tls; opportunistic when that is unset too)
//	chunking                     true (BDAT to a receiver that offers CHUNKING, RFC 3030)
//
// RFC 5321 §4.5.3.2 recommends 5 minutes for the greeting, MAIL and RCPT
// replies, 2 minutes for the DATA 354, 3 minutes per data block and 10 minutes
// for the reply after the final dot; command_timeout covers the first group
// and data_timeout the last. In a configured rule, a zero max_connections,
// max_messages_per_connection, timeout or an empty tls takes the catch-all's
// value, so a rule states only what differs; messages_per_hour,
// messages_per_day and max_connection_rate unset mean unlimited and are not
// defaulted. These values are decided here and only
// here: the config package fills a rule's unset keys from Default (so
// `penstock check` prints what is in force), and EffectiveTLS is the one
// place where tls = "default" becomes a mode.
//
// The package also embeds providers.toml, the shipped rules for the large
// mailbox providers (ShippedTOML); the config package decodes it and places
// those rules after the operator's own.
//
// mxrule only decides which limits apply. It never counts connections or
// messages (package quota does), never resolves MX records and never reads
// configuration files.
package mxrule
