package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// Unit tests of the scheduler: a real spool and delivery log in a temporary
// directory, a fake resolver, and a simulated receiving provider on
// loopback for the SMTP part (the queue's own client speaks to it).

// fakeResolver answers from maps: every domain's MX is mx.<domain>, every
// host is 127.0.0.1; a domain in temp fails temporarily.
type fakeResolver struct {
	mu   sync.Mutex
	temp map[string]bool
}

func (r *fakeResolver) LookupMX(ctx context.Context, domain string) (dns.MXResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.temp[domain] {
		return dns.MXResult{}, &dns.Error{Domain: domain, Kind: dns.Temporary, Err: io.ErrUnexpectedEOF}
	}
	return dns.MXResult{Hosts: []dns.MX{{Host: "mx." + domain, Pref: 10}}, TTL: time.Hour}, nil
}

func (r *fakeResolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
}

func (r *fakeResolver) LookupTXT(context.Context, string) ([]string, error) { return nil, nil }

// outcomes collects what the queue reports through Deps.Outcome.
type outcomes struct {
	mu   sync.Mutex
	list []Outcome
	addr []string
	ch   chan struct{}
}

func (o *outcomes) hook(m *spool.Message, i int, out Outcome, site string) {
	o.mu.Lock()
	o.list = append(o.list, out)
	o.addr = append(o.addr, m.Recipients[i].Addr)
	o.mu.Unlock()
	select {
	case o.ch <- struct{}{}:
	default:
	}
}

// wait returns once n outcomes were reported (bounded).
func (o *outcomes) wait(t testing.TB, n int) []Outcome {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		if len(o.list) >= n {
			out := append([]Outcome(nil), o.list...)
			o.mu.Unlock()
			return out
		}
		o.mu.Unlock()
		select {
		case <-o.ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d outcomes", n)
		}
	}
}

type fixture struct {
	q    *Queue
	sp   *spool.Spool
	prov *sim.Provider
	res  *fakeResolver
	out  *outcomes
}

func newFixture(t testing.TB, b sim.Behavior) *fixture {
	t.Helper()
	return newFixtureRules(t, b)
}

// newFixtureRules is newFixture with MX rules of the operator's before the
// shipped ones.
func newFixtureRules(t testing.TB, b sim.Behavior, own ...mxrule.Rule) *fixture {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(dir+"/spool", spool.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := events.Open(dir+"/log", events.Options{})
	if err != nil {
		t.Fatal(err)
	}
	prov, err := sim.NewProvider(b, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(prov.Addrs()[0], "127.0.0.1:")
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("provider address %q: %v", prov.Addrs()[0], err)
	}
	bc, err := bounce.New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := mxrule.New(own)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{sp: sp, prov: prov, res: &fakeResolver{temp: map[string]bool{}}, out: &outcomes{ch: make(chan struct{}, 1)}}
	f.q = New(&Config{Rules: rules, Port: p, TLSDefault: "opportunistic", Hostname: "penstock.test", Retry: []time.Duration{time.Hour}, DNSRetry: time.Hour},
		Deps{Spool: sp, Resolver: f.res, Quotas: quota.NewLocal(quota.RealClock()), Bounce: bc, Log: lg,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Outcome: f.out.hook})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.q.Close(ctx)
		prov.Close()
		lg.Close()
		sp.Close()
	})
	return f
}

// pendingEntry is the entry of m with n recipients not final. m is held
// by q for good: it need not be in the spool.
func pendingEntry(q *Queue, m *spool.Message, n int32) *entry {
	e := entryOf(m)
	e.pending = n
	st := q.stripeOf(e)
	st.mu.Lock()
	if st.held == nil {
		st.held = map[*entry]*heldMessage{}
	}
	st.held[e] = &heldMessage{m: m, users: 1}
	st.mu.Unlock()
	return e
}

