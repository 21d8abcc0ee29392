package quarantine

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func addresses(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Address
	}
	return out
}

// listFixture holds entries made at known times:
//
//	day 0: a@gmail.com hard "no such user"; b@yahoo.com soft "mailbox full"
//	day 1: c@yahoo.com, d@yahoo.com hard "[TS03] temporarily deferred"
//	day 2: e@yahoo.com hard "[TS03] temporarily deferred"; f@Yahoo.com complaint
//	day 3: g@gmail.com allowlisted
func listFixture(t *testing.T) (*fixture, time.Time) {
	fx := newFixture(t, Config{})
	t0 := fx.clk.now()
	const day = 24 * time.Hour
	deferred := Failure{Code: 554, Enhanced: "5.7.9", Text: "Message not accepted for policy reasons [TS03] temporarily deferred", Reason: "refused", Class: "hard"}
	steps := []func() error{
		func() error { _, _, err := fx.s.Failure("a@gmail.com", hard("no such user")); return err },
		func() error { _, _, err := fx.s.Failure("b@yahoo.com", soft("mailbox full")); return err },
		func() error { fx.clk.add(day); return nil },
		func() error { _, _, err := fx.s.Failure("c@yahoo.com", deferred); return err },
		func() error { _, _, err := fx.s.Failure("d@YAHOO.com", deferred); return err },
		func() error { fx.clk.add(day); return nil },
		func() error { _, _, err := fx.s.Failure("e@yahoo.com", deferred); return err },
		func() error { return fx.s.Complaint("f@Yahoo.com", Failure{Text: "abuse"}) },
		func() error { fx.clk.add(day); return nil },
		func() error { return fx.s.Add("g@gmail.com", Allowlisted, "seed") },
	}
	for _, f := range steps {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	return fx, t0
}

func TestList(t *testing.T) {
	fx, t0 := listFixture(t)
	const day = 24 * time.Hour
	cases := []struct {
		name string
		f    Filter
		want string
		bad  string
	}{
		{"all", Filter{}, "a@gmail.com b@yahoo.com c@yahoo.com d@yahoo.com e@yahoo.com f@yahoo.com g@gmail.com", ""},
		{"status", Filter{Status: Quarantined}, "a@gmail.com c@yahoo.com d@yahoo.com e@yahoo.com", ""},
		{"reason", Filter{Reason: "refused"}, "c@yahoo.com d@yahoo.com e@yahoo.com", ""},
		{"match", Filter{Match: `(?i)no such`}, "a@gmail.com", ""},
		{"domain", Filter{Domain: "@YAHOO.com."}, "b@yahoo.com c@yahoo.com d@yahoo.com e@yahoo.com f@yahoo.com", ""},
		{"dates", Filter{From: t0.Add(day), To: t0.Add(2 * day)}, "c@yahoo.com d@yahoo.com", ""},
		{"from", Filter{From: t0.Add(2 * day)}, "e@yahoo.com f@yahoo.com g@gmail.com", ""},
		{"combined", Filter{Status: Denylisted, Domain: "yahoo.com"}, "f@yahoo.com", ""},
		{"nothing", Filter{Reason: "nope"}, "", ""},
		{"with_errors", Filter{Status: WithErrors}, "b@yahoo.com", ""},
		{"bad status", Filter{Status: "bogus"}, "", `status "bogus"`},
		{"bad regexp", Filter{Match: "("}, "", "missing closing )"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fx.s.List(tc.f, 0, "")
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("error %v, want %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := strings.Join(addresses(got), " "); g != tc.want {
				t.Errorf("got %q\nwant %q", g, tc.want)
			}
		})
	}

	// Paging: pages of 3 with the cursor cover everything once, in order.
	var all []string
	after := ""
	for range 10 {
		page, err := fx.s.List(Filter{}, 3, after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, addresses(page)...)
		after = page[len(page)-1].Address
	}
	if g := strings.Join(all, " "); g != "a@gmail.com b@yahoo.com c@yahoo.com d@yahoo.com e@yahoo.com f@yahoo.com g@gmail.com" {
		t.Errorf("pages: %s", g)
	}

	// ResetAfter later, b's errors lapse: it lists as valid.
	fx.clk.add(10 * day)
	got, _ := fx.s.List(Filter{Status: Valid}, 0, "")
	if len(got) != 1 || got[0].Address != "b@yahoo.com" || got[0].Errors != 0 {
		t.Errorf("lapsed: %+v", got)
	}
	c := fx.s.Counts()
	if want := map[Status]int{Valid: 1, WithErrors: 0, Quarantined: 4, Denylisted: 1, Allowlisted: 1}; !reflect.DeepEqual(c, want) {
		t.Errorf("counts %v, want %v", c, want)
	}
}

