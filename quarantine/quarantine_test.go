package quarantine

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// countingKV counts writes, to prove the paths that must not write do not.
type countingKV struct {
	spool.KV
	puts, deletes atomic.Int64
}

func (k *countingKV) Put(key string, val []byte) error {
	k.puts.Add(1)
	return k.KV.Put(key, val)
}

func (k *countingKV) Delete(key string) error {
	k.deletes.Add(1)
	return k.KV.Delete(key)
}

func openSpool(t testing.TB, dir string, noSync bool) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{NoSync: noSync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

type fixture struct {
	sp  *spool.Spool
	kv  *countingKV
	clk *clock
	s   *Store
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	f := &fixture{sp: openSpool(t, t.TempDir(), false), clk: newClock()}
	f.kv = &countingKV{KV: f.sp.KV(Bucket)}
	s, err := New(f.kv, cfg, f.clk.now)
	if err != nil {
		t.Fatal(err)
	}
	f.s = s
	return f
}

func hard(text string) Failure {
	return Failure{Code: 550, Enhanced: "5.1.1", Text: text, Reason: "user_unknown", Class: "hard", Site: "gmail", MessageID: "m1"}
}

func soft(text string) Failure {
	return Failure{Code: 452, Enhanced: "4.2.2", Text: text, Reason: "mailbox_full", Class: "soft", Site: "yahoo", MessageID: "m2"}
}

func TestTransitions(t *testing.T) {
	const day = 24 * time.Hour
	type step struct {
		wait    time.Duration // clock moves before the step
		op      string        // hard soft ignored delivered complaint check, or a Status to Add
		want    Status        // "" = no entry
		errors  int
		changed bool // for hard/soft
		writes  int  // KV puts the step makes
	}
	// softDays is n soft failures a day apart, from a fresh address.
	softDays := func(n int) []step {
		var st []step
		for i := 1; i <= n; i++ {
			var wait time.Duration
			if i > 1 {
				wait = day
			}
			st = append(st, step{wait, "soft", WithErrors, i, i == 1, 1})
		}
		return st
	}
	cases := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"hard quarantines at once", Config{}, []step{
			{0, "hard", Quarantined, 1, true, 1},
			{day, "hard", Quarantined, 1, false, 0},
			{day, "soft", Quarantined, 1, false, 0},
		}},
		{"ignored does nothing", Config{}, []step{
			{0, "ignored", "", 0, false, 0},
			{0, "soft", WithErrors, 1, true, 1},
			{day, "ignored", WithErrors, 1, false, 0},
		}},
		{"soft inside significant_error_delay counts once", Config{}, []step{
			{0, "soft", WithErrors, 1, true, 1},
			{time.Hour, "soft", WithErrors, 1, false, 0},
			{22 * time.Hour, "soft", WithErrors, 1, false, 0},
			{time.Hour, "soft", WithErrors, 2, false, 1}, // 24h after the first
			{time.Minute, "soft", WithErrors, 2, false, 0},
		}},
		{"above max_errors quarantines", Config{}, append(softDays(5),
			step{day, "soft", Quarantined, 6, true, 1},
			step{day, "soft", Quarantined, 6, false, 0},
		)},
		{"custom max_errors and delay", Config{MaxErrors: 1, SignificantErrorDelay: time.Hour}, []step{
			{0, "soft", WithErrors, 1, true, 1},
			{59 * time.Minute, "soft", WithErrors, 1, false, 0},
			{time.Minute, "soft", Quarantined, 2, true, 1},
		}},
		{"reset_after restarts the count", Config{}, append(softDays(3),
			step{10*day - time.Second, "check", WithErrors, 3, false, 0},
			step{time.Second, "check", Valid, 0, false, 0}, // lazy: shown, not written
			step{0, "soft", WithErrors, 1, true, 1},
		)},
		{"no reset before reset_after", Config{}, append(softDays(2),
			step{9 * day, "soft", WithErrors, 3, false, 1},
		)},
		{"delivery resets with_errors", Config{}, append(softDays(2),
			step{time.Hour, "delivered", Valid, 0, false, 1},
			step{time.Hour, "delivered", Valid, 0, false, 0},
			step{time.Hour, "soft", WithErrors, 1, true, 1}, // a fresh count: not inside the delay
		)},
		{"delivery does not release quarantined", Config{}, []step{
			{0, "hard", Quarantined, 1, true, 1},
			{0, "delivered", Quarantined, 1, false, 0},
		}},
		{"delivery to an unknown address writes nothing", Config{}, []step{
			{0, "delivered", "", 0, false, 0},
		}},
		{"allowlisted is never quarantined", Config{MaxErrors: 1}, []step{
			{0, "allowlisted", Allowlisted, 0, false, 1},
			{0, "hard", Allowlisted, 0, false, 0},
			{day, "soft", Allowlisted, 0, false, 0},
			{day, "soft", Allowlisted, 0, false, 0},
			{day, "soft", Allowlisted, 0, false, 0},
			{0, "delivered", Allowlisted, 0, false, 0},
		}},
		{"complaint denylists", Config{}, []step{
			{0, "complaint", Denylisted, 0, false, 1},
			{0, "complaint", Denylisted, 0, false, 0},
			{day, "hard", Denylisted, 0, false, 0},
			{0, "delivered", Denylisted, 0, false, 0},
		}},
		{"complaint denylists even allowlisted", Config{}, []step{
			{0, "allowlisted", Allowlisted, 0, false, 1},
			{0, "complaint", Denylisted, 0, false, 1},
		}},
		{"operator sets and clears", Config{}, []step{
			{0, "hard", Quarantined, 1, true, 1},
			{0, "valid", Valid, 0, false, 1},
			{0, "soft", WithErrors, 1, true, 1},
			{0, "quarantined", Quarantined, 1, false, 1},
			{0, "denylisted", Denylisted, 1, false, 1},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, tc.cfg)
			const addr = "Someone@Example.COM"
			for i, st := range tc.steps {
				fx.clk.add(st.wait)
				before := fx.kv.puts.Load()
				var changed bool
				var err error
				switch st.op {
				case "hard":
					_, changed, err = fx.s.Failure(addr, hard("550 5.1.1 no such user"))
				case "soft":
					_, changed, err = fx.s.Failure(addr, soft("452 4.2.2 mailbox full"))
				case "ignored":
					_, changed, err = fx.s.Failure(addr, Failure{Code: 451, Text: "greylisted", Class: "ignored"})
				case "delivered":
					err = fx.s.Delivered(addr)
				case "complaint":
					err = fx.s.Complaint(addr, Failure{Text: "abuse report", Site: "yahoo"})
				case "check":
				default:
					err = fx.s.Add(addr, Status(st.op), "by hand")
				}
				if err != nil {
					t.Fatalf("step %d %s: %v", i, st.op, err)
				}
				if changed != st.changed {
					t.Errorf("step %d %s: changed %v, want %v", i, st.op, changed, st.changed)
				}
				if w := fx.kv.puts.Load() - before; w != int64(st.writes) {
					t.Errorf("step %d %s: %d writes, want %d", i, st.op, w, st.writes)
				}
				e, ok := fx.s.Get(addr)
				if st.want == "" {
					if ok {
						t.Errorf("step %d %s: entry %+v, want none", i, st.op, e)
					}
					continue
				}
				if !ok || e.Status != st.want || e.Errors != st.errors {
					t.Errorf("step %d %s: got %v %q errors %d, want %q errors %d", i, st.op, ok, e.Status, e.Errors, st.want, st.errors)
				}
				sup, se := fx.s.Suppressed(addr)
				if wantSup := st.want == Quarantined || st.want == Denylisted; sup != wantSup {
					t.Errorf("step %d %s: Suppressed %v, want %v", i, st.op, sup, wantSup)
				} else if sup && (se.Status != st.want || se.Address != "Someone@example.com") {
					t.Errorf("step %d %s: Suppressed entry %+v", i, st.op, se)
				}
			}
		})
	}
}

