//go:build !unix

package queue

import "time"

// cpuUsed is unknown here: the benchmark reports 0 CPU.
func cpuUsed() time.Duration { return 0 }
