package warmup

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/redis/go-redis/v9"
)

// clock is a fake time that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const day = time.Hour // accelerated days

func newTracker(t *testing.T, c *clock, path string, sh Shared, plans ...Plan) *Tracker {
	t.Helper()
	tr, err := New(plans, Deps{Now: c.Now, Day: day, Path: path, Shared: sh,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Throttle: func(s string) bool { return strings.Contains(s, "TS01") }})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func yahooPlan() Plan {
	return Plan{Source: "ip3", IP: "127.0.0.3", Rule: "yahoo", Schedule: []int{10, 20, 50}}
}

// sendDay takes until refused (bounded) and reports each message as
// delivered or deferred: deferEvery > 0 defers one in deferEvery.
func sendDay(t *testing.T, tr *Tracker, c *clock, deferEvery int, text string) int {
	t.Helper()
	n := 0
	for range 1000 {
		v := tr.Take("ip3", "yahoo", []string{"mx.yahoo.test"})
		if !v.OK {
			break
		}
		n++
		kind := Delivered
		if deferEvery > 0 && n%deferEvery == 0 {
			kind = Deferred
		}
		tr.Observe(Outcome{Time: c.Now(), SourceIP: "127.0.0.3", Rule: "yahoo", Kind: kind, Text: text})
	}
	return n
}

func TestScheduleAdvancesHoldsAndStepsBack(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	tr := newTracker(t, c, "", nil, yahooPlan())
	p := yahooPlan()
	// Day 1, healthy: the day's volume exactly, then step 2.
	if n := sendDay(t, tr, c, 0, ""); n != p.Schedule[0] {
		t.Fatalf("day 1 sent %d, want the schedule's %d", n, p.Schedule[0])
	}
	c.Add(day)
	st := tr.Statuses()[0]
	if st.Step != 2 || st.Limit != p.Schedule[1] || st.LastDecisions[0].Action != Advance {
		t.Fatalf("after a healthy day: %+v", st)
	}
	// Day 2: 1 deferral in 5 = 0.2, over the 0.1 threshold, under twice: hold.
	if n := sendDay(t, tr, c, 5, "421 try later"); n != p.Schedule[1] {
		t.Fatalf("day 2 sent %d", n)
	}
	c.Add(day)
	st = tr.Statuses()[0]
	if st.Step != 2 || st.LastDecisions[1].Action != Hold || !strings.Contains(st.LastDecisions[1].Reason, "deferral ratio 0.20") {
		t.Fatalf("after an unhealthy day: %+v", st.LastDecisions)
	}
	// Day 3: every deferral a throttle reply; 1 in 2 deferred: a bad day.
	sendDay(t, tr, c, 2, "421 [TS01] Messages from 127.0.0.3 temporarily deferred")
	c.Add(day)
	st = tr.Statuses()[0]
	last := st.LastDecisions[2]
	if st.Step != 1 || last.Action != StepBack || last.Health.Throttles != 10 {
		t.Fatalf("after a bad day: step %d, %+v", st.Step, last)
	}
	// A day with no mail holds.
	c.Add(day)
	if st = tr.Statuses()[0]; st.Step != 1 || st.LastDecisions[3].Action != Hold {
		t.Fatalf("after an empty day: %+v", st.LastDecisions[3])
	}
}

func TestComplaintsHold(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	tr := newTracker(t, c, "", nil, yahooPlan())
	sendDay(t, tr, c, 0, "")
	for range 2 { // over the default of 1, not over twice
		tr.Observe(Outcome{Time: c.Now(), Rule: "yahoo", Kind: Complaint})
	}
	c.Add(day)
	st := tr.Statuses()[0]
	if st.Step != 1 || st.LastDecisions[0].Health.Complaints != 2 || st.LastDecisions[0].Action != Hold {
		t.Fatalf("%+v", st.LastDecisions)
	}
}

func TestOtherSourcesAndGroupsUnlimited(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	tr := newTracker(t, c, "", nil, yahooPlan(),
		Plan{Source: "ip2", IP: "127.0.0.2", MX: []string{"*.outlook.test"}, Schedule: []int{1}})
	if v := tr.Take("ip2", "other", []string{"mx.yahoo.test"}); !v.OK || v.Warming {
		t.Fatalf("ip2 to yahoo: %+v", v)
	}
	if v := tr.Take("ip3", "gmail", []string{"mx.gmail.test"}); !v.OK || v.Warming {
		t.Fatalf("ip3 to gmail: %+v", v)
	}
	if v := tr.Take("ip2", "default", []string{"a.outlook.test"}); !v.OK || !v.Warming {
		t.Fatalf("ip2 to outlook first: %+v", v)
	}
	v := tr.Take("ip2", "default", []string{"a.outlook.test"})
	if v.OK || v.Count != 1 || v.Limit != 1 || !v.Until.Equal(c.Now().Add(day)) {
		t.Fatalf("ip2 to outlook second: %+v", v)
	}
	if d := v.Detail(); !strings.Contains(d, "1 of 1") || !strings.Contains(d, "ip2") {
		t.Fatalf("detail %q", d)
	}
}

func TestHourlySpread(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	p := yahooPlan()
	p.Schedule = []int{48}
	p.HourlySpread = true
	tr := newTracker(t, c, "", nil, p)
	if n := sendDay(t, tr, c, 0, ""); n != 2 {
		t.Fatalf("hour 1 sent %d, want 48/24 = 2", n)
	}
	v := tr.Check("ip3", "yahoo", nil)
	if want := c.Now().Add(day / 24); v.OK || !v.Until.Equal(want) {
		t.Fatalf("until %v, want %v", v.Until, want)
	}
	c.Add(3 * day / 24) // hour 4: an unused hour carries over
	if n := sendDay(t, tr, c, 0, ""); n != 6 {
		t.Fatalf("by hour 4 sent %d more, want 6", n)
	}
}

func TestRestartKeepsState(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "warmup.json")
	tr := newTracker(t, c, path, nil, yahooPlan())
	sendDay(t, tr, c, 0, "")
	c.Add(day)
	sendDay(t, tr, c, 0, "")
	tr.Tick() // saves
	tr2 := newTracker(t, c, path, nil, yahooPlan())
	st := tr2.Statuses()[0]
	if st.Step != 2 || st.Sent != 20 || st.Day != 2 || len(st.LastDecisions) != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	if v := tr2.Take("ip3", "yahoo", nil); v.OK {
		t.Fatalf("the day's volume was spent before the restart: %+v", v)
	}
}