func TestEntryFields(t *testing.T) {
	fx := newFixture(t, Config{})
	t0 := fx.clk.now()
	e, changed, err := fx.s.Failure("a@b.example", soft("mailbox full"))
	if err != nil || !changed {
		t.Fatal(e, changed, err)
	}
	fx.clk.add(25 * time.Hour)
	t1 := fx.clk.now()
	e, _, err = fx.s.Failure("a@b.example", hard("<a@b.example>: no such user"))
	if err != nil {
		t.Fatal(err)
	}
	want := Entry{
		Address: "a@b.example", Status: Quarantined, Errors: 2, Reason: "user_unknown",
		LastCode: 550, LastEnhanced: "5.1.1", LastText: "<a@b.example>: no such user",
		LastSite: "gmail", LastMessageID: "m1",
		First: t0, Updated: t1, LastSignificant: t1,
		History: []HistoryItem{
			{t0, Valid, WithErrors, "soft failure: 452 4.2.2 mailbox full (mailbox_full) at yahoo"},
			{t1, WithErrors, Quarantined, "hard failure: 550 5.1.1 <a@b.example>: no such user (user_unknown) at gmail"},
		},
	}
	got, _ := fx.s.Get("a@B.example.")
	for _, g := range []Entry{e, got} {
		if !equalEntry(g, want) {
			t.Errorf("got  %+v\nwant %+v", g, want)
		}
	}
	_, se := fx.s.Suppressed("a@b.example")
	if se == nil || se.Reason != "user_unknown" || se.Errors != 2 || !se.Updated.Equal(t1) || !se.LastSignificant.Equal(t1) {
		t.Errorf("Suppressed entry %+v", se)
	}
}

