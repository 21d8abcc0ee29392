package main

// penstock hostile replays hostile conditions against a built penstock
// binary and counts what the receiving side got:
//
//   - crash: clients inject over SMTP while the node is killed with
//     SIGKILL again and again (during injection and during delivery) and
//     restarted on the same spool; every message acknowledged with 250
//     at its end (DATA's final dot, or its BDAT LAST chunk: the clients
//     send BDAT, the node offers CHUNKING) must reach the sink;
//   - diskfull: the spool on a small tmpfs fills up; the node must refuse
//     with 4xx (never a 250 for a message it could not store), stay up,
//     and deliver everything it acknowledged once space is freed.
//
// The node under test is a child process ("BINARY serve -config F") with a
// generated configuration pointing at this process's simulated world (sim:
// a DNS server and a receiving sink on loopback). Each message carries a
// unique X-Hostile-ID header, which the sink records, so that acked,
// received, duplicated and lost messages are counted by identity, not by
// totals. Every loop is bounded in count and in time (-timeout).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
)

const (
	hostileDomain = "hostile.test"
	hostileMX     = "mx.sink.hostile.test"
	hostileSender = "sender@penstock.hostile.test"
	hostileHeader = "X-Hostile-ID"
)

func cmdHostile(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintln(stderr, "usage: penstock hostile crash|diskfull [flags]")
		fmt.Fprintln(stderr, "\n  crash     SIGKILL the node during injection and delivery, restart it, count lost messages")
		fmt.Fprintln(stderr, "  diskfull  fill the spool's file system (a tmpfs: needs root), check 4xx refusals and no loss")
		fmt.Fprintln(stderr, "\nRun 'penstock hostile SCENARIO -h' for its flags. Exit status 1 when a message is lost.")
		fmt.Fprintln(stderr, "\nExample:\n  penstock hostile crash -kills 20\n  penstock hostile diskfull -build")
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	var run func(context.Context, hostileFlags, io.Writer) (*hostileReport, error)
	switch args[0] {
	case "crash":
		run = hostileCrash
	case "diskfull":
		run = hostileDiskFull
	case "-h", "--help", "help":
		usage()
		return 0
	default:
		fmt.Fprintf(stderr, "penstock hostile: unknown scenario %q\n", args[0])
		usage()
		return 2
	}
	fs := flag.NewFlagSet("hostile "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := defaultHostileFlags()
	fs.StringVar(&f.binary, "binary", "", "the penstock binary under test (default: this executable, or see -build)")
	build := fs.Bool("build", false, "build the binary under test with 'go build ./cmd/penstock' from the module in the current directory, into a temporary directory")
	fs.IntVar(&f.n, "n", f.n, "messages to inject (crash: attempts; diskfull: the most attempts before giving up on a full disk)")
	fs.IntVar(&f.clients, "clients", f.clients, "concurrent injecting SMTP clients")
	fs.IntVar(&f.size, "size", f.size, "message size in bytes (diskfull: default 65536)")
	fs.IntVar(&f.kills, "kills", f.kills, "crash: how many times to SIGKILL the node")
	fs.Int64Var(&f.seed, "seed", 0, "random seed for the kill moments (default: the time)")
	fs.StringVar(&f.tmpfsSize, "tmpfs-size", f.tmpfsSize, "diskfull: size of the tmpfs holding the spool")
	fs.StringVar(&f.dir, "dir", "", "work directory, kept afterwards (default: a temporary one, removed on success)")
	fs.DurationVar(&f.timeout, "timeout", f.timeout, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: penstock hostile %s [flags]\n", args[0])
		fs.PrintDefaults()
	}
	if fs.Parse(args[1:]) != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "penstock hostile: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	sizeSet := false
	fs.Visit(func(fl *flag.Flag) { sizeSet = sizeSet || fl.Name == "size" })
	if args[0] == "diskfull" && !sizeSet {
		f.size = 64 << 10 // fills the tmpfs in a few hundred messages
	}
	if f.n <= 0 || f.clients <= 0 || f.kills < 0 || f.size < 512 || f.size > 10<<20 {
		fmt.Fprintln(stderr, "penstock hostile: -n and -clients must be positive, -kills not negative, -size from 512 to 10 MiB")
		return 2
	}
	if *build {
		if f.binary != "" {
			fmt.Fprintln(stderr, "penstock hostile: -build and -binary exclude each other")
			return 2
		}
		tmp, err := os.MkdirTemp("", "penstock-hostile-bin-")
		if err != nil {
			return fail(stderr, err)
		}
		defer os.RemoveAll(tmp)
		f.binary = filepath.Join(tmp, "penstock")
		fmt.Fprintf(stderr, "penstock hostile: go build -o %s ./cmd/penstock\n", f.binary)
		cmd := exec.Command("go", "build", "-o", f.binary, "./cmd/penstock")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fail(stderr, fmt.Errorf("go build (run from the repository's root): %w", err))
		}
	}
	if f.binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fail(stderr, fmt.Errorf("finding this binary: %w", err))
		}
		f.binary = exe
	}
	if f.seed == 0 {
		f.seed = time.Now().UnixNano()
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	rep, err := run(ctx, f, stderr)
	if rep != nil {
		rep.print(stdout)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "penstock hostile:", err)
		return 1
	case rep.Skipped != "":
		return 0
	case !rep.ok():
		return 1
	}
	return 0
}

