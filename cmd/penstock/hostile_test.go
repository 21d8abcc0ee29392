package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for a built penstock binary: the
// hostile scenarios start it as "serve" with PENSTOCK_TEST_AS_BINARY=1.
func TestMain(m *testing.M) {
	if os.Getenv("PENSTOCK_TEST_AS_BINARY") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// shortHostileFlags is a short run of the operator's suite: the node is
// this test binary (see TestMain).
func shortHostileFlags() hostileFlags {
	f := defaultHostileFlags()
	f.binary = os.Args[0]
	f.env = []string{"PENSTOCK_TEST_AS_BINARY=1"}
	f.n, f.clients, f.kills, f.seed = 300, 4, 3, 7
	f.timeout = 60 * time.Second
	return f
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func checkHostile(t *testing.T, rep *hostileReport, err error) {
	t.Helper()
	if rep != nil {
		var b strings.Builder
		rep.print(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if rep.Skipped != "" {
		t.Skip(rep.Skipped)
	}
	if rep.Lost > 0 || len(rep.Problems) > 0 {
		t.Fatalf("%d acknowledged message(s) lost; problems: %q", rep.Lost, rep.Problems)
	}
	if rep.Acked == 0 || rep.Received < rep.Acked {
		t.Fatalf("acked %d, received %d", rep.Acked, rep.Received)
	}
}

// The crash scenario, short: 3 SIGKILLs of a real node process while
// 4 clients inject 300 messages; every 250 must reach the sink.
func TestHostileCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	f := shortHostileFlags()
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	rep, err := hostileCrash(ctx, f, testWriter{t})
	checkHostile(t, rep, err)
	if rep.Kills != f.kills {
		t.Fatalf("%d kills, want %d", rep.Kills, f.kills)
	}
}

// The disk-full scenario, short: the spool on an 8 MiB tmpfs (skipped
// where it cannot be mounted). Every refusal must be a 4xx.
func TestHostileDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns node processes")
	}
	f := shortHostileFlags()
	f.tmpfsSize, f.size, f.n = "8m", 64<<10, 2000
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	rep, err := hostileDiskFull(ctx, f, testWriter{t})
	checkHostile(t, rep, err)
	if len(rep.Refused) == 0 {
		t.Fatal("the node never refused: the disk did not fill")
	}
	for code := range rep.Refused {
		if code < 400 || code >= 500 {
			t.Fatalf("refused with %d on a full disk: want 4xx only (%v)", code, rep.Refused)
		}
	}
}

// The counting itself: a message acked but never seen is lost, a second
// delivery is a duplicate, a message seen without a 250 is allowed.
func TestHostileCounts(t *testing.T) {
	s := &hostileSink{seen: map[string]int{}}
	for _, id := range []string{"a", "a", "c"} {
		s.record("", nil, []byte("Subject: x\r\n"+hostileHeader+": "+id+"\r\n\r\nbody "+hostileHeader+": z\r\n"))
	}
	var r hostileReport
	s.count(&r, []string{"a", "b"})
	if r.Lost != 1 || r.Dups != 1 || r.Unacked != 1 || r.Received != 2 || len(r.LostIDs) != 1 || r.LostIDs[0] != "b" || r.ok() {
		t.Fatalf("counted %+v", r)
	}
	if s.missing([]string{"a", "b", "c", "z"}) != 2 {
		t.Fatal("missing miscounted (a header in the body must not count)")
	}
}
