package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const helperEnv = "PENSTOCK_SPOOL_CRASH_HELPER"

// crashBody is what the helper stores for worker w's i-th message, so the
// parent can check the body from the line the helper printed.
func crashBody(w, i int) []byte {
	return body(2048, fmt.Sprintf("w%d-i%d|", w, i))
}

// TestHelperProcess is not a test: TestCrashSafety runs the test binary again
// with it selected and helperEnv set to a spool directory. It writes from
// several goroutines and prints a line only after each durable call returns:
//
//	P <id> <worker> <i>   Put returned
//	D <id>                Delete returned
//
// until it is killed, or gives up after a bounded count and time.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashSafety")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(os.Stdout, format, args...) // unbuffered: one write per line
		mu.Unlock()
	}
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
				m := &Message{Sender: "crash@example.com", Received: time.Now(),
					Recipients: []Recipient{{Addr: fmt.Sprintf("w%d-i%d@example.org", w, i)}}}
				if err := s.Put(context.Background(), m, crashBody(w, i)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				out("P %d %d %d\n", uint64(m.ID), w, i)
				if i%3 == 0 {
					if err := s.Delete(m.ID); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
					out("D %d\n", uint64(m.ID))
				} else if i%3 == 1 {
					m.Recipients[0].Attempts = 1
					m.Recipients[0].LastCode = 451
					if err := s.Update(m); err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(2)
					}
				}
			}
		}()
	}
	wg.Wait()
	os.Exit(0) // never reached when the parent kills us in time
}

type ackedPut struct {
	w, i int
}

// TestCrashSafety kills a writing process with SIGKILL at an arbitrary point,
// reopens its spool, and checks that every acknowledged Put is there with its
// body and every acknowledged Delete is gone. It does so for a few rounds on
// the same spool, so it also checks that IDs never repeat across crashes.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	seen := map[ID]bool{}
	var maxID ID
	for round, killAfter := range []int{50, 400, 1500} {
		puts, dels := crashRound(t, dir, killAfter)
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		stored := map[ID]*Message{}
		err = s.Load(func(m *Message) error { stored[m.ID] = m; return nil })
		if err != nil {
			t.Fatal(err)
		}
		for id, p := range puts {
			if seen[id] {
				t.Fatalf("round %d: ID %s was issued in an earlier round", round, id)
			}
			if id <= maxID {
				t.Fatalf("round %d: ID %s not above %s from an earlier round", round, id, maxID)
			}
			if dels[id] {
				if stored[id] != nil {
					t.Fatalf("round %d: acknowledged delete of %s undone", round, id)
				}
				continue
			}
			m := stored[id]
			if m == nil {
				if p.i%3 == 0 {
					continue // its Delete was in flight at the kill: it may have happened
				}
				t.Fatalf("round %d: acknowledged message %s lost", round, id)
			}
			if want := fmt.Sprintf("w%d-i%d@example.org", p.w, p.i); m.Recipients[0].Addr != want {
				t.Fatalf("round %d: %s has recipient %q, want %q", round, id, m.Recipients[0].Addr, want)
			}
			b, err := s.Body(id)
			if err != nil || !bytes.Equal(b, crashBody(p.w, p.i)) {
				t.Fatalf("round %d: body of %s damaged (%d bytes, %v)", round, id, len(b), err)
			}
		}
		for id := range puts {
			seen[id] = true
			maxID = max(maxID, id)
		}
		t.Logf("round %d: killed after %d acks; %d puts and %d deletes acknowledged, %d messages on disk",
			round, killAfter, len(puts), len(dels), len(stored))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// crashRound runs the helper on dir, kills it with SIGKILL once it has
// acknowledged killAfter writes, and returns every write it acknowledged.
func crashRound(t *testing.T, dir string, killAfter int) (map[ID]ackedPut, map[ID]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	puts := map[ID]ackedPut{}
	dels := map[ID]bool{}
	killed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (f[0] != "P" && f[0] != "D") {
			continue // test framework chatter
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			t.Fatalf("helper printed %q", sc.Text())
		}
		if f[0] == "D" {
			dels[ID(n)] = true
		} else {
			w, _ := strconv.Atoi(f[2])
			i, _ := strconv.Atoi(f[3])
			puts[ID(n)] = ackedPut{w, i}
		}
		// Keep reading after the kill: lines already written were acked.
		if !killed && len(puts)+len(dels) >= killAfter {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("helper ended before %d acks (%d): %v\n%s", killAfter, len(puts)+len(dels), err, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatal("helper did not die in time")
	}
	return puts, dels
}