// hostileFlags configures a run; the go test uses short values.
type hostileFlags struct {
	binary    string
	env       []string // extra environment for the node (the test's re-exec switch)
	n         int
	clients   int
	size      int
	kills     int
	seed      int64
	tmpfsSize string
	dir       string
	timeout   time.Duration
	// killMin and killMax bound the random time a node runs before it is
	// killed, counted from the moment it answers.
	killMin, killMax time.Duration
}

func defaultHostileFlags() hostileFlags {
	return hostileFlags{n: 3000, clients: 8, size: 2048, kills: 20, tmpfsSize: "32m", timeout: 10 * time.Minute,
		killMin: 100 * time.Millisecond, killMax: 700 * time.Millisecond}
}

// hostileReport is what a scenario counted.
type hostileReport struct {
	Scenario string
	Skipped  string // why the scenario did not run
	Attempts int64  // messages sent to the node
	Acked    int64  // 250 at the message's end (DATA or BDAT)
	Refused  map[int]int64
	Dropped  int64 // no reply at the message's end: connection lost (the node died)
	Received int64 // distinct messages at the sink
	Dups     int64 // deliveries beyond the first of a message
	Lost     int64 // acked, never received
	Unacked  int64 // received without a 250 (the node died before replying: allowed)
	Kills    int
	KillsInj int // kills while clients were injecting
	KillsDlv int // kills with acked mail not yet at the sink
	LostIDs  []string
	Problems []string // anything else that breaks the promise (a 5xx, a node that died on its own)
	Dir      string
	Took     time.Duration
}

func (r *hostileReport) ok() bool { return r.Lost == 0 && len(r.Problems) == 0 }

func (r *hostileReport) print(w io.Writer) {
	if r.Skipped != "" {
		fmt.Fprintf(w, "penstock hostile %s: SKIPPED: %s\n", r.Scenario, r.Skipped)
		return
	}
	kept := ""
	if r.Dir != "" {
		kept = "; spool and node log kept in " + r.Dir
	}
	fmt.Fprintf(w, "penstock hostile %s  (%.1f s%s)\n", r.Scenario, r.Took.Seconds(), kept)
	if r.Scenario == "crash" {
		fmt.Fprintf(w, "  kills       %d SIGKILLs: %d during injection, %d with acknowledged mail not yet delivered\n", r.Kills, r.KillsInj, r.KillsDlv)
	}
	fmt.Fprintf(w, "  attempts    %d messages sent to the node\n", r.Attempts)
	fmt.Fprintf(w, "  acked       %d (250 at the message's end)\n", r.Acked)
	if len(r.Refused) > 0 {
		fmt.Fprintf(w, "  refused     %s\n", codeCounts(r.Refused))
	}
	fmt.Fprintf(w, "  no reply    %d (connection lost at the message's end: no promise made)\n", r.Dropped)
	fmt.Fprintf(w, "  received    %d distinct messages at the sink (%d delivered without a 250: allowed)\n", r.Received, r.Unacked)
	fmt.Fprintf(w, "  duplicates  %d\n", r.Dups)
	fmt.Fprintf(w, "  LOST        %d\n", r.Lost)
	if len(r.LostIDs) > 0 {
		fmt.Fprintf(w, "  lost IDs    %s\n", strings.Join(r.LostIDs, " "))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  PROBLEM     %s\n", p)
	}
	if r.ok() {
		fmt.Fprintln(w, "  result      PASS: every acknowledged message was delivered")
	} else {
		fmt.Fprintln(w, "  result      FAIL")
	}
}

