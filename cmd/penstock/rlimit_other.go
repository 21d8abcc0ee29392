//go:build !unix

package main

import "log/slog"

// raiseFileLimit: no RLIMIT_NOFILE here.
func raiseFileLimit(*slog.Logger) {}
