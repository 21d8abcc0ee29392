package flow

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

type recorder struct {
	mu      sync.Mutex
	changes []Change
	locals  []LocalProblem
}

func (r *recorder) change(c Change)      { r.mu.Lock(); r.changes = append(r.changes, c); r.mu.Unlock() }
func (r *recorder) local(l LocalProblem) { r.mu.Lock(); r.locals = append(r.locals, l); r.mu.Unlock() }
func (r *recorder) states() (out []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.changes {
		out = append(out, c.Site+":"+c.To)
	}
	return out
}

func newTest(t *testing.T, cfg Config) (*Controller, *clock, *recorder) {
	t.Helper()
	ck := &clock{t: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	rec := &recorder{}
	c := New(cfg, Options{Now: ck.Now, OnChange: rec.change, OnLocal: rec.local})
	return c, ck, rec
}

func errEv(site string, t time.Time, code int, text string) Event {
	return Event{Time: t, Site: site, Err: true, Code: code, Text: text}
}

func okEv(site string, t time.Time) Event { return Event{Time: t, Site: site, OK: true} }

func TestNormalToBackoffOnErrorRatio(t *testing.T) {
	c, ck, rec := newTest(t, Config{})
	// Two errors, one success, ...: a 67% error ratio, never many in a
	// row. Below min_attempts (20) it stays normal.
	ev := func(i int) Event {
		if i%3 == 2 {
			return okEv("a", ck.Add(time.Second))
		}
		return errEv("a", ck.Add(time.Second), 451, "try later")
	}
	for i := 0; i < 19; i++ {
		c.Record(ev(i))
	}
	if d := c.Check("a", ck.Now()); d.State != Normal {
		t.Fatalf("state %s after 19 attempts, want normal", d.State)
	} else if strings.Contains(d.Detail, "0001-01-01") {
		t.Errorf("a site never out of normal has no since: %s", d.Detail)
	}
	c.Record(ev(19))
	d := c.Check("a", ck.Now())
	if d.State != Backoff || d.ConnFactor != 0.5 || d.RateFactor != 0.5 {
		t.Fatalf("got %+v, want backoff with factors 0.5", d)
	}
	if !strings.Contains(d.Detail, "14 errors in 20 attempts") {
		t.Errorf("detail lacks the numbers: %s", d.Detail)
	}
	if got := rec.states(); len(got) != 1 || got[0] != "a:backoff" {
		t.Errorf("changes %v", got)
	}
}

func TestErrorsInARow(t *testing.T) {
	c, ck, rec := newTest(t, Config{StepInterval: time.Second})
	// min_attempts 20: 5 in a row put the site in backoff, 10 suspend it,
	// although the window holds fewer than min_attempts attempts.
	for i := 0; i < 5; i++ {
		c.Record(Event{Time: ck.Add(3 * time.Second), Site: "dead", Err: true, Local: true, Text: "connection refused"})
	}
	if got := strings.Join(rec.states(), ","); got != "dead:backoff" {
		t.Fatalf("5 refusals in a row (paced, few attempts): %s", got)
	}
	for i := 0; i < 5; i++ {
		c.Record(Event{Time: ck.Add(3 * time.Second), Site: "dead", Err: true, Local: true, Text: "connection refused"})
	}
	if got := strings.Join(rec.states(), ","); got != "dead:backoff,dead:suspended" {
		t.Fatalf("10 refusals in a row: %s", got)
	}
	d := c.Check("dead", ck.Now())
	if !d.Hold {
		t.Fatalf("suspended but not held: %+v", d)
	}
	// Tick ends the suspension of a site without traffic.
	c.Tick(ck.Add(10 * time.Minute))
	if d := c.Peek("dead", ck.Now()); d.State != Backoff {
		t.Fatalf("after its suspension: %s", d.State)
	}
}

func TestLowErrorRatioStaysNormal(t *testing.T) {
	c, ck, _ := newTest(t, Config{})
	for i := 0; i < 100; i++ {
		if i%5 == 0 {
			c.Record(errEv("a", ck.Add(time.Second), 451, "x"))
		} else {
			c.Record(okEv("a", ck.Add(time.Second)))
		}
	}
	if d := c.Check("a", ck.Now()); d.State != Normal {
		t.Fatalf("20%% errors gave %s, want normal", d.State)
	}
}

func TestEscalationProbesAndRecovery(t *testing.T) {
	cfg := Config{Window: time.Minute, MinAttempts: 5, StepInterval: 10 * time.Second, SuspendFor: time.Minute,
		ProbeInterval: 15 * time.Second, RecoverAfter: 30 * time.Second}
	c, ck, rec := newTest(t, cfg)
	for i := 0; i < 5; i++ {
		c.Record(Event{Time: ck.Add(time.Second), Site: "a", Err: true, Local: true, Text: "connection refused"})
	}
	if d := c.Check("a", ck.Now()); d.State != Backoff {
		t.Fatalf("want backoff, got %s", d.State)
	}
	// Errors go on for a step interval: suspended.
	for i := 0; i < 10; i++ {
		c.Record(Event{Time: ck.Add(time.Second), Site: "a", Err: true, Local: true, Text: "connection refused"})
	}
	d := c.Check("a", ck.Now())
	if d.State != Suspended || !d.Hold || d.Probe {
		t.Fatalf("want suspended, held, no probe yet; got %+v", d)
	}
	if !strings.Contains(d.Diagnosis, "connection level") {
		t.Errorf("diagnosis %q", d.Diagnosis)
	}
	// One probe per probe interval, not more.
	ck.Add(15 * time.Second)
	if d := c.Check("a", ck.Now()); !d.Probe {
		t.Fatalf("probe due, got %+v", d)
	}
	if d := c.Check("a", ck.Now()); d.Probe {
		t.Fatal("a second probe in the same interval")
	}
	// The probe fails: still suspended.
	c.Record(Event{Time: ck.Now(), Site: "a", Err: true, Local: true, Text: "connection refused"})
	if d := c.Peek("a", ck.Now()); d.State != Suspended {
		t.Fatalf("failed probe left %s", d.State)
	}
	// The next probe delivers: back to backoff.
	ck.Add(15 * time.Second)
	if d := c.Check("a", ck.Now()); !d.Probe {
		t.Fatalf("second probe due, got %+v", d)
	}
	c.Record(okEv("a", ck.Now()))
	if d := c.Peek("a", ck.Now()); d.State != Backoff {
		t.Fatalf("after a delivered probe: %s, want backoff", d.State)
	}
	// Quiet: it ramps up in steps, one per step interval, then normal.
	var factors []float64
	for i := 0; i < 20; i++ {
		ck.Add(10 * time.Second)
		c.Record(okEv("a", ck.Now()))
		d := c.Peek("a", ck.Now())
		factors = append(factors, d.ConnFactor)
		if d.State == Normal {
			break
		}
	}
	if d := c.Peek("a", ck.Now()); d.State != Normal {
		t.Fatalf("no recovery: factors %v", factors)
	}
	for i := 1; i < len(factors); i++ {
		if factors[i] < factors[i-1] {
			t.Fatalf("factor went down while quiet: %v", factors)
		}
	}
	want := []string{"a:backoff", "a:suspended", "a:backoff", "a:normal"}
	if got := rec.states(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("changes %v, want %v", got, want)
	}
}

func TestPacingAfterErrorsInARow(t *testing.T) {
	want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, 1600 * time.Millisecond, 2 * time.Second, 2 * time.Second}
	for n, w := range want {
		if got := pace(n); got != w {
			t.Errorf("pace(%d) = %s, want %s", n, got, w)
		}
	}
	c, ck, _ := newTest(t, Config{})
	for i := 0; i < 5; i++ {
		c.Record(Event{Time: ck.Now(), Site: "dead", Err: true, Local: true, Text: "connection refused"})
	}
	if d := c.Check("dead", ck.Now()); !d.Hold || !d.Until.Equal(ck.Now().Add(400*time.Millisecond)) {
		t.Fatalf("5 refusals in a row: %+v", d)
	}
	c.Record(okEv("dead", ck.Add(time.Second)))
	if d := c.Check("dead", ck.Now()); d.Hold {
		t.Fatalf("a success did not end the pacing: %+v", d)
	}
}