func codeCounts(m map[int]int64) string {
	var parts []string
	for c := 200; c < 600; c++ {
		if n := m[c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d x%d", c, n))
		}
	}
	return strings.Join(parts, ", ")
}

// ------------------------------------------------------------- the sink

// hostileSink is the simulated world: DNS and one receiving provider that
// records every message's X-Hostile-ID.
type hostileSink struct {
	world *sim.World
	p     *sim.Provider
	mu    sync.Mutex
	seen  map[string]int
	total int64
}

func newHostileSink(b sim.Behavior) (*hostileSink, error) {
	w, err := sim.NewWorld()
	if err != nil {
		return nil, err
	}
	s := &hostileSink{world: w, seen: map[string]int{}}
	b.Name = "sink"
	b.BodyHook = s.record
	if s.p, err = w.AddProvider(b, []string{hostileDomain}, hostileMX); err != nil {
		w.Close()
		return nil, err
	}
	return s, nil
}

func (s *hostileSink) record(_ string, _ []string, body []byte) {
	id := headerValue(body, hostileHeader)
	s.mu.Lock()
	s.seen[id]++
	s.total++
	s.mu.Unlock()
}

// headerValue returns the value of the first header field name in msg's
// header section ("" when absent).
func headerValue(msg []byte, name string) string {
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return "" // the end of the header section
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), name) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// missing returns how many of ids the sink has not seen.
func (s *hostileSink) missing(ids []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.seen[id] == 0 {
			n++
		}
	}
	return n
}

// waitAll polls (every 50 ms, until ctx ends) until the sink has seen
// every id.
func (s *hostileSink) waitAll(ctx context.Context, ids []string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		n := s.missing(ids)
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d acknowledged message(s) still not delivered", n)
		case <-tick.C:
		}
	}
}

// count fills the received, duplicate, lost and unacked figures of r.
func (s *hostileSink) count(r *hostileReport, acked []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	isAcked := make(map[string]bool, len(acked))
	for _, id := range acked {
		isAcked[id] = true
		if s.seen[id] == 0 {
			r.Lost++
			if len(r.LostIDs) < 20 {
				r.LostIDs = append(r.LostIDs, id)
			}
		}
	}
	for id, n := range s.seen {
		r.Received++
		r.Dups += int64(n - 1)
		if !isAcked[id] {
			r.Unacked++
		}
	}
}

func (s *hostileSink) close() { s.world.Close() }

// ------------------------------------------------------------- the node

// hostileNode runs the binary under test as "serve -config F" and finds
// its addresses in its start-up log line.
type hostileNode struct {
	bin, cfgPath, logPath string
	env                   []string
	starts                int

	cmd    *exec.Cmd
	exited chan struct{}
	smtp   string
	http   string
}

var (
	smtpAddrRe = regexp.MustCompile(`\bsmtp=(127\.0\.0\.1:\d+)`)
	httpAddrRe = regexp.MustCompile(`\bhttp=(127\.0\.0\.1:\d+)`)
)