// equalEntry compares entries with time.Time.Equal (decoded times are local).
func equalEntry(a, b Entry) bool {
	norm := func(e Entry) Entry {
		e.First, e.Updated, e.LastSignificant = e.First.UTC(), e.Updated.UTC(), e.LastSignificant.UTC()
		h := make([]HistoryItem, len(e.History))
		for i, x := range e.History {
			x.Time = x.Time.UTC()
			h[i] = x
		}
		e.History = h
		return e
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestHistoryKeepsTen(t *testing.T) {
	fx := newFixture(t, Config{})
	for i := range 15 {
		st := Quarantined
		if i%2 == 1 {
			st = Valid
		}
		if err := fx.s.Add("x@y.example", st, fmt.Sprint("n", i)); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := fx.s.Get("x@y.example")
	if len(e.History) != 10 || e.History[9].Why != "operator: n14" || e.History[0].Why != "operator: n5" || e.Note != "n14" {
		t.Errorf("history %+v note %q", e.History, e.Note)
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct {
		in        string
		sensitive string // want with an exact local part
		folded    string // want with case folded; "" = same as sensitive
		bad       string // error substring
	}{
		{in: "John.Doe@Example.COM", sensitive: "John.Doe@example.com", folded: "john.doe@example.com"},
		{in: "  <a@B.org>  ", sensitive: "a@b.org"},
		{in: "a@b.org.", sensitive: "a@b.org"},
		{in: "a+tag@sub.B-c.org", sensitive: "a+tag@sub.b-c.org"},
		{in: "Ünï@BÜCHER.de", sensitive: "Ünï@bücher.de", folded: "ünï@bücher.de"},
		{in: "a@[192.0.2.1]", sensitive: "a@[192.0.2.1]"},
		{in: "a@_dmarc.example", sensitive: "a@_dmarc.example"},
		{in: "", bad: "empty"},
		{in: "nobody", bad: "no '@'"},
		{in: "a@b@c", bad: "more than one '@'"},
		{in: "@b.org", bad: "empty local part"},
		{in: "a@", bad: "empty domain"},
		{in: "a@.", bad: "empty domain"},
		{in: "a@b..org", bad: "empty label"},
		{in: "a@b.org..", bad: "empty label"},
		{in: "a b@c.org", bad: "character ' ' in the local part"},
		{in: "a@c.org;John", bad: "character ';' in the domain"},
		{in: "a@[1.2.3.4", bad: "broken address literal"},
		{in: "0@[ ]", bad: "character ' ' in the address literal"}, // found by FuzzNormalize
		{in: "a@[1.2.3.4\r\nX]", bad: `character '\r' in the address literal`},
		{in: "a@[[1]]", bad: "character '[' in the address literal"},
		{in: "a@[IPv6:2001:DB8::1]", sensitive: "a@[ipv6:2001:db8::1]"},
		{in: "a@b\xff.org", bad: "not UTF-8"},
		{in: strings.Repeat("x", 250) + "@b.org", bad: "longer than 254"},
	}
	for _, tc := range cases {
		for _, fold := range []bool{false, true} {
			want := tc.sensitive
			if fold && tc.folded != "" {
				want = tc.folded
			}
			k, err := normalizeInto(nil, tc.in, fold)
			if tc.bad != "" {
				if err == nil || !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), tc.bad) {
					t.Errorf("%q: error %v, want one with %q", tc.in, err, tc.bad)
				}
				if got := Normalize(tc.in, !fold); got != strings.TrimSpace(tc.in) {
					t.Errorf("Normalize(%q) = %q, want it trimmed only", tc.in, got)
				}
				continue
			}
			if err != nil || string(k) != want {
				t.Errorf("%q fold=%v: %q %v, want %q", tc.in, fold, k, err, want)
			}
			if got := Normalize(tc.in, !fold); got != want {
				t.Errorf("Normalize(%q, %v) = %q, want %q", tc.in, !fold, got, want)
			}
			if again := Normalize(want, !fold); again != want {
				t.Errorf("Normalize not idempotent: %q -> %q", want, again)
			}
		}
	}
}

func TestStoreCase(t *testing.T) {
	fx := newFixture(t, Config{})
	if err := fx.s.Add("John@Example.com", Quarantined, ""); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"John@example.COM": true, "<John@EXAMPLE.com.>": true, "john@example.com": false} {
		if got, _ := fx.s.Suppressed(addr); got != want {
			t.Errorf("exact local: Suppressed(%q) = %v, want %v", addr, got, want)
		}
	}
	fx2 := newFixture(t, Config{CaseInsensitiveLocal: true})
	if err := fx2.s.Add("John@Example.com", Quarantined, ""); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"JOHN@example.COM", "john@example.com"} {
		if got, _ := fx2.s.Suppressed(addr); !got {
			t.Errorf("folded local: Suppressed(%q) = false", addr)
		}
	}
	if got, _ := fx.s.Suppressed("not an address"); got {
		t.Error("a non-address is suppressed")
	}
	for _, err := range []error{
		fx.s.Add("bad", Quarantined, ""),
		fx.s.Delivered("bad"),
		fx.s.Complaint("a@", Failure{}),
		fx.s.Remove("@b"),
	} {
		if !errors.Is(err, ErrBadAddress) {
			t.Errorf("error %v, want ErrBadAddress", err)
		}
	}
	if _, _, err := fx.s.Failure("a@b", Failure{Class: "bogus"}); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("bad class: %v", err)
	}
	if err := fx.s.Add("a@b", WithErrors, ""); err == nil {
		t.Error("Add with_errors accepted")
	}
}