func TestSuspensionDoublesAndEnds(t *testing.T) {
	cfg := Config{SuspendFor: time.Minute, MaxSuspend: 3 * time.Minute}
	c, _, _ := newTest(t, cfg)
	s := &siteState{}
	var got []time.Duration
	for i := 0; i < 4; i++ {
		got = append(got, c.suspendFor(s))
		s.suspends++
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute, 3 * time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("suspensions %v, want %v", got, want)
		}
	}
}

func TestPatternsActAtOnce(t *testing.T) {
	cfg := Config{Patterns: []Pattern{
		{Match: regexp.MustCompile(`\[TSS04\]`), Action: Backoff, Duration: 10 * time.Minute},
		{Match: regexp.MustCompile(`blocked`), Action: Suspended, Duration: 2 * time.Minute},
		{Match: regexp.MustCompile(`slow down`), Action: Backoff, Duration: time.Minute, Count: 3, Per: time.Minute},
	}}
	c, ck, rec := newTest(t, cfg)
	c.Record(errEv("y", ck.Add(time.Second), 421, "[TSS04] Messages from 1.2.3.4 temporarily deferred"))
	d := c.Check("y", ck.Now())
	if d.State != Backoff || !d.Until.Equal(ck.Now().Add(10*time.Minute)) {
		t.Fatalf("TSS04: %+v", d)
	}
	// The reason shows the pattern as written, not Go-quoted ("\\[TSS04\\]").
	rec.mu.Lock()
	reason := rec.changes[len(rec.changes)-1].Reason
	rec.mu.Unlock()
	if !strings.Contains(reason, "pattern `\\[TSS04\\]`") {
		t.Fatalf("reason of the change: %q", reason)
	}
	c.Record(errEv("b", ck.Add(time.Second), 554, "5.7.1 blocked"))
	d = c.Check("b", ck.Now())
	if d.State != Suspended || !d.Hold {
		t.Fatalf("suspend pattern: %+v", d)
	}
	// It lasts its duration; then backoff.
	ck.Add(2*time.Minute + time.Second)
	if d := c.Check("b", ck.Now()); d.State != Backoff {
		t.Fatalf("after the pattern's duration: %s", d.State)
	}
	// Threshold: 2 matches are not enough, 3 within the minute are.
	for i := 0; i < 2; i++ {
		c.Record(errEv("s", ck.Add(time.Second), 451, "please slow down"))
	}
	if d := c.Check("s", ck.Now()); d.State != Normal {
		t.Fatalf("threshold not reached but %s", d.State)
	}
	c.Record(errEv("s", ck.Add(time.Second), 451, "please slow down"))
	if d := c.Check("s", ck.Now()); d.State != Backoff {
		t.Fatalf("threshold reached but %s", d.State)
	}
}