// send spools a message and queues it.
func (f *fixture) send(t testing.TB, to ...string) *spool.Message {
	t.Helper()
	now := time.Now()
	m := &spool.Message{Sender: "sender@example.org", Received: now, Expires: now.Add(24 * time.Hour)}
	for _, a := range to {
		m.Recipients = append(m.Recipients, spool.Recipient{Addr: a})
	}
	body := []byte("From: sender@example.org\r\nSubject: test\r\n\r\nhello\r\n")
	m.Size = int64(len(body))
	if err := f.sp.Put(context.Background(), m, body); err != nil {
		t.Fatal(err)
	}
	f.q.Enqueue(m)
	return m
}

// waitStatus waits until the site of domain counts n recipients under status.
func (f *fixture) waitStatus(t *testing.T, domain, status string, n int) SiteView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok := f.q.Site(domain); ok && v.ByStatus[status] == n {
			return v
		}
		if time.Now().After(deadline) {
			v, _ := f.q.Site(domain)
			t.Fatalf("timed out waiting for %d recipients %q at %s; site: %+v", n, status, domain, v)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll of the queue's own view
	}
}

// Two recipients at one domain go out in one transaction and are final.
func TestDeliveredInOneTransaction(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.alpha.test"})
	f.send(t, "a@alpha.test", "b@alpha.test")
	outs := f.out.wait(t, 2)
	for i, o := range outs {
		if !o.Delivered || !o.Final || o.Code != 250 {
			t.Errorf("outcome %d: %+v, want delivered and final with 250", i, o)
		}
	}
	if st := f.prov.Stats(); st.Delivered != 1 || st.Connections != 1 {
		t.Errorf("provider saw %d messages on %d connections, want 1 on 1", st.Delivered, st.Connections)
	}
	// The outcome hook runs before the counters move: poll them (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for tot := f.q.Totals(); tot.Delivered != 2 || tot.Queued != 0; tot = f.q.Totals() {
		if time.Now().After(deadline) {
			t.Fatalf("totals: %+v, want 2 delivered and none queued", tot)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll of the queue's own counters
	}
}

// A message waiting for its retry is not kept decoded: once its update is
// durable the queue lets it go, and explain and the next attempt read it
// back from the spool as the attempt left it.
func TestWaitingMessageReadBack(t *testing.T) {
	var mu sync.Mutex
	deferring := true
	f := newFixture(t, sim.Behavior{Name: "mx.gamma.test", RcptReply: func(rcpt string) string {
		mu.Lock()
		defer mu.Unlock()
		if deferring {
			return "451 4.7.1 try again later"
		}
		return ""
	}})
	m := f.send(t, "later@gamma.test")
	if o := f.out.wait(t, 1)[0]; o.Final || o.Code != 451 {
		t.Fatalf("first attempt: %+v, want a temporary failure", o)
	}
	f.waitStatus(t, "gamma.test", StatusRetry, 1)
	s := f.q.findSite("gamma.test")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		e := s.jobs[0].e
		s.mu.Unlock()
		st := f.q.stripeOf(e)
		st.mu.Lock()
		h := st.held[e]
		st.mu.Unlock()
		if h == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message still held after its update")
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll: the update is durable asynchronously
	}
	ex := f.q.Explain(context.Background(), "later@gamma.test")
	if len(ex.Recipients) != 1 || ex.Recipients[0].ID != m.ID.String() || ex.Recipients[0].Attempts != 1 ||
		!strings.Contains(ex.Recipients[0].LastReply, "451") {
		t.Fatalf("explain recipients %+v, want later@ after one attempt with its 451", ex.Recipients)
	}
	mu.Lock()
	deferring = false
	mu.Unlock()
	if n, err := f.q.Retry("gamma.test", "test"); err != nil || n != 1 {
		t.Fatalf("Retry: %d, %v; want 1 recipient made due", n, err)
	}
	if o := f.out.wait(t, 2)[1]; !o.Delivered || !o.Final {
		t.Fatalf("after retry: %+v, want delivered", o)
	}
	if _, err := f.sp.Get(m.ID); !errors.Is(err, spool.ErrNotFound) {
		// The final update deletes the message; wait for it (bounded).
		for deadline := time.Now().Add(10 * time.Second); !errors.Is(err, spool.ErrNotFound); _, err = f.sp.Get(m.ID) {
			if time.Now().After(deadline) {
				t.Fatalf("delivered message still spooled: %v", err)
			}
			time.Sleep(5 * time.Millisecond) // a bounded poll of the spool
		}
	}
}