// start runs the node and waits (at most 60 s) until it says it is running.
func (n *hostileNode) start(ctx context.Context) error {
	n.starts++
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %d at %s\n", n.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.bin, "serve", "-config", n.cfgPath, "-grace", "5s")
	cmd.Env = append(os.Environ(), n.env...)
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", n.bin, err)
	}
	n.cmd = cmd
	n.exited = make(chan struct{})
	ready := make(chan [2]string, 1)
	go func() {
		// Copy the log to the file, watching for the "running" line.
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			l := sc.Text()
			fmt.Fprintln(logf, l)
			if !sent && strings.Contains(l, "penstock running") {
				var a [2]string
				if m := smtpAddrRe.FindStringSubmatch(l); m != nil {
					a[0] = m[1]
				}
				if m := httpAddrRe.FindStringSubmatch(l); m != nil {
					a[1] = m[1]
				}
				ready <- a
				sent = true
			}
		}
		cmd.Wait()
		fmt.Fprintf(logf, "=== exited: %v\n", cmd.ProcessState)
		logf.Close()
		close(n.exited)
	}()
	select {
	case a := <-ready:
		if a[0] == "" {
			n.kill()
			return errors.New("the node's start-up line names no SMTP address on 127.0.0.1")
		}
		n.smtp, n.http = a[0], a[1]
		return nil
	case <-n.exited:
		return fmt.Errorf("the node exited at start (%v): see %s", cmd.ProcessState, n.logPath)
	case <-time.After(60 * time.Second):
		n.kill()
		return fmt.Errorf("the node did not start within 60 s: see %s", n.logPath)
	case <-ctx.Done():
		n.kill()
		return ctx.Err()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *hostileNode) kill() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
	n.cmd = nil
}

// stop asks the node to stop (SIGTERM), killing it after 15 s.
func (n *hostileNode) stop() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		n.cmd = nil
	case <-time.After(15 * time.Second):
		n.kill()
	}
}

