package mta_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/sim"
)

// harness is one Penstock node against a simulated world, all on loopback.
type harness struct {
	t     *testing.T
	world *sim.World
	cfg   *config.Config
	m     *mta.MTA
	opts  mta.Options // Logger is set by start
}

// testConfig is a configuration pointing at the world, with short retries.
func testConfig(t *testing.T, w *sim.World, dir string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Server.Hostname = "penstock.test"
	cfg.Server.SpoolDir = filepath.Join(dir, "spool")
	cfg.Server.LogDir = filepath.Join(dir, "log")
	cfg.DNS.Nameservers = []string{w.Nameserver()}
	cfg.DNS.Timeout = config.Duration(2 * time.Second)
	// The simulated world's canary: a name that must always resolve, so
	// that NXDOMAIN answers are believed while the world's DNS is sane.
	w.DNS.SetMX("canary.sim.test", sim.MXRecord{Pref: 10, Host: "mx.canary.sim.test"})
	w.DNS.SetA("mx.canary.sim.test", "127.0.0.1")
	cfg.DNS.Canaries = []string{"canary.sim.test"}
	cfg.Delivery.Port = w.Port
	cfg.Delivery.Retry = []config.Duration{config.Duration(200 * time.Millisecond)}
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	// Tests send from domains nobody serves: no DSNs back to them, except
	// in the tests of DSNs.
	cfg.Delivery.DSN = false
	return cfg
}

func newWorld(t *testing.T) *sim.World {
	t.Helper()
	w, err := sim.NewWorld()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func newHarness(t *testing.T, w *sim.World, mutate func(*config.Config)) *harness {
	t.Helper()
	cfg := testConfig(t, w, t.TempDir())
	if mutate != nil {
		mutate(cfg)
	}
	h := &harness{t: t, world: w, cfg: cfg}
	h.start()
	return h
}

func (h *harness) start() {
	h.t.Helper()
	if err := h.cfg.Validate(); err != nil {
		h.t.Fatalf("test config invalid: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	opts := h.opts
	opts.Logger = logger
	m, err := mta.New(h.cfg, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.m = m
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.m == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.m.Shutdown(ctx); err != nil {
		h.t.Logf("shutdown: %v", err)
	}
	h.m = nil
}

// send injects one message over SMTP.
func (h *harness) send(from string, to []string, body string) error {
	return sendSMTP(h.m.SMTPAddr(), from, to, body)
}

func sendSMTP(addr, from string, to []string, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	return transact(c, from, to, body)
}

// transact runs one mail transaction on c and quits.
func transact(c *smtp.Client, from string, to []string, body string) error {
	defer c.Close()
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			return err
		}
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(wc, body); err != nil {
		return err
	}
	if err := wc.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func message(from, to, subject string, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\n", from, to, subject, subject)
	line := strings.Repeat("x", 76) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// sendMany injects n messages (one recipient each, rcpt(i)) over c
// concurrent sessions, failing the test on any error.
func (h *harness) sendMany(n, c int, rcpt func(i int) string) {
	h.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				to := rcpt(i)
				if err := h.send("sender@penstock.test", []string{to}, message("sender@penstock.test", to, fmt.Sprintf("m%d", i), 2048)); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		h.t.Fatal(err)
	}
}

// callTimeout is how long an API call may take before the test gives up on
// it: three minutes (a 100k-recipient upload takes seconds), less when the
// test binary's -timeout comes first, so that the stacks are taken by the
// test, which names the call, rather than by that timeout's panic.
func callTimeout(t *testing.T) time.Duration {
	d := 3 * time.Minute
	if end, ok := t.Deadline(); ok {
		// Leave time for the dump and the cleanup before the panic.
		d = min(d, time.Until(end)*9/10)
	}
	return max(d, time.Second)
}

// dumpGoroutines writes every goroutine's stack to a file that outlives the
// test (t.TempDir is removed at cleanup) and returns a note naming it for
// the failure message. It names the file on stderr at once too: a
// deadlocked MTA can also hang the cleanup (Shutdown waits for its
// goroutines), and a test's log is printed only when the test ends.
func dumpGoroutines(t *testing.T) string {
	f, err := os.CreateTemp("", "penstock-goroutines-*.txt")
	if err != nil {
		return fmt.Sprintf("goroutines not written: %v", err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s at %s\n\n", t.Name(), time.Now().UTC().Format(time.RFC3339Nano))
	if err := pprof.Lookup("goroutine").WriteTo(f, 2); err != nil {
		return fmt.Sprintf("goroutines not written to %s: %v", f.Name(), err)
	}
	fmt.Fprintf(os.Stderr, "%s: every goroutine's stack is in %s\n", t.Name(), f.Name())
	return "every goroutine's stack is in " + f.Name()
}

// waitFor polls cond on events the test cannot subscribe to (the state of
// another package's counters), bounded by d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waitForEvery(t, d, 20*time.Millisecond, what, cond)
}

// waitForEvery is waitFor with the polling interval given (for conditions
// that cost something to check).
func waitForEvery(t *testing.T, d, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		<-tick.C
	}
}

func waitDelivered(t *testing.T, p *sim.Provider, n int64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := p.WaitMessages(ctx, n); err != nil {
		t.Fatalf("provider got %d of %d messages: %v", p.Delivered(), n, err)
	}
}

// records reads the delivery log (after a flush).
func (h *harness) records() []events.Record {
	h.t.Helper()
	if h.m != nil {
		h.m.Log.Flush()
	}
	return readLog(h.t, h.cfg.Server.LogDir)
}

func readLog(t *testing.T, dir string) []events.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	var out []events.Record
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r events.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: bad JSON line %q: %v", f, sc.Text(), err)
			}
			out = append(out, r)
		}
		fh.Close()
	}
	return out
}

// countType counts records of a type, leaving out those of the DSNs that
// Penstock sends to senders (null sender): tests count their own mail.
func countType(recs []events.Record, typ events.Type) int {
	n := 0
	for _, r := range recs {
		if r.Type == typ && !(r.ID != "" && r.Sender == "") {
			n++
		}
	}
	return n
}

// api calls the node's HTTP API and decodes the JSON answer.
func (h *harness) api(method, path string, out any) int {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://"+h.m.HTTPAddr()+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			h.t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// dialFrom makes an SMTP connection from a given local address.
func dialFrom(local, remote string) (*smtp.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", remote)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(remote)
	return smtp.NewClient(conn, host)
}