// A 5xx about the address is final and qualified; a 4xx is retried later
// with the retry status, explain says why, and the operator's retry makes
// it due at once.
func TestOutcomesApplied(t *testing.T) {
	var mu sync.Mutex
	deferring := true
	f := newFixture(t, sim.Behavior{Name: "mx.beta.test", RcptReply: func(rcpt string) string {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(rcpt, "gone@"):
			return "550 5.1.1 user unknown"
		case deferring:
			return "451 4.7.1 try again later"
		}
		return ""
	}})
	f.send(t, "gone@beta.test", "later@beta.test")
	outs := f.out.wait(t, 2)
	byAddr := map[string]Outcome{}
	f.out.mu.Lock()
	for i, a := range f.out.addr {
		byAddr[a] = outs[i]
	}
	f.out.mu.Unlock()
	if o := byAddr["gone@beta.test"]; !o.Final || o.Delivered || o.Verdict.Class != bounce.Hard || o.Verdict.Reason != bounce.UserUnknown {
		t.Errorf("550 5.1.1: %+v, want a final hard user-unknown bounce", o)
	}
	if o := byAddr["later@beta.test"]; o.Final || o.Code != 451 {
		t.Errorf("451: %+v, want a temporary failure", o)
	}
	v := f.waitStatus(t, "beta.test", StatusRetry, 1)
	if v.Queued != 1 {
		t.Errorf("site queues %d recipients, want 1", v.Queued)
	}
	if tot := f.q.Totals(); tot.Queued != 1 || tot.Sites != 1 {
		t.Errorf("totals: %d recipients queued at %d sites, want 1 at 1", tot.Queued, tot.Sites)
	}
	ex := f.q.Explain(context.Background(), "later@beta.test")
	if !strings.HasPrefix(ex.Verdict, StatusRetry) || !strings.Contains(ex.Verdict, "last reply from mx.beta.test") {
		t.Errorf("explain verdict %q, want the retry status with the last reply", ex.Verdict)
	}
	if len(ex.Recipients) != 1 || ex.Recipients[0].Status != StatusRetry {
		t.Errorf("explain recipients %+v, want later@ with %q", ex.Recipients, StatusRetry)
	}

	mu.Lock()
	deferring = false
	mu.Unlock()
	n, err := f.q.Retry("beta.test", "test")
	if err != nil || n != 1 {
		t.Fatalf("Retry: %d, %v; want 1 recipient made due", n, err)
	}
	outs = f.out.wait(t, 3)
	if o := outs[2]; !o.Delivered || !o.Final {
		t.Errorf("after retry: %+v, want delivered", o)
	}
}

// A temporary MX lookup failure holds the jobs with its exact status, and
// explain names it.
func TestMXLookupFailureHolds(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	f.res.mu.Lock()
	f.res.temp["gamma.test"] = true
	f.res.mu.Unlock()
	f.send(t, "x@gamma.test")
	deadline := time.Now().Add(10 * time.Second)
	for {
		ex := f.q.Explain(context.Background(), "gamma.test")
		if strings.HasPrefix(ex.Verdict, StatusMXFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("explain verdict %q, want %q", ex.Verdict, StatusMXFailed)
		}
		time.Sleep(5 * time.Millisecond) // a bounded poll of the queue's own view
	}
	if f.prov.Stats().Connections != 0 {
		t.Error("a connection was made for a domain whose MX lookup failed")
	}
}

