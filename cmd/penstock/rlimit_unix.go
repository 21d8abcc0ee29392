//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files to the hard limit and
// logs both. Every SMTP session, HTTP connection and spool file is a
// descriptor; at the common soft limit of 1024 a busy node runs out, and
// then deliveries fail with "too many open files" (EMFILE), which is our
// problem, never the remote site's. (Go since 1.19 raises the limit itself
// when it can; this makes the figure visible in the log and covers a
// runtime that did not.)
func raiseFileLimit(logger *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		logger.Warn("cannot read the open files limit", "err", err)
		return
	}
	before := l.Cur
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			logger.Warn("cannot raise the open files limit", "soft", before, "hard", l.Max, "err", err)
			return
		}
	}
	logger.Info("open files limit", "soft", l.Cur, "hard", l.Max, "soft_before", before)
}
