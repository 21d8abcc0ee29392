//go:build unix

package queue

import (
	"syscall"
	"time"
)

// cpuUsed is the user and system CPU time of the process so far: the
// shaped-scheduling benchmark reports it per op because the shared machine
// inflates wall-clock ns/op with other people's work.
func cpuUsed() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