// Operator actions: a suspended site sends nothing and says so; purge
// cancels its recipients, reported as final cancelled outcomes.
func TestSuspendAndPurge(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.delta.test", RcptReply: func(string) string { return "451 4.3.0 later" }})
	f.send(t, "one@delta.test")
	f.out.wait(t, 1)
	f.waitStatus(t, "delta.test", StatusRetry, 1)
	if err := f.q.Suspend("delta.test", 0, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.Retry("delta.test", "test"); err != nil {
		t.Fatal(err)
	}
	v := f.waitStatus(t, "delta.test", StatusSuspended, 1)
	if v.Wait == nil || v.Wait.Status != StatusSuspended {
		t.Errorf("site wait %+v, want %q", v.Wait, StatusSuspended)
	}
	if err := f.q.Suspend("nowhere.test", 0, "test"); !ErrUnknownSite(err) {
		t.Errorf("Suspend of an unknown site: %v, want the unknown-site error", err)
	}
	n, err := f.q.Purge("delta.test", "test")
	if err != nil || n != 1 {
		t.Fatalf("Purge: %d, %v; want 1", n, err)
	}
	outs := f.out.wait(t, 2)
	if o := outs[1]; !o.Final || !o.Cancelled {
		t.Errorf("purged: %+v, want final and cancelled", o)
	}
	if st := f.prov.Stats(); st.Connections != 1 {
		t.Errorf("provider saw %d connections, want 1 (none while suspended)", st.Connections)
	}
}

// step, white-box: an empty site ends its runner; a job due soon sleeps
// until it is; one due in a minute parks the site (the runner ends, a timer
// starts it again: park.go); an operator suspension records its status and
// sleeps until poked.
func TestSiteStep(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	s := newSite(f.q, "mx.step.test", []dns.MX{{Host: "mx.step.test", Pref: 10}})
	s.running = true
	if d, _ := s.step(); d >= 0 {
		t.Fatalf("empty site: step returned %s, want a negative duration (runner exits)", d)
	}
	s.running = true
	now := time.Now()
	m := &spool.Message{ID: 1, Expires: now.Add(time.Hour), Recipients: []spool.Recipient{{Addr: "a@step.test"}}}
	s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("step.test"), index: -1, due: dueOf(now.Add(parkAfter / 2))})
	if d, ch := s.step(); d <= 0 || d > parkAfter/2 || ch != nil {
		t.Errorf("job due in %s: step returned %s, want a sleep of at most that", parkAfter/2, d)
	}
	s.mu.Lock()
	s.jobs[0].due = dueOf(now.Add(time.Minute))
	s.mu.Unlock()
	if d, _ := s.step(); d >= 0 {
		t.Errorf("job due in a minute: step returned %s, want the runner to end (parked)", d)
	}
	s.mu.Lock()
	parked, running, armed := s.parked, s.running, s.park != nil
	s.mu.Unlock()
	if !parked || running || !armed {
		t.Errorf("job due in a minute: parked %v, running %v, timer armed %v; want parked with a timer", parked, running, armed)
	}
	s.stopPark()
	s.mu.Lock()
	s.parked, s.running = false, true // the test plays the runner again
	s.jobs[0].due = dueOf(now.Add(-time.Second))
	s.opSuspended = true
	s.mu.Unlock()
	if d, _ := s.step(); d != forever {
		t.Errorf("suspended: step returned %s, want forever", d)
	}
	if s.wait.Status != StatusSuspended {
		t.Errorf("suspended: wait %q, want %q", s.wait.Status, StatusSuspended)
	}
}

// claim, white-box: the earliest due job is taken; with an hourly quota of
// one, the second claim is refused with the hourly-quota status and the
// job goes back into the heap.
func TestSiteClaimRate(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	s := newSite(f.q, "mx.claim.test", []dns.MX{{Host: "mx.claim.test", Pref: 10}})
	s.running = true // the test plays the runner
	now := time.Now()
	for i := range 2 {
		m := &spool.Message{ID: spool.ID(i + 1), Expires: now.Add(time.Hour), Recipients: []spool.Recipient{{Addr: "a@claim.test"}}}
		s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("claim.test"), index: -1, due: dueOf(now.Add(time.Duration(i-5) * time.Second))})
	}
	rule, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := rule.Match([]string{"mx.claim.test"})
	r := *m.Rule
	r.MessagesPerHour = 1 // the rule's own hourly quota
	m.Rule = &r
	lim := limits{perHour: 1, match: m}
	j, _ := s.claim(lim, "conn|claim-test")
	if j == nil || j.e.id != 1 {
		t.Fatalf("first claim: %+v, want the earliest job", j)
	}
	j2, retryIn := s.claim(lim, "conn|claim-test")
	if j2 != nil || retryIn <= 0 {
		t.Fatalf("second claim within the hour: job %v, retry in %s; want none and a wait", j2, retryIn)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wait.Status != StatusHourlyQuota || len(s.jobs) != 1 || s.inflight != 1 {
		t.Errorf("after a refused claim: status %q, %d jobs queued, %d in flight; want %q, 1, 1",
			s.wait.Status, len(s.jobs), s.inflight, StatusHourlyQuota)
	}
}

