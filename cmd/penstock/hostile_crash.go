package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/sim"
)

// hostileCrash: clients inject while the node is killed with SIGKILL
// f.kills times, each time after a random run of killMin..killMax from the
// moment it answers, and restarted on the same spool. The sink stalls a
// little on every message so that delivery lags injection: later kills
// land while acknowledged mail is still on its way. Then the node drains
// and every acknowledged message must have reached the sink.
func hostileCrash(ctx context.Context, f hostileFlags, stderr io.Writer) (*hostileReport, error) {
	t0 := time.Now()
	rep := &hostileReport{Scenario: "crash"}
	dir, cleanup, err := hostileDir(f.dir, "penstock-hostile-crash-")
	if err != nil {
		return nil, err
	}
	rep.Dir = dir
	defer func() {
		if cleanup(rep.ok()) {
			rep.Dir = ""
		}
	}()

	sink, err := newHostileSink(sim.Behavior{StallAt: sim.AtDot, StallFor: 20 * time.Millisecond})
	if err != nil {
		return rep, err
	}
	defer sink.close()
	token := randomToken()
	node := &hostileNode{bin: f.binary, env: f.env, cfgPath: filepath.Join(dir, "penstock.toml"), logPath: filepath.Join(dir, "node.log")}
	if err := hostileConfig(node.cfgPath, filepath.Join(dir, "spool"), token, sink, 2*f.size+(1<<20)); err != nil {
		return rep, err
	}
	defer node.kill()
	if err := node.start(ctx); err != nil {
		return rep, err
	}
	fmt.Fprintf(stderr, "penstock hostile crash: node up at %s; %d clients inject %d messages; %d SIGKILLs (seed %d)\n",
		node.smtp, f.clients, f.n, f.kills, f.seed)

	target := newHostileTarget()
	target.set(node.smtp)
	in := newHostileInjector(runID(f.seed), f.n, f.size)
	stop := make(chan struct{})
	injDone := make(chan struct{})
	var wg sync.WaitGroup
	for range f.clients {
		wg.Go(func() { in.client(ctx, target, stop, 0) })
	}
	go func() { wg.Wait(); close(injDone) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-injDone
	}()

	rng := mrand.New(mrand.NewPCG(uint64(f.seed), 11))
	for k := range f.kills {
		d := f.killMin + time.Duration(rng.Int64N(int64(f.killMax-f.killMin)+1))
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return rep, fmt.Errorf("timed out before kill %d: %w", k+1, ctx.Err())
		}
		if !node.alive() {
			rep.Problems = append(rep.Problems, fmt.Sprintf("the node exited on its own before kill %d (see %s)", k+1, node.logPath))
		}
		select {
		case <-injDone:
		default:
			rep.KillsInj++
		}
		if sink.missing(in.ackedIDs()) > 0 {
			rep.KillsDlv++
		}
		node.kill()
		rep.Kills++
		if err := node.start(ctx); err != nil {
			return rep, fmt.Errorf("restart %d: %w", k+1, err)
		}
		target.set(node.smtp)
	}
	select {
	case <-injDone:
	case <-ctx.Done():
		close(stop)
		return rep, fmt.Errorf("injection did not finish in time: %w", ctx.Err())
	}
	fmt.Fprintf(stderr, "penstock hostile crash: %d kills done; injection over; draining...\n", rep.Kills)
	acked := in.ackedIDs()
	if err := sink.waitAll(ctx, acked); err != nil {
		fmt.Fprintln(stderr, "penstock hostile crash: drain:", err)
	}
	if !node.alive() {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the node exited on its own during the drain (see %s)", node.logPath))
	}
	node.stop()
	in.fill(rep)
	sink.count(rep, acked)
	rep.Took = time.Since(t0)
	return rep, nil
}

// fill copies the injector's counts into r.
func (in *hostileInjector) fill(r *hostileReport) {
	in.mu.Lock()
	defer in.mu.Unlock()
	r.Attempts = in.attempts.Load()
	r.Acked = int64(len(in.acked))
	r.Dropped = in.dropped.Load()
	r.Refused = in.refused
	r.Problems = append(r.Problems, in.problems...)
}

// hostileDir makes (or uses) the work directory. The returned function
// removes a temporary one when the run passed; a failed run keeps it for
// its logs.
func hostileDir(dir, prefix string) (string, func(passed bool) (removed bool), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return "", nil, err
		}
		if ents, err := os.ReadDir(dir); err != nil || len(ents) > 0 {
			return "", nil, fmt.Errorf("-dir %s must be a new or empty directory (a spool left from a run would be counted)", dir)
		}
		return dir, func(bool) bool { return false }, nil
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	return d, func(passed bool) bool {
		return passed && os.RemoveAll(d) == nil
	}, nil
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
