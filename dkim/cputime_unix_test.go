//go:build unix

package dkim

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU adds a cpu-µs/op metric: the process's CPU time per op, which
// unlike ns/op holds on a machine busy with other work. Call it before the
// loop and the function it returns after.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N)/1e3, "cpu-µs/op")
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