// Mail arriving one message at a time while a session lingers goes out on
// that session's connection: the runner does not dial a second connection
// that races the lingering one for the job (before, the runner won every
// time here: 10 connections for 10 messages).
func TestLingeringSessionTakesNextJob(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.linger.test"})
	const msgs = 10
	for i := range msgs {
		if i > 0 {
			// The session is back from the last delivery and looking for
			// the next job.
			f.waitIdle(t, "linger.test")
		}
		f.send(t, "u"+strconv.Itoa(i)+"@linger.test")
		f.out.wait(t, i+1)
	}
	st := f.prov.Stats()
	if st.Connections != 1 || st.Delivered != msgs {
		t.Errorf("provider saw %d connections for %d messages, want 1 for %d", st.Connections, st.Delivered, msgs)
	}
	// The queue's own count of connections opened agrees with the
	// receiver's (bench and /metrics read it, whatever the receiver).
	opened := f.q.ConnectionsOpened()
	var sum uint64
	for _, n := range opened {
		sum += n
	}
	if sum != uint64(st.Connections) || len(opened) != 1 {
		t.Errorf("ConnectionsOpened %v, want %d under one rule", opened, st.Connections)
	}
}

// claim, white-box: a session with its connection open takes no job of a
// site the operator suspended (a lingering session used to send the job
// that Retry made due, so TestSuspendAndPurge failed under load).
func TestClaimSuspendedSite(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	s := newSite(f.q, "mx.susp.test", []dns.MX{{Host: "mx.susp.test", Pref: 10}})
	s.running = true // the test plays the runner
	now := time.Now()
	m := &spool.Message{ID: 1, Expires: now.Add(time.Hour), Recipients: []spool.Recipient{{Addr: "a@susp.test"}}}
	s.push(&job{e: pendingEntry(s.q, m, 1), rcpts: []int{0}, domain: unique.Make("susp.test"), index: -1, due: dueOf(now.Add(-time.Second))})
	s.mu.Lock()
	s.opSuspended = true
	s.mu.Unlock()
	if j, _ := s.claim(limits{}, ""); j != nil {
		t.Fatal("a suspended site's job was claimed")
	}
	s.mu.Lock()
	s.opSuspended = false
	s.mu.Unlock()
	if j, _ := s.claim(limits{}, ""); j == nil {
		t.Fatal("the job was not claimed once the site was resumed")
	}
}

// Explain reads a claimed job's recipients under the site's lock, the
// lock a session narrows them under (keepRcpts). Run side by side, the
// race detector found explain reading them after unlocking.
func TestExplainWhileSessionNarrows(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	s := newSite(f.q, "mx.race.test", []dns.MX{{Host: "mx.race.test", Pref: 10}})
	s.running = true // the test plays the runner and the session
	f.q.mu.Lock()
	f.q.sites[s.key] = s
	f.q.mu.Unlock()
	now := time.Now()
	m := &spool.Message{ID: 1, Expires: now.Add(time.Hour), Recipients: []spool.Recipient{{Addr: "a@race.test"}, {Addr: "b@race.test"}}}
	s.push(&job{e: pendingEntry(s.q, m, 2), rcpts: []int{0, 1}, domain: unique.Make(s.key), index: -1, due: dueOf(now.Add(-time.Second))})
	j, _ := s.claim(limits{}, "")
	if j == nil {
		t.Fatal("no job claimed")
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				s.keepRcpts(j, []int{0, 1})
			}
		}
	}()
	for range 200 {
		if ex := f.q.Explain(context.Background(), s.key); len(ex.Recipients) != 2 {
			t.Errorf("explain lists %d recipients, want 2", len(ex.Recipients))
			break
		}
	}
	close(stop)
	<-done
}

