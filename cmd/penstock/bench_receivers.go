package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// receiverProcs are the command names of the local receivers the event
// outputs send to: RabbitMQ's Erlang VM, the NATS server and PostgreSQL
// (postmaster and backends).
var receiverProcs = []string{"beam.smp", "nats-server", "postgres"}

// receiverCPU returns the CPU time used so far by every process on the
// machine named in receiverProcs, per name: user and system time of the
// process and of its reaped children, so that a PostgreSQL backend that
// exits during the run still counts (in its postmaster). A receiver found
// nowhere is absent from the map. The figure is the receivers' whole work,
// other clients' included: on a shared machine it is an upper bound.
func receiverCPU() map[string]time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	out := map[string]time.Duration{}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended meanwhile
		}
		name, ticks, ok := parseProcStat(string(b))
		if !ok {
			continue
		}
		for _, r := range receiverProcs {
			if name == r {
				// USER_HZ is 100 on Linux.
				out[name] += time.Duration(ticks) * 10 * time.Millisecond
			}
		}
	}
	return out
}

// parseProcStat returns the command name of a /proc/PID/stat line and its
// utime+stime+cutime+cstime in clock ticks.
func parseProcStat(s string) (name string, ticks int64, ok bool) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	name = s[open+1 : end]
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
	if len(f) < 15 {
		return "", 0, false
	}
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return "", 0, false
		}
		ticks += n
	}
	return name, ticks, true
}

// receiverDelta is what each receiver used between two receiverCPU calls,
// in seconds; receivers missing from either are left out.
func receiverDelta(before, after map[string]time.Duration) map[string]float64 {
	out := map[string]float64{}
	for name, a := range after {
		if b, ok := before[name]; ok && a >= b {
			out[name] = (a - b).Seconds()
		}
	}
	return out
}
