package main

import (
	"os"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A command name may hold spaces and parentheses: the last ')' ends it.
	line := "2234 (postgres: a (b) c) S 1 2 3 4 -1 4194560 10 0 0 0 7 5 3 2 20 0 1 0 100 0 0"
	name, ticks, ok := parseProcStat(line)
	if !ok || name != "postgres: a (b) c" || ticks != 7+5+3+2 {
		t.Fatalf("parseProcStat = %q, %d, %v", name, ticks, ok)
	}
	if _, _, ok := parseProcStat("12 (x) S 1 2"); ok {
		t.Fatal("a short line was accepted")
	}
}

func TestReceiverCPUSeesOwnKind(t *testing.T) {
	// Our own process, counted by its own name, must show the CPU it burns.
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	self, _, ok := parseProcStat(string(b))
	if !ok {
		t.Fatal("cannot parse /proc/self/stat")
	}
	old := receiverProcs
	receiverProcs = []string{self}
	defer func() { receiverProcs = old }()
	before := receiverCPU()
	// Burn 50 ms of CPU (bounded in wall time: the machine may be busy).
	c0 := cpuSelf()
	for start := time.Now(); cpuSelf()-c0 < 50*time.Millisecond && time.Since(start) < 10*time.Second; {
	}
	d := receiverDelta(before, receiverCPU())
	if d[self] <= 0 {
		t.Fatalf("receiver delta for %s = %v, want > 0", self, d)
	}
}