func TestClusterSharesTheDay(t *testing.T) {
	srv := redistest.Start(t)
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	rc := func() *redis.Client {
		cl := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
		t.Cleanup(func() { cl.Close() })
		return cl
	}
	a := newTracker(t, c, "", NewRedis(rc(), "t:"), yahooPlan())
	b := newTracker(t, c, "", NewRedis(rc(), "t:"), yahooPlan())
	n := 0
	for i := range 100 {
		tr := a
		if i%2 == 1 {
			tr = b
		}
		if tr.Take("ip3", "yahoo", nil).OK {
			n++
			tr.Observe(Outcome{Time: c.Now(), SourceIP: "127.0.0.3", Rule: "yahoo", Kind: Delivered})
		}
	}
	if n != 10 {
		t.Fatalf("two nodes sent %d, want the day's 10 together", n)
	}
	c.Add(day)
	sa, sb := a.Statuses()[0], b.Statuses()[0]
	if sa.Step != 2 || sb.Step != 2 || sa.Yesterday.Delivered != 10 {
		t.Fatalf("a %+v\nb %+v", sa, sb)
	}
	// Redis away: each node counts its share of the day's 20 (two live
	// nodes: 10) locally, and says so.
	a.deps.Nodes = func() int { return 2 }
	srv.Stop()
	n = 0
	for range 30 {
		if a.Take("ip3", "yahoo", nil).OK {
			n++
		}
	}
	if n != 10 || !a.Degraded() || !a.Statuses()[0].Degraded {
		t.Fatalf("degraded: node a sent %d, want its share 10; degraded %v", n, a.Degraded())
	}
	// Redis back: within a probe interval the count is shared again.
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for a.Degraded() && time.Now().Before(deadline) {
		a.Check("ip3", "yahoo", nil)
		time.Sleep(50 * time.Millisecond) // a bounded poll of the probe, not a synchronisation
	}
	if a.Degraded() {
		t.Fatal("still degraded 10 s after Redis came back")
	}
}

// A complaint names only its recipient: it counts for the pair that
// delivered to that address, the next day too.
func TestComplaintFoundByRecipient(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	tr := newTracker(t, c, "", nil, yahooPlan(), Plan{Source: "ip2", IP: "127.0.0.2", Rule: "yahoo", Schedule: []int{5}})
	tr.Take("ip3", "yahoo", nil)
	tr.Observe(Outcome{Time: c.Now(), SourceIP: "127.0.0.3", Rule: "yahoo", Kind: Delivered, Recipient: "Ann@yahoo.test"})
	c.Add(day)
	for range 3 { // over twice the default threshold of 1
		tr.Observe(Outcome{Time: c.Now(), Kind: Complaint, Recipient: "ann@yahoo.test"})
	}
	tr.Observe(Outcome{Time: c.Now(), Kind: Complaint, Recipient: "stranger@yahoo.test"})
	for _, st := range tr.Statuses() {
		want := int64(0)
		if st.Source == "ip3" {
			want = 3
		}
		if st.Today.Complaints != want {
			t.Errorf("%s: %d complaints, want %d", st.Source, st.Today.Complaints, want)
		}
	}
	c.Add(day)
	if st := tr.Statuses()[0]; st.LastDecisions[1].Action != StepBack {
		t.Fatalf("ip3 after 3 complaints: %+v", st.LastDecisions)
	}
}

// TestClusterCountNeverOverLimit: a node refused the day's last message
// must not show the others (or an operator) a count over the limit, not
// even for a moment. Taking past the limit and giving it back in a second
// call did: a node's status read in between said "sent 7" of 6.
func TestClusterCountNeverOverLimit(t *testing.T) {
	srv := redistest.Start(t)
	c := &clock{t: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}
	cl := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", srv.Port)})
	t.Cleanup(func() { cl.Close() })
	sh := NewRedis(cl, "t:")
	a := newTracker(t, c, "", sh, yahooPlan())
	b := newTracker(t, c, "", NewRedis(cl, "t:"), yahooPlan())
	if n := sendDay(t, a, c, 0, ""); n != 10 {
		t.Fatalf("node a sent %d, want the day's 10", n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 300 { // refused, every one
			if a.Take("ip3", "yahoo", nil).OK {
				t.Error("a take past the day's volume was granted")
				return
			}
		}
	}()
	most := int64(0)
	for i := 0; i < 300; i++ {
		select {
		case <-done:
			i = 300
		default:
		}
		most = max(most, b.Statuses()[0].Sent)
	}
	<-done
	if most != 10 {
		t.Fatalf("node b saw %d sent of the day's 10 while node a was refused", most)
	}
}
