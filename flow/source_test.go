package flow

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func srcEv(site, src string, t time.Time, ok bool, code int, text string) Event {
	ev := Event{Time: t, Site: site, Path: src + ">192.0.2.1", OK: ok, Err: !ok, Code: code, Text: text}
	return ev
}

// TestSourceThrottleLeavesOtherSources: a TSS04 reply to one source puts
// that source in backoff; the site and the other source stay normal, and
// the diagnosis names the source.
func TestSourceThrottleLeavesOtherSources(t *testing.T) {
	c, ck, rec := newTest(t, Config{Patterns: ShippedPatterns()})
	now := ck.Now()
	for i := range 10 {
		c.Record(srcEv("yahoo", "10.0.0.2", now, true, 0, ""))
		c.Record(srcEv("yahoo", "10.0.0.3", now, true, 0, ""))
		now = ck.Add(time.Duration(i) * time.Millisecond)
	}
	c.Record(srcEv("yahoo", "10.0.0.2", now, false, 421, "4.7.0 [TSS04] Messages from 10.0.0.2 temporarily deferred"))
	if d := c.Check("yahoo", now); d.State != Normal || d.ConnFactor != 1 {
		t.Fatalf("site state %s factor %v, want normal: a source's throttle is not the site's", d.State, d.ConnFactor)
	}
	srcs := c.Sources("yahoo", now)
	if len(srcs) != 1 || srcs[0].Source != "10.0.0.2" || srcs[0].State != Backoff {
		t.Fatalf("sources in trouble: %+v, want 10.0.0.2 in backoff", srcs)
	}
	all := c.SourcesAll("yahoo", now)
	if len(all) != 2 || all[0].Source != "10.0.0.2" || all[1].State != Normal {
		t.Fatalf("all sources: %+v", all)
	}
	if !strings.Contains(all[0].Diagnosis, "reputation of source 10.0.0.2 at yahoo") || !strings.Contains(all[0].Detail, "source 10.0.0.2") {
		t.Errorf("diagnosis %q detail %q do not name the source", all[0].Diagnosis, all[0].Detail)
	}
	if got := rec.changes[len(rec.changes)-1]; got.Source != "10.0.0.2" || got.To != Backoff {
		t.Errorf("change %+v, want the source's backoff", got)
	}
	if st := c.SourceStates(); st[Backoff] != 1 || st[Normal] != 1 {
		t.Errorf("source states %v", st)
	}
	if nn := c.SourcesNotNormal(); fmt.Sprint(nn) != "[yahoo 10.0.0.2]" {
		t.Errorf("not normal: %v", nn)
	}
}

// TestSourceRecoversOnItsOwn: a source in backoff recovers after
// recover_after without errors, in steps, as a site does.
func TestSourceRecoversOnItsOwn(t *testing.T) {
	c, ck, _ := newTest(t, Config{Patterns: ShippedPatterns(), RecoverAfter: time.Minute, StepInterval: 10 * time.Second})
	now := ck.Now()
	c.Record(srcEv("yahoo", "10.0.0.2", now, false, 421, "4.7.0 [TSS04] deferred"))
	if s := c.Sources("yahoo", now); len(s) != 1 || s[0].State != Backoff {
		t.Fatalf("want backoff, got %+v", s)
	}
	// The pattern's backoff lasts 30 minutes; then deliveries and quiet.
	for i := 0; i < 400 && len(c.Sources("yahoo", now)) > 0; i++ {
		now = ck.Add(10 * time.Second)
		c.Record(srcEv("yahoo", "10.0.0.2", now, true, 0, ""))
		c.Tick(now)
	}
	if s := c.Sources("yahoo", now); len(s) != 0 {
		t.Fatalf("source did not recover: %+v", s)
	}
	if now.Sub(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)) < 30*time.Minute {
		t.Errorf("recovered before the pattern's 30 minutes: %s", now)
	}
}