// alive reports whether the current process is still running.
func (n *hostileNode) alive() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// api posts to the node's HTTP API (bearer token), expecting 200.
func (n *hostileNode) api(ctx context.Context, token, path string) error {
	if n.http == "" {
		return errors.New("the node has no HTTP API address")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.http+"/api/v1"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// hostileConfig writes the node's configuration: spool and log in
// spoolDir, the world's DNS and port, one MX rule for the sink, short
// retries so that a drain does not wait for the production schedule.
func hostileConfig(path, spoolDir, token string, sink *hostileSink, maxSize int) error {
	for _, s := range []string{spoolDir} {
		if strings.ContainsAny(s, "\"\\\n\r") {
			return fmt.Errorf("directory %q: quotes, backslashes and line breaks are not supported here", s)
		}
	}
	cfg := fmt.Sprintf(`# written by penstock hostile
[server]
hostname = "penstock.hostile.test"
spool_dir = "%s"
log_dir = "%s"
use_shipped_rules = false
tls = "disabled"

[smtp]
listen = "127.0.0.1:0"
max_message_size = %d

[http]
listen = "127.0.0.1:0"
token = "%s"

[dns]
nameservers = ["%s"]
timeout = "2s"

[delivery]
port = %d
retry = ["1s", "2s"]
dsn = false

[[mx_rule]]
name = "hostile-sink"
mx = "*.sink.hostile.test"
max_connections = 4
max_messages_per_connection = 200
`, spoolDir, filepath.Join(spoolDir, "log"), maxSize, token, sink.world.Nameserver(), sink.world.Port)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// ---------------------------------------------------------- the clients

// hostileTarget is where the clients inject: the current node's SMTP
// address and a channel closed when it changes.
type hostileTarget struct {
	mu      sync.Mutex
	addr    string
	changed chan struct{}
}

func newHostileTarget() *hostileTarget { return &hostileTarget{changed: make(chan struct{})} }

func (t *hostileTarget) set(addr string) {
	t.mu.Lock()
	t.addr = addr
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func (t *hostileTarget) get() (string, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr, t.changed
}

// hostileInjector sends numbered messages from several clients and records
// each outcome.
type hostileInjector struct {
	run      string // prefix of the IDs: unique per run
	size     int
	n        int64
	next     atomic.Int64
	attempts atomic.Int64
	dropped  atomic.Int64

	mu       sync.Mutex
	acked    []string
	refused  map[int]int64
	lastCode int // the latest reply at a message's end
	problems []string
}

func newHostileInjector(run string, n, size int) *hostileInjector {
	return &hostileInjector{run: run, n: int64(n), size: size, refused: map[int]int64{}}
}

func (in *hostileInjector) id(i int64) string { return in.run + "-" + strconv.FormatInt(i, 10) }

func (in *hostileInjector) body(i int64) []byte {
	id := in.id(i)
	b := make([]byte, 0, in.size+128)
	b = fmt.Appendf(b, "From: <%s>\r\nTo: <u%d@%s>\r\nSubject: hostile %s\r\nMessage-ID: <%s@penstock.hostile.test>\r\n%s: %s\r\n\r\n",
		hostileSender, i, hostileDomain, id, id, hostileHeader, id)
	line := "Penstock under hostile conditions: every acknowledged message must arrive.\r\n"
	for len(b) < in.size {
		b = append(b, line...)
	}
	return b
}

// ackedIDs returns a copy of the acknowledged IDs.
func (in *hostileInjector) ackedIDs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.acked...)
}

func (in *hostileInjector) problem(format string, a ...any) {
	in.mu.Lock()
	if len(in.problems) < 20 {
		in.problems = append(in.problems, fmt.Sprintf(format, a...))
	}
	in.mu.Unlock()
}

// send injects message i over cl and records the outcome. It returns false
// when the connection is no longer usable.
func (in *hostileInjector) send(ctx context.Context, cl *smtpclient.Client, i int64) bool {
	in.attempts.Add(1)
	to := "u" + strconv.FormatInt(i, 10) + "@" + hostileDomain
	res, err := cl.Send(ctx, hostileSender, []string{to}, in.body(i))
	var se *smtpclient.Error
	switch {
	case err == nil && res.Rcpts[0].Err == nil && res.Data.Code == 250:
		in.mu.Lock()
		in.acked = append(in.acked, in.id(i))
		in.lastCode = 250
		in.mu.Unlock()
		return true
	case err == nil:
		errors.As(res.Rcpts[0].Err, &se)
	default:
		errors.As(err, &se)
	}
	code := 0
	if se != nil {
		code = se.Reply.Code
	}
	if code == 0 {
		// No reply: the node went away (killed) or the network failed.
		in.dropped.Add(1)
		return false
	}
	in.mu.Lock()
	in.refused[code]++
	in.lastCode = code
	in.mu.Unlock()
	if code >= 500 {
		in.problem("message %s refused for good: %s (a full disk or a restart must give 4xx)", in.id(i), se.Error())
	}
	return !cl.Broken()
}

// client injects until n messages were attempted, stop is closed, or ctx
// ends. It follows the target across restarts: after a failure it waits
// for a new address (or retries the same one after a pause when pause is
// set, for a node that stays up but refuses).
func (in *hostileInjector) client(ctx context.Context, t *hostileTarget, stop <-chan struct{}, pause time.Duration) {
	var cl *smtpclient.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		addr, changed := t.get()
		if cl == nil || cl.Broken() {
			if cl != nil {
				cl.Close()
				cl = nil
			}
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := smtpclient.Dial(dctx, addr, smtpclient.Options{EHLO: "client.hostile.test", TLS: smtpclient.TLSDisabled})
			cancel()
			if err != nil {
				if !in.wait(ctx, stop, changed, pause) {
					return
				}
				continue
			}
			cl = c
		}
		i := in.next.Add(1) - 1
		if i >= in.n {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ok := in.send(sctx, cl, i)
		cancel()
		if !ok {
			cl.Close()
			cl = nil
			if !in.wait(ctx, stop, changed, pause) {
				return
			}
		}
	}
}

// wait waits for a new target (or for pause, when set). False: give up.
func (in *hostileInjector) wait(ctx context.Context, stop <-chan struct{}, changed <-chan struct{}, pause time.Duration) bool {
	var after <-chan time.Time
	if pause > 0 {
		after = time.After(pause)
	}
	select {
	case <-changed:
		return true
	case <-after:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// runID names a run: the IDs it sends are unique across runs that share a
// sink.
func runID(seed int64) string { return "h" + strconv.FormatInt(seed&0xffffffff, 36) }