func TestRemove(t *testing.T) {
	fx := newFixture(t, Config{})
	if err := fx.s.Remove("a@b.example"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
	if _, _, err := fx.s.Failure("a@b.example", hard("no")); err != nil {
		t.Fatal(err)
	}
	if err := fx.s.Remove("a@B.example"); err != nil {
		t.Fatal(err)
	}
	if _, ok := fx.s.Get("a@b.example"); ok {
		t.Error("entry still there")
	}
	if sup, _ := fx.s.Suppressed("a@b.example"); sup {
		t.Error("still suppressed")
	}
	if n := fx.s.Len(); n != 0 {
		t.Errorf("Len %d", n)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(sp.KV(Bucket), Config{}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = s.Failure("hard@x.example", hard("550 5.1.1 gone"))
	must(err)
	_, _, err = s.Failure("soft@x.example", soft("452 full"))
	must(err)
	must(s.Complaint("fbl@y.example", Failure{Text: "abuse"}))
	must(s.Add("seed@z.example", Allowlisted, "our seed box"))
	must(s.Add("tmp@z.example", Denylisted, ""))
	must(s.Remove("tmp@z.example"))
	want := map[string]Entry{}
	for _, a := range []string{"hard@x.example", "soft@x.example", "fbl@y.example", "seed@z.example"} {
		e, ok := s.Get(a)
		if !ok {
			t.Fatalf("%s missing", a)
		}
		want[a] = e
	}
	wantCounts := s.Counts()
	must(sp.Close())

	sp2 := openSpool(t, dir, false)
	s2, err := New(sp2.KV(Bucket), Config{}, clk.now)
	must(err)
	if n := s2.Len(); n != len(want) {
		t.Errorf("%d entries after reopen, want %d", n, len(want))
	}
	for a, w := range want {
		if g, ok := s2.Get(a); !ok || !equalEntry(g, w) {
			t.Errorf("%s after reopen:\n got  %+v\n want %+v", a, g, w)
		}
	}
	if got := s2.Counts(); !reflect.DeepEqual(got, wantCounts) {
		t.Errorf("counts %v, want %v", got, wantCounts)
	}
	if sup, _ := s2.Suppressed("hard@X.example"); !sup {
		t.Error("hard@x not suppressed after reopen")
	}
	// The soft count continues where it was: inside the delay, no count.
	if e, _, err := s2.Failure("soft@x.example", soft("452 full")); err != nil || e.Errors != 1 {
		t.Errorf("soft after reopen: %+v %v", e, err)
	}
}

func TestRekeyOnCaseChange(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(sp.KV(Bucket), Config{}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		addr string
		st   Status
	}{{"John@x.example", Quarantined}, {"john@x.example", Allowlisted}, {"Mary@x.example", WithErrors}, {"bob@x.example", Valid}} {
		if op.st == WithErrors {
			_, _, err = s.Failure(op.addr, soft("full"))
		} else {
			err = s.Add(op.addr, op.st, "")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()

	sp2 := openSpool(t, dir, false)
	s2, err := New(sp2.KV(Bucket), Config{CaseInsensitiveLocal: true}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Status{}
	if err := sp2.KV(Bucket).ForEach("", func(k string, v []byte) error {
		e, err := decode(k, v)
		got[k] = e.Status
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"john@x.example": Quarantined, "mary@x.example": WithErrors, "bob@x.example": Valid}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("on disk %v, want %v", got, want)
	}
	if sup, _ := s2.Suppressed("JOHN@x.example"); !sup || s2.Len() != 3 {
		t.Errorf("JOHN not suppressed or Len %d", s2.Len())
	}
}

func TestCorruptRecordSkipped(t *testing.T) {
	sp := openSpool(t, t.TempDir(), false)
	kv := sp.KV(Bucket)
	if err := kv.Put("bad@x.example", []byte{recordVersion, 9}); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put("not-an-address", encode(&Entry{Status: Quarantined})); err != nil {
		t.Fatal(err)
	}
	s, err := New(kv, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Errorf("Len %d", s.Len())
	}
	if err := s.Remove("bad@x.example"); err != nil {
		t.Errorf("remove an unreadable record: %v", err)
	}
	if _, _, err := s.Failure("bad@x.example", hard("x")); err != nil {
		t.Error(err)
	}
}

// TestConcurrent runs failures, deliveries and checks at once (under -race)
// and checks that no count is lost or doubled.
func TestConcurrent(t *testing.T) {
	sp := openSpool(t, t.TempDir(), true)
	clk := newClock()
	s, err := New(sp.KV(Bucket), Config{MaxErrors: 3}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	const addrs, writers, readers = 40, 16, 4
	addr := func(i int) string { return fmt.Sprintf("user%d@Site%d.example", i, i%3) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reads atomic.Int64
	for range readers {
		wg.Go(func() {
			for i := range 5000 { // bounded: stops early when the writers are done
				select {
				case <-stop:
					return
				default:
				}
				s.Suppressed(addr(i % addrs))
				s.Get(addr(i % addrs))
				reads.Add(1)
			}
		})
	}
	// Four rounds a day apart; in each, every writer sends one soft failure
	// to every even address: each round must count once per address.
	var werr atomic.Value
	for round := range 4 {
		var ww sync.WaitGroup
		for w := range writers {
			ww.Go(func() {
				for i := range addrs {
					var err error
					switch {
					case i%2 == 0:
						_, _, err = s.Failure(addr(i), soft("452 busy"))
					case i%4 == 1 && w == 0 && round == 0:
						_, _, err = s.Failure(addr(i), hard("550 no"))
					default:
						err = s.Delivered(addr(i))
					}
					if err != nil {
						werr.Store(err)
					}
				}
			})
		}
		ww.Wait()
		clk.add(24 * time.Hour)
	}
	close(stop)
	wg.Wait()
	if err, _ := werr.Load().(error); err != nil {
		t.Fatal(err)
	}
	for i := range addrs {
		e, ok := s.Get(addr(i))
		switch {
		case i%2 == 0:
			if !ok || e.Status != Quarantined || e.Errors != 4 {
				t.Errorf("%s: %v %s errors %d, want quarantined with 4", addr(i), ok, e.Status, e.Errors)
			}
		case i%4 == 1:
			if !ok || e.Status != Quarantined || e.Errors != 1 {
				t.Errorf("%s: %v %s errors %d, want quarantined with 1", addr(i), ok, e.Status, e.Errors)
			}
		default:
			if ok {
				t.Errorf("%s: has an entry %+v", addr(i), e)
			}
		}
	}
	if c := s.Counts(); c[Quarantined] != addrs/2+addrs/4 {
		t.Errorf("counts %v", c)
	}
	if reads.Load() == 0 {
		t.Error("readers never ran")
	}
}

func TestNoAllocs(t *testing.T) {
	fx := newFixture(t, Config{})
	if err := fx.s.Add("q@x.example", Quarantined, ""); err != nil {
		t.Fatal(err)
	}
	for name, fn := range map[string]func(){
		"Suppressed miss":       func() { fx.s.Suppressed("Someone.Else@X.Example") },
		"Delivered unknown":     func() { _ = fx.s.Delivered("<Someone.Else@X.Example>") },
		"Delivered quarantined": func() { _ = fx.s.Delivered("q@x.example") },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocations", name, n)
		}
	}
}