// TestSourceErrorsDoNotTripSite: errors from one source only, at a ratio
// that would put the whole site in backoff, put that source there alone.
func TestSourceErrorsDoNotTripSite(t *testing.T) {
	c, ck, _ := newTest(t, Config{})
	now := ck.Now()
	for i := range 40 {
		now = ck.Add(time.Second)
		c.Record(srcEv("site", "10.0.0.3", now, true, 0, ""))
		if i%2 == 0 {
			c.Record(srcEv("site", "10.0.0.2", now, false, 451, "4.3.0 try later"))
		} else {
			c.Record(srcEv("site", "10.0.0.2", now, true, 0, ""))
		}
	}
	if d := c.Check("site", now); d.State != Normal || d.Hold {
		t.Fatalf("site %s hold %v: errors of one source moved the site", d.State, d.Hold)
	}
	s := c.Sources("site", now)
	if len(s) != 1 || s[0].Source != "10.0.0.2" || s[0].State != Backoff {
		t.Fatalf("sources %+v, want 10.0.0.2 alone in backoff", s)
	}
}

// TestSiteWideErrors: errors without a source (DNS, no address) and
// replies matching a site-wide pattern act on the site's state.
func TestSiteWideErrors(t *testing.T) {
	c, ck, _ := newTest(t, Config{Patterns: ShippedPatterns()})
	now := ck.Now()
	ev := srcEv("gmail", "10.0.0.2", now, false, 421, "Try again later, closing connection. x.123 - gsmtp")
	ev.Enhanced = "4.7.0"
	c.Record(ev)
	if d := c.Check("gmail", now); d.State != Backoff {
		t.Fatalf("site state %s: a site-wide pattern must act on the site", d.State)
	}
	if s := c.Sources("gmail", now); len(s) != 1 || s[0].State != Normal {
		// The source counts the error in a row, nothing more.
		t.Fatalf("source states %+v", s)
	}
	c2, ck2, _ := newTest(t, Config{})
	now = ck2.Now()
	for range 6 {
		now = ck2.Add(time.Second)
		c2.Record(Event{Time: now, Site: "dead", Err: true, Local: true, DNS: true, Text: "no address"})
	}
	if d := c2.Check("dead", now); d.State != Backoff {
		t.Fatalf("site state %s after errors with no source", d.State)
	}
	if s := c2.Sources("dead", now); s != nil {
		t.Fatalf("source states %+v for errors with no source", s)
	}
}

// TestLocalProblemCountsSourceErrors: errors tied to sources still count
// in the cross-site local-problem view.
func TestLocalProblemCountsSourceErrors(t *testing.T) {
	c, ck, _ := newTest(t, Config{LocalMinSites: 3})
	now := ck.Now()
	for i := range 6 {
		now = ck.Add(2 * time.Second)
		for s := range 4 {
			c.Record(srcEv(fmt.Sprintf("s%d", s), "10.0.0.2", now, i%3 == 0, 421, "4.4.2 timeout"))
		}
	}
	c.Tick(now)
	if on, lp := c.Local(); !on {
		t.Fatalf("no local problem with errors at every site: %+v", lp)
	}
}

// TestAdoptSourceChange: another node's change of a source applies to
// that source only.
func TestAdoptSourceChange(t *testing.T) {
	c, ck, _ := newTest(t, Config{})
	now := ck.Now()
	c.Adopt(Change{Time: now, Site: "yahoo", Source: "10.0.0.2", From: Normal, To: Suspended, Until: now.Add(time.Hour), Reason: "x"})
	if d := c.Check("yahoo", now); d.State != Normal {
		t.Fatalf("site %s", d.State)
	}
	s := c.Sources("yahoo", now)
	if len(s) != 1 || s[0].State != Suspended || !s[0].Hold {
		t.Fatalf("sources %+v", s)
	}
	if !c.TakeProbe("yahoo", "10.0.0.2", now.Add(2*time.Minute)) || c.TakeProbe("yahoo", "10.0.0.2", now.Add(2*time.Minute)) {
		t.Errorf("probe slot: the first take must succeed, the second wait")
	}
	c.Reset("yahoo")
	if s := c.Sources("yahoo", now); len(s) != 0 {
		t.Errorf("after reset: %+v", s)
	}
}
