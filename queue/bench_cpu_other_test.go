//go:build !unix

package queue

import "time"

// processCPU is unavailable here; benchmarks then skip the CPU metric.
func processCPU() time.Duration { return -1 }
