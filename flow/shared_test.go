package flow

import (
	"strings"
	"testing"
	"time"
)

// exchange plays the cluster bridge between two controllers: each one's
// pending counts are summed per window and bucket, and each gets the
// other's totals.
func exchange(now time.Time, a, b *Controller, totals map[string]map[[2]string]map[int64][2]int32) {
	for name, c := range map[string]*Controller{"a": a, "b": b} {
		if totals[name] == nil {
			totals[name] = map[[2]string]map[int64][2]int32{}
		}
		for _, wc := range c.PendingWindows(now) {
			k := [2]string{wc.Site, wc.Source}
			if totals[name][k] == nil {
				totals[name][k] = map[int64][2]int32{}
			}
			for _, sc := range wc.Slots {
				v := totals[name][k][sc.Slot]
				totals[name][k][sc.Slot] = [2]int32{v[0] + sc.Attempts, v[1] + sc.Errors}
			}
		}
	}
	give := func(c *Controller, other string) {
		var out []WindowCounts
		for k, slots := range totals[other] {
			wc := WindowCounts{Site: k[0], Source: k[1]}
			for slot, v := range slots {
				wc.Slots = append(wc.Slots, SlotCount{Slot: slot, Attempts: v[0], Errors: v[1]})
			}
			out = append(out, wc)
		}
		c.AdoptWindows(now, out)
	}
	give(a, "b")
	give(b, "a")
}

// TestSharedWindowsAddUp: the threshold needs 20 attempts at 50% errors;
// each node sees half of them (8 errors in 10 attempts) and stays
// normal; shared, both trip; with the store away each judges alone again
// and says so.
func TestSharedWindowsAddUp(t *testing.T) {
	cfg := Config{MinAttempts: 20, ErrorRatio: 0.5}
	a, ck, _ := newTest(t, cfg)
	b := New(cfg, Options{Now: ck.Now})
	a.ShareWindows()
	b.ShareWindows()
	now := ck.Now()
	feed := func(c *Controller) {
		for i := range 10 {
			now = ck.Add(100 * time.Millisecond)
			// Errors and successes alternate: never many in a row.
			c.Record(srcEv("yahoo", "10.0.0.2", now, i%5 == 4, 451, "4.7.1 try later"))
		}
	}
	feed(a)
	feed(b)
	for _, c := range []*Controller{a, b} {
		if s := c.Sources("yahoo", now); len(s) != 0 && s[0].State != Normal {
			t.Fatalf("one node's half of the errors tripped it: %+v", s)
		}
	}
	exchange(now, a, b, map[string]map[[2]string]map[int64][2]int32{})
	for name, c := range map[string]*Controller{"a": a, "b": b} {
		s := c.SourcesAll("yahoo", now)
		if len(s) != 1 || s[0].State != Backoff || s[0].Attempts != 20 || s[0].Errors != 16 {
			t.Fatalf("node %s with the shared window: %+v", name, s)
		}
		if !strings.Contains(s[0].Detail, "shared by the cluster") {
			t.Errorf("node %s detail: %s", name, s[0].Detail)
		}
	}
	a.WindowsDegraded()
	s := a.SourcesAll("yahoo", now)
	if s[0].Attempts != 10 || !strings.Contains(s[0].Detail, "this node's alone") {
		t.Errorf("degraded: %d attempts, detail %s", s[0].Attempts, s[0].Detail)
	}
}