// A site's lock is never held while waiting for the queue's: resolve holds
// q.mu while siteFor takes the lock of the site a domain joins, so a push,
// refuse or release that asked q.mu whether the queue was closed, under
// the site's lock, deadlocked with it, and every later Enqueue with them
// (a campaign upload of TestDelivery100k hung so). The test holds q.mu as
// resolve does, and each must finish meanwhile.
func TestSiteLockNotHeldForQueueLock(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	now := time.Now()
	later := now.Add(time.Hour)
	jobAt := func(id spool.ID, domain string, due time.Time) *job {
		m := &spool.Message{ID: id, Expires: later.Add(time.Hour), Recipients: []spool.Recipient{{Addr: "a@" + domain}}}
		return &job{e: pendingEntry(f.q, m, 1), rcpts: []int{0}, domain: unique.Make(domain), index: -1, due: dueOf(due)}
	}
	mx := func(host string) dns.MXResult { return dns.MXResult{Hosts: []dns.MX{{Host: host, Pref: 10}}} }
	f.q.mu.Lock()
	pushed := f.q.siteFor(mx("mx.push.test"), "", tlspolicy.Policy{})
	refused := f.q.siteFor(mx("mx.refuse.test"), "", tlspolicy.Policy{})
	released := f.q.siteFor(mx("mx.release.test"), "", tlspolicy.Policy{})
	f.q.mu.Unlock()
	// A session's claimed job comes back after the site's runner found the
	// heap empty and exited: refuse and release start it again.
	claimed := func(s *site, id spool.ID, domain string) *job {
		s.running = true // the test plays the runner
		s.push(jobAt(id, domain, now.Add(-time.Second)))
		j, _ := s.claim(limits{}, "")
		if j == nil {
			t.Fatalf("%s: no job claimed", s.key)
		}
		s.mu.Lock()
		s.running = false
		j.due = dueOf(later) // put back, it waits: no session dials
		s.mu.Unlock()
		return j
	}
	rj := claimed(refused, 2, "refuse.test")
	lj := claimed(released, 3, "release.test")

	f.q.mu.Lock() // as resolve holds it in siteFor
	done := make(chan struct{})
	go func() {
		defer close(done)
		pushed.push(jobAt(1, "push.test", later))
		refused.refuse(rj, Wait{Status: StatusHourlyQuota})
		released.release(lj, true)
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	select {
	case <-done:
	case <-deadline.C:
		f.q.mu.Unlock()
		<-done
		t.Fatal("push, refuse or release waited for q.mu under its site's lock: with resolve in siteFor, both wait for good")
	}
	// What resolve does next, still holding q.mu: take each site's lock.
	for _, s := range []*site{pushed, refused, released} {
		f.q.siteFor(mx(s.key), "", tlspolicy.Policy{})
	}
	f.q.mu.Unlock()
	// Someone runs each job when it is due: a runner, or the timer of a
	// site parked because the job is an hour away (park.go).
	for _, s := range []*site{pushed, refused, released} {
		s.mu.Lock()
		n, running, parked := len(s.jobs), s.running, s.parked
		s.mu.Unlock()
		if n != 1 || !running && !parked {
			t.Errorf("%s: %d jobs queued, runner started %v, parked %v; want 1 and one of the two", s.key, n, running, parked)
		}
	}
}

// sharedMX answers one MX host for every domain: all share one site.
type sharedMX struct{ fakeResolver }

func (*sharedMX) LookupMX(ctx context.Context, domain string) (dns.MXResult, error) {
	return dns.MXResult{Hosts: []dns.MX{{Host: "mx.shared.test", Pref: 10}}, TTL: time.Hour}, nil
}

// Domains of one site resolved while their mail keeps arriving: each
// resolve joins the site under q.mu while others push to it. Before
// isClosed stopped taking q.mu, this hung within 100 rounds (5 runs of 5).
func TestEnqueueWhileDomainsJoinOneSite(t *testing.T) {
	rules, err := mxrule.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour) // nothing is due: no session dials
	const rounds, domains, perDomain, senders = 300, 40, 50, 4
	for round := range rounds {
		q := New(&Config{Rules: rules, Hostname: "penstock.test"}, Deps{Resolver: &sharedMX{}, Quotas: quota.NewLocal(quota.RealClock()),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var wg sync.WaitGroup
			for g := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perDomain {
						for d := g; d < domains; d += senders {
							q.Enqueue(&spool.Message{ID: spool.ID(i*domains + d + 1),
								Recipients: []spool.Recipient{{Addr: "u@d" + strconv.Itoa(d) + ".test", NextAttempt: later}}})
						}
					}
				}()
			}
			wg.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			q.Close(ctx) // waits for the resolvers too
		}()
		deadline := time.NewTimer(30 * time.Second)
		select {
		case <-done:
			deadline.Stop()
		case <-deadline.C:
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("round %d: Enqueue or Close hung\n%s", round, b.String())
		}
	}
}

