// Package config owns penstock.toml: its Go shape, its defaults, strict
// decoding and validation, and printing the effective configuration.
//
// Algorithm. Parse starts from Default(), which holds every key with its
// default, so `penstock serve` runs with no file at all. The TOML text is
// first walked with go-toml's parser to build a line index (dotted key path
// such as "mx_rule[2].scope" -> line) and to check value types against the Go
// struct by reflection (a duration must be a string like "5m", not a bare
// number; keys are case-sensitive). The text is then decoded over the
// defaults with unknown keys refused. Per-entry defaults for arrays of tables
// (scope "source", tls "default", weight 1, ...) are filled in after decoding,
// because a default cannot live in an entry that does not exist yet. Finally
// Validate checks every value and cross-reference. Every problem found is
// reported, not only the first, each as an *Error naming file, line and key,
// joined with errors.Join.
//
// The package never touches running components: it opens no sockets, reads no
// certificate files and creates no directories. Whoever builds the MTA from a
// Config does that, and a failed reload simply keeps the old *Config.
//
// Relative paths (spool_dir, log_dir, tls_cert, tls_key) are relative to the
// working directory of the process, not to the config file.
package config