func TestRelease(t *testing.T) {
	fx, t0 := listFixture(t)
	const day = 24 * time.Hour
	// The incident: Yahoo deferrals on day 1 only.
	n, err := fx.s.Release(Filter{Match: `\[TS03\]`, From: t0.Add(day), To: t0.Add(2 * day)}, "yahoo incident 42")
	if err != nil || n != 2 {
		t.Fatalf("released %d, %v; want 2", n, err)
	}
	for addr, want := range map[string]Status{
		"c@yahoo.com": Valid, "d@yahoo.com": Valid, // released
		"e@yahoo.com": Quarantined, // outside the dates
		"a@gmail.com": Quarantined, // another reply
		"f@yahoo.com": Denylisted,
	} {
		e, _ := fx.s.Get(addr)
		if e.Status != want {
			t.Errorf("%s: %s, want %s", addr, e.Status, want)
		}
		if want == Valid {
			last := e.History[len(e.History)-1]
			if e.Errors != 0 || e.Note != "yahoo incident 42" || last.Why != "released: yahoo incident 42" || last.From != Quarantined {
				t.Errorf("%s: %+v", addr, e)
			}
			if sup, _ := fx.s.Suppressed(addr); sup {
				t.Errorf("%s still suppressed", addr)
			}
		}
	}
	// Again: nothing left to release.
	if n, err := fx.s.Release(Filter{Match: `\[TS03\]`, From: t0.Add(day), To: t0.Add(2 * day)}, ""); n != 0 || err != nil {
		t.Errorf("second release: %d %v", n, err)
	}
	if _, err := fx.s.Release(Filter{Status: Denylisted}, ""); err == nil {
		t.Error("releasing denylisted accepted")
	}
	// Release by reason and domain, all dates.
	if n, err := fx.s.Release(Filter{Reason: "refused", Domain: "yahoo.com"}, ""); n != 1 || err != nil {
		t.Errorf("release by reason: %d %v", n, err)
	}
}

func TestImport(t *testing.T) {
	fx := newFixture(t, Config{})
	if err := fx.s.Add("known@x.example", Denylisted, "earlier"); err != nil {
		t.Fatal(err)
	}
	good := "\xef\xbb\xbfemail,name,date\n" +
		"a@X.example,Ann,2024-01-01\n" +
		"\n" +
		"# a comment\n" +
		"  <b@x.example>  , Bob\n" +
		`"c@x.example","Carl, Jr."` + "\n" +
		"A@x.example\n" + // not the same as a@ (exact local part)
		"a@x.example\n" + // a duplicate
		"known@x.example\n"
	n, err := fx.s.Import(strings.NewReader(good), Denylisted, "list from client")
	if err != nil || n != 4 {
		t.Fatalf("imported %d, %v; want 4", n, err)
	}
	if c := fx.s.Counts(); c[Denylisted] != 5 {
		t.Errorf("counts %v", c)
	}
	e, _ := fx.s.Get("b@x.example")
	if e.Note != "list from client" || e.History[0].Why != "import: list from client" {
		t.Errorf("b: %+v", e)
	}
	if k, _ := fx.s.Get("known@x.example"); k.Note != "earlier" {
		t.Errorf("an entry already at the status was rewritten: %+v", k)
	}
	// Importing again changes nothing and writes nothing.
	before := fx.kv.puts.Load()
	if n, err := fx.s.Import(strings.NewReader(good), Denylisted, ""); n != 0 || err != nil {
		t.Errorf("re-import: %d %v", n, err)
	}
	if fx.kv.puts.Load() != before {
		t.Error("re-import wrote")
	}
	// Without a header.
	if n, err := fx.s.Import(strings.NewReader("z@y.example\r\ny@y.example\r\n"), Allowlisted, ""); n != 2 || err != nil {
		t.Errorf("plain list: %d %v", n, err)
	}

	bad := []struct{ in, want string }{
		{"email\nok@x.example\nbroken\nalso@bad@x\nfine@x.example\n", `2 bad lines, nothing imported: line 3: bad address "broken": no '@'; line 4: bad address "also@bad@x": more than one '@'`},
		{"a@x.example;Ann\n", `line 1: bad address "a@x.example;Ann": character ';' in the domain`},
		{strings.Repeat("bad\n", 15), `14 bad lines`}, // the first is the header
		{strings.Repeat("bad\n", 15), `line 11: bad address "bad": no '@'; and 4 more`},
	}
	for _, tc := range bad {
		before := fx.s.Len()
		n, err := fx.s.Import(strings.NewReader(tc.in), Quarantined, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) || n != 0 {
			t.Errorf("%q: %d %v\nwant an error with %q", tc.in, n, err, tc.want)
		}
		if fx.s.Len() != before {
			t.Errorf("%q: half imported", tc.in)
		}
	}
	if _, err := fx.s.Import(strings.NewReader("a@b.example\n"), WithErrors, ""); err == nil {
		t.Error("import as with_errors accepted")
	}
}

// TestBulkImport imports and releases enough addresses that the parallel
// writes matter; -v shows the time.
func TestBulkImport(t *testing.T) {
	fx := newFixture(t, Config{})
	var b strings.Builder
	const n = 2000
	for i := range n {
		fmt.Fprintf(&b, "user%d@bulk.example\n", i)
	}
	start := time.Now()
	got, err := fx.s.Import(strings.NewReader(b.String()), Quarantined, "")
	if err != nil || got != n {
		t.Fatalf("%d %v", got, err)
	}
	t.Logf("imported %d in %v", n, time.Since(start))
	released, err := fx.s.Release(Filter{Domain: "bulk.example"}, "")
	if err != nil || released != n {
		t.Fatalf("released %d %v", released, err)
	}
}
