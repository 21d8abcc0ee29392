package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
)

// hostileDiskFullRefusals is how many 4xx refusals the fill phase waits
// for: enough to see that refusing is steady, not a blip.
const hostileDiskFullRefusals = 100

// hostileDiskFull: the spool (and the delivery log, as with the default
// layout) lives on a tmpfs of f.tmpfsSize. Delivery is held (the sink
// refuses connections, then the site is suspended over the API) while
// clients inject until the node refuses. Every refusal must be a 4xx; the
// node must stay up and answer. It is then killed and restarted on the full
// file system (a 250 means on disk, not in memory), space is freed by
// letting the node drain to the sink, everything acknowledged must arrive,
// and the node must accept mail again.
func hostileDiskFull(ctx context.Context, f hostileFlags, stderr io.Writer) (*hostileReport, error) {
	t0 := time.Now()
	rep := &hostileReport{Scenario: "diskfull"}
	if uid := os.Geteuid(); uid != 0 {
		rep.Skipped = fmt.Sprintf("mounting a tmpfs needs root (running as uid %d): run it as root, or on a VM/container where root may mount", uid)
		return rep, nil
	}
	dir, cleanup, err := hostileDir(f.dir, "penstock-hostile-diskfull-")
	if err != nil {
		return nil, err
	}
	rep.Dir = dir
	mnt := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		cleanup(true)
		return rep, err
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+f.tmpfsSize+",mode=0700"); err != nil {
		cleanup(true)
		rep.Skipped = fmt.Sprintf("mount -t tmpfs -o size=%s %s failed: %v (a container without CAP_SYS_ADMIN, or mounts are not allowed here)", f.tmpfsSize, mnt, err)
		return rep, nil
	}
	// Unmount after the node is gone (deferred first, so it runs last).
	defer func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			fmt.Fprintf(stderr, "penstock hostile diskfull: unmount %s: %v\n", mnt, err)
			return
		}
		if cleanup(rep.ok()) {
			rep.Dir = ""
		}
	}()

	sink, err := newHostileSink(sim.Behavior{Refuse: true})
	if err != nil {
		return rep, err
	}
	defer sink.close()
	token := randomToken()
	node := &hostileNode{bin: f.binary, env: f.env, cfgPath: filepath.Join(dir, "penstock.toml"), logPath: filepath.Join(dir, "node.log")}
	if err := hostileConfig(node.cfgPath, filepath.Join(mnt, "spool"), token, sink, 2*f.size+(1<<20)); err != nil {
		return rep, err
	}
	defer node.kill()
	if err := node.start(ctx); err != nil {
		return rep, err
	}
	fmt.Fprintf(stderr, "penstock hostile diskfull: node up at %s, spool on a %s tmpfs at %s\n", node.smtp, f.tmpfsSize, mnt)

	// Hold delivery: one message makes the site known (the sink refuses
	// connections, so it stays queued), then the site is suspended.
	target := newHostileTarget()
	target.set(node.smtp)
	in := newHostileInjector(runID(f.seed), f.n, f.size)
	if err := in.one(ctx, node.smtp); err != nil {
		return rep, fmt.Errorf("the first message: %w", err)
	}
	if err := retryAPI(ctx, node, token, "/sites/"+hostileDomain+"/suspend"); err != nil {
		return rep, fmt.Errorf("suspending delivery: %w", err)
	}

	// Fill: inject until the node has refused enough times.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range f.clients {
		wg.Go(func() { in.client(ctx, target, stop, 50*time.Millisecond) })
	}
	filled := false
	tick := time.NewTicker(20 * time.Millisecond)
	for !filled {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		in.mu.Lock()
		refused := int64(0)
		for c, n := range in.refused {
			if c >= 400 && c < 500 {
				refused += n
			}
		}
		in.mu.Unlock()
		switch {
		case refused >= hostileDiskFullRefusals:
			filled = true
		case ctx.Err() != nil, !node.alive(), in.attempts.Load() >= int64(f.n):
			filled = true // and checked below
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("filling the disk: %w", err)
	}
	in.fill(rep)
	fmt.Fprintf(stderr, "penstock hostile diskfull: %d attempts, %d acked, refused %s\n", rep.Attempts, rep.Acked, codeCounts(rep.Refused))
	if len(rep.Refused) == 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("no refusal after %d attempts: is the tmpfs larger than -n x -size?", rep.Attempts))
	}
	if !node.alive() {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the node died when its disk filled (see %s)", node.logPath))
		return rep, nil
	}
	// Still up and answering on a full disk.
	if err := hostileHello(ctx, node.smtp); err != nil {
		rep.Problems = append(rep.Problems, "the node does not answer on a full disk: "+err.Error())
	}

	// A 250 means on disk: kill, and restart on the full file system.
	node.kill()
	if err := node.start(ctx); err != nil {
		rep.Problems = append(rep.Problems, "restart on a full disk: "+err.Error())
		return rep, nil
	}
	target.set(node.smtp)

	// Free space: let the node drain to the sink.
	sink.p.SetBehavior(sim.Behavior{Name: "sink", BodyHook: sink.record})
	if err := retryAPI(ctx, node, token, "/sites/"+hostileDomain+"/resume"); err != nil {
		return rep, fmt.Errorf("resuming delivery: %w", err)
	}
	retryAPI(ctx, node, token, "/sites/"+hostileDomain+"/retry") // due now, not at the next retry
	acked := in.ackedIDs()
	fmt.Fprintf(stderr, "penstock hostile diskfull: draining %d acknowledged messages...\n", len(acked))
	if err := sink.waitAll(ctx, acked); err != nil {
		fmt.Fprintln(stderr, "penstock hostile diskfull: drain:", err)
	}

	// Space is back: new mail is accepted and delivered.
	after := newHostileInjector(in.run+"-after", 20, f.size)
	for i := range int64(20) {
		if err := after.one(ctx, node.smtp); err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("after the drain, message %d: %v", i, err))
			break
		}
	}
	if err := sink.waitAll(ctx, after.ackedIDs()); err != nil {
		rep.Problems = append(rep.Problems, "after the drain: "+err.Error())
	}
	if !node.alive() {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the node exited on its own (see %s)", node.logPath))
	}
	node.stop()
	rep.Refused = in.refused
	sink.count(rep, append(acked, after.ackedIDs()...))
	rep.Acked += int64(len(after.ackedIDs()))
	rep.Attempts += after.attempts.Load()
	rep.Took = time.Since(t0)
	return rep, nil
}

// one sends the injector's next message on a connection of its own and
// wants a 250.
func (in *hostileInjector) one(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := smtpclient.Dial(ctx, addr, smtpclient.Options{EHLO: "client.hostile.test", TLS: smtpclient.TLSDisabled})
	if err != nil {
		return err
	}
	defer cl.Close()
	i := in.next.Add(1) - 1
	before := len(in.ackedIDs())
	in.send(ctx, cl, i)
	if len(in.ackedIDs()) == before {
		in.mu.Lock()
		code := in.lastCode
		in.mu.Unlock()
		return fmt.Errorf("message %s not accepted (last reply code %d)", in.id(i), code)
	}
	return nil
}

// hostileHello opens a session (greeting and EHLO) and closes it.
func hostileHello(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := smtpclient.Dial(ctx, addr, smtpclient.Options{EHLO: "client.hostile.test", TLS: smtpclient.TLSDisabled})
	if err != nil {
		return err
	}
	return cl.Quit(ctx)
}

// retryAPI calls an operator action until it succeeds (a site becomes
// known once its first message is queued), at most 10 s.
func retryAPI(ctx context.Context, node *hostileNode, token, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := node.api(ctx, token, path)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-tick.C:
		}
	}
}