func TestPatternsIgnoreOurOwnTexts(t *testing.T) {
	cfg := Config{Patterns: []Pattern{{Match: regexp.MustCompile(`dynamic flow control|TSS04`), Action: Suspended, Duration: time.Hour}}}
	c, ck, _ := newTest(t, cfg)
	// Local errors (no remote reply) carry our texts; they never match.
	c.Record(Event{Time: ck.Now(), Site: "x", Err: true, Local: true, Text: "Messages queued (dynamic flow control) [TSS04]"})
	if d := c.Check("x", ck.Now()); d.State != Normal {
		t.Fatalf("a pattern matched our own text: %s", d.State)
	}
}

func TestLocalProblemAcrossSites(t *testing.T) {
	cfg := Config{Window: time.Minute, MinAttempts: 5, StepInterval: time.Second}
	c, ck, rec := newTest(t, cfg)
	sites := []string{"s1", "s2", "s3", "s4", "s5"}
	// Every site errors: local.
	for round := 0; round < 10; round++ {
		for _, s := range sites {
			c.Record(Event{Time: ck.Add(200 * time.Millisecond), Site: s, Err: true, Local: true, Text: "i/o timeout"})
		}
	}
	on, lp := c.Local()
	if !on || lp.ErrorSites < 4 {
		t.Fatalf("local problem not raised: %v %+v", on, lp)
	}
	if len(rec.locals) == 0 || !rec.locals[0].Active {
		t.Fatal("no LocalProblem event")
	}
	for _, s := range sites {
		d := c.Peek(s, ck.Now())
		if d.State == Suspended {
			t.Fatalf("site %s suspended for a local problem", s)
		}
		if !strings.HasPrefix(d.Diagnosis, "local problem") {
			t.Fatalf("site %s diagnosis %q", s, d.Diagnosis)
		}
	}
}