// Mail queued after Close starts nothing: no MX lookup goroutine, no
// runner. Before, a new domain's lookup was started (and counted in the
// WaitGroup) after Close had begun; with nothing else running, that Add
// raced Close's Wait.
func TestEnqueueAfterCloseStartsNothing(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.closed.test"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	f.send(t, "a@late.test")
	f.q.mu.Lock()
	d := f.q.domains["late.test"]
	started := d != nil && d.resolving
	f.q.mu.Unlock()
	if started {
		t.Error("an MX lookup was started after Close")
	}
	if err := f.q.Close(ctx); err != nil { // waits for anything started
		t.Fatal(err)
	}
	if st := f.prov.Stats(); st.Connections != 0 {
		t.Errorf("%d connections after Close, want none", st.Connections)
	}
}

// A message goes as one BDAT chunk to a receiver that offers CHUNKING, and
// after DATA when its MX rule says chunking = false.
func TestChunkingByRule(t *testing.T) {
	f := newFixture(t, sim.Behavior{Name: "mx.chunk.test"})
	f.send(t, "a@chunk.test")
	f.out.wait(t, 1)
	if st := f.prov.Stats(); st.Delivered != 1 || st.Chunked != 1 {
		t.Errorf("provider got %d messages, %d by BDAT; want 1 by BDAT", st.Delivered, st.Chunked)
	}

	f = newFixtureRules(t, sim.Behavior{Name: "mx.chunk.test"},
		mxrule.Rule{Name: "broken-bdat", Patterns: []string{"*.chunk.test"}, NoChunking: true})
	f.send(t, "a@chunk.test")
	f.out.wait(t, 1)
	if st := f.prov.Stats(); st.Delivered != 1 || st.Chunked != 0 {
		t.Errorf("chunking = false: provider got %d messages, %d by BDAT; want 1 by DATA", st.Delivered, st.Chunked)
	}
}

// A site's deliveries of the last hour: none before the first (no ring
// is made), each minute's count while it is under an hour old, and a
// minute's slot counted afresh when it comes round again.
func TestDeliveredLastHour(t *testing.T) {
	var st siteStats
	t0 := time.Date(2026, 12, 8, 1, 0, 30, 0, time.UTC)
	if n := st.hour.total(t0); n != 0 || st.hour != nil {
		t.Fatalf("before any delivery: %d, ring made %v; want 0 and none", n, st.hour != nil)
	}
	st.addHour(t0)
	st.addHour(t0.Add(10 * time.Second))
	st.addHour(t0.Add(30 * time.Minute))
	for _, c := range []struct {
		at   time.Duration
		want int64
	}{{0, 2}, {30 * time.Minute, 3}, {59 * time.Minute, 3}, {61 * time.Minute, 1}, {91 * time.Minute, 0}} {
		if n := st.hour.total(t0.Add(c.at)); n != c.want {
			t.Errorf("%s after the first: %d in the last hour, want %d", c.at, n, c.want)
		}
	}
	st.addHour(t0.Add(time.Hour)) // the first's slot, an hour on
	if n := st.hour.total(t0.Add(time.Hour)); n != 2 {
		t.Errorf("an hour on, one more: %d, want 2 (the two of t0 gone, 30 min's and this one)", n)
	}
}
