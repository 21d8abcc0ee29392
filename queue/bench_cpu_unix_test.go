//go:build unix

package queue

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used. Benchmarks report
// throughput per CPU second beside wall-clock figures because the shared
// build machine is often loaded, which inflates ns/op but not CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