// The local-problem text follows the numbers as they change ("failing for
// 4 domains" while 6 failed), and says nothing of sites when no site had
// attempts ("errors at 0 of 0 active sites").
func TestLocalProblemTextFollowsNumbers(t *testing.T) {
	cfg := Config{Window: time.Minute, MinAttempts: 5, LocalMinSites: 4}
	c, ck, _ := newTest(t, cfg)
	for i := 0; i < 4; i++ {
		c.Record(Event{Time: ck.Add(300 * time.Millisecond), Domain: fmt.Sprintf("d%d.test", i), DNS: true, Err: true, Local: true, Text: "SERVFAIL"})
	}
	c.Tick(ck.Add(2 * time.Second))
	on, lp := c.Local()
	if !on || !strings.Contains(lp.Detail, "failing for 4 domains") || strings.Contains(lp.Detail, "0 of 0") {
		t.Fatalf("%v %q", on, lp.Detail)
	}
	for i := 4; i < 6; i++ {
		c.Record(Event{Time: ck.Add(300 * time.Millisecond), Domain: fmt.Sprintf("d%d.test", i), DNS: true, Err: true, Local: true, Text: "SERVFAIL"})
	}
	c.Tick(ck.Add(2 * time.Second))
	if _, lp := c.Local(); !strings.Contains(lp.Detail, "failing for 6 domains") || !strings.Contains(lp.Detail, "resolver") {
		t.Fatalf("stale text: %q", lp.Detail)
	}
}

func TestReputationAtOneSite(t *testing.T) {
	cfg := Config{Window: time.Minute, MinAttempts: 5}
	c, ck, rec := newTest(t, cfg)
	for round := 0; round < 10; round++ {
		for _, s := range []string{"s1", "s2", "s3", "s4"} {
			c.Record(okEv(s, ck.Add(100*time.Millisecond)))
		}
		c.Record(errEv("bad", ck.Add(100*time.Millisecond), 421, "4.7.0 try again later"))
	}
	if on, _ := c.Local(); on {
		t.Fatal("local problem raised for one bad site")
	}
	if len(rec.locals) != 0 {
		t.Fatalf("LocalProblem events: %+v", rec.locals)
	}
	d := c.Peek("bad", ck.Now())
	if d.State != Backoff || !strings.HasPrefix(d.Diagnosis, "reputation") {
		t.Fatalf("bad site: %s %q", d.State, d.Diagnosis)
	}
}

func TestDNSFailuresEverywhereAreLocal(t *testing.T) {
	c, ck, rec := newTest(t, Config{})
	for i, d := range []string{"a.test", "b.test", "c.test", "d.test", "e.test"} {
		c.Record(Event{Time: ck.Add(time.Duration(i) * time.Second), Domain: d, DNS: true, Err: true, Local: true, Text: "SERVFAIL"})
	}
	if on, lp := c.Local(); !on || lp.DNSDomains != 5 {
		t.Fatalf("DNS failures: local=%v %+v", on, lp)
	}
	if len(rec.locals) != 1 {
		t.Fatalf("want one LocalProblem event, got %d", len(rec.locals))
	}
}

func TestResetAndSuspend(t *testing.T) {
	c, ck, rec := newTest(t, Config{})
	c.Suspend("a", time.Hour, "operator")
	if d := c.Check("a", ck.Now()); d.State != Suspended {
		t.Fatal("not suspended")
	}
	c.Reset("a")
	if d := c.Check("a", ck.Now()); d.State != Normal || d.Hold {
		t.Fatalf("after reset: %+v", d)
	}
	if got := rec.states(); strings.Join(got, ",") != "a:suspended,a:normal" {
		t.Fatalf("changes %v", got)
	}
}

func BenchmarkRecord(b *testing.B) {
	c := New(Config{}, Options{})
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.Record(Event{Time: now, Site: "site", OK: true})
	}
}

// Holds answers what Peek's Decision says of the hold at every stage of an
// escalation (unknown site, pacing, backoff, suspension, probe due,
// recovery), and like Peek it brings the state up to now: a suspension
// that ran out is reported ended by the call that notices.
func TestHoldsAgreesWithPeek(t *testing.T) {
	cfg := Config{Window: time.Minute, MinAttempts: 5, StepInterval: 10 * time.Second, SuspendFor: time.Minute,
		ProbeInterval: 15 * time.Second, RecoverAfter: 30 * time.Second}
	c, ck, rec := newTest(t, cfg)
	same := func(stage string) bool {
		t.Helper()
		h := c.Holds("a", ck.Now())
		if p := c.Peek("a", ck.Now()).Hold; h != p {
			t.Fatalf("%s: Holds %v, Peek's Hold %v", stage, h, p)
		}
		return h
	}
	if same("unknown site") {
		t.Fatal("a site flow control never saw is held")
	}
	refused := Event{Site: "a", Err: true, Local: true, Text: "connection refused"}
	for i := 0; i < 15; i++ {
		refused.Time = ck.Add(time.Second)
		c.Record(refused)
		same(fmt.Sprintf("after %d refusals", i+1))
	}
	if !same("suspended") {
		t.Fatal("a suspended site is not held")
	}
	ck.Add(15 * time.Second)
	same("probe due")
	ck.Add(2 * time.Minute) // the suspension ran out
	n := len(rec.states())
	c.Holds("a", ck.Now())
	if got := rec.states(); len(got) == n {
		t.Fatalf("Holds after the suspension ran out reported no change (changes %v)", got)
	}
	for i := 0; i < 20; i++ {
		c.Record(okEv("a", ck.Add(10*time.Second)))
		same(fmt.Sprintf("recovering, step %d", i))
	}
	if same("recovered") {
		t.Fatal("a recovered site is held")
	}
}

// A site quiet and healthy for a whole window is forgotten by Tick (a
// campaign's long tail of domains would keep one state each for good);
// one with a suspension to double next time is kept, and so is one in
// trouble. A forgotten site reads normal and starts afresh.
func TestQuietHealthySitesForgotten(t *testing.T) {
	c, ck, _ := newTest(t, Config{Window: time.Minute, MinAttempts: 5})
	for _, site := range []string{"quiet", "twice", "bad"} {
		for range 5 {
			c.Record(okEv(site, ck.Add(time.Second)))
		}
	}
	for range 5 {
		c.Record(errEv("bad", ck.Add(time.Second), 421, "4.7.0 try later"))
	}
	c.mu.Lock()
	c.sites["twice"].suspends = 1
	c.mu.Unlock()
	if d := c.Check("bad", ck.Now()); d.State == Normal {
		t.Fatalf("bad: %s after 5 errors in a row, want trouble", d.State)
	}
	known := func() []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.Sorted(maps.Keys(c.sites))
	}
	c.Tick(ck.Add(30 * time.Second))
	if got := known(); !slices.Equal(got, []string{"bad", "quiet", "twice"}) {
		t.Fatalf("half a window on: states %v, want all three", got)
	}
	c.Tick(ck.Add(time.Minute))
	if got := known(); slices.Contains(got, "quiet") || !slices.Contains(got, "twice") {
		t.Fatalf("a window and a half on: states %v, want quiet forgotten, twice kept", got)
	}
	if d := c.Check("quiet", ck.Now()); d.State != Normal {
		t.Errorf("a forgotten site reads %s, want normal", d.State)
	}
}
