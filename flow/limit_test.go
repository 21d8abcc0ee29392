package flow

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLimitPatternCapsThenEases: a limit pattern caps the rule's values
// for its duration, names itself in the decision and the Change records,
// eases back halfway each step_interval (never snapping), then ends.
func TestLimitPatternCapsThenEases(t *testing.T) {
	pat := Pattern{Match: regexp.MustCompile(`4\.7\.28`), Action: Limited, Duration: 10 * time.Minute,
		Limits: Limits{MaxConns: 2, PerHour: 100, ConnRateN: 6, ConnRatePer: time.Minute}}
	c, ck, rec := newTest(t, Config{Patterns: []Pattern{pat}, StepInterval: time.Minute})
	c.Record(okEv("g", ck.Now()))
	c.Record(errEv("g", ck.Now(), 421, "4.7.28 unusual rate"))
	d := c.Check("g", ck.Now())
	if d.State != Normal || d.Hold || d.Limit == nil {
		t.Fatalf("decision %+v, want normal with a limit", d)
	}
	l := d.Limit
	if l.Pattern != `4\.7\.28` || !strings.Contains(d.Detail, "limit by pattern `4\\.7\\.28`") {
		t.Errorf("pattern not named: %+v / %s", l, d.Detail)
	}
	// Full limit: the caps, under a rule of 20 connections, 1000/h, a
	// connection rate of 60/1m; an unlimited rule gets the cap.
	if got := l.Apply(20, l.MaxConns); got != 2 {
		t.Errorf("connections %d, want 2", got)
	}
	if got := l.Apply(1000, l.PerHour); got != 100 {
		t.Errorf("per hour %d, want 100", got)
	}
	if got := l.Apply(0, l.PerHour); got != 100 {
		t.Errorf("unlimited rule: per hour %d, want 100", got)
	}
	if n, per := l.ApplyRate(60, time.Minute); n != 6 || per != time.Minute {
		t.Errorf("connection rate %d/%s, want 6/1m", n, per)
	}
	if got := l.Apply(1, l.MaxConns); got != 1 {
		t.Errorf("a cap above the rule (1) gave %d", got)
	}
	if ch := rec.changes; len(ch) != 1 || ch[0].To != Limited || !strings.Contains(ch[0].Reason, "4\\.7\\.28") {
		t.Fatalf("changes %+v", ch)
	}

	// Easing: never before the duration, then one step per interval,
	// each giving back half of what is held.
	ck.Add(10*time.Minute - time.Second)
	c.Tick(ck.Now())
	if d := c.Check("g", ck.Now()); d.Limit == nil || d.Limit.Step != 0 {
		t.Fatalf("eased before the duration: %+v", d.Limit)
	}
	wantConns := []int{2 + 9, 2 + 13, 2 + 15, 2 + 16} // 20-2=18 gap: 1/2, 3/4, 7/8, 15/16
	prev := 2
	for step, want := range wantConns {
		ck.Add(time.Second)
		if step > 0 {
			ck.Add(time.Minute - time.Second)
		}
		c.Tick(ck.Now())
		d := c.Check("g", ck.Now())
		if d.Limit == nil || d.Limit.Step != step+1 {
			t.Fatalf("step %d: %+v", step+1, d.Limit)
		}
		got := d.Limit.Apply(20, d.Limit.MaxConns)
		if got != want || got-prev > (20-prev+1)/2 {
			t.Errorf("step %d: %d connections, want %d (halfway from %d)", step+1, got, want, prev)
		}
		if d.Limit.Apply(0, d.Limit.PerHour) != 100<<(step+1) {
			t.Errorf("step %d: unlimited rule cap %d, want doubling", step+1, d.Limit.Apply(0, d.Limit.PerHour))
		}
		prev = got
	}
	ck.Add(time.Minute)
	c.Tick(ck.Now())
	if d := c.Check("g", ck.Now()); d.Limit != nil {
		t.Fatalf("limit not ended: %+v", d.Limit)
	}
	var tos []string
	for _, ch := range rec.changes {
		tos = append(tos, ch.From+">"+ch.To)
		if !strings.Contains(ch.Reason, "4\\.7\\.28") {
			t.Errorf("change does not name the pattern: %+v", ch)
		}
	}
	want := "normal>limited limited>limited limited>limited limited>limited limited>limited limited>normal"
	if got := strings.Join(tos, " "); got != want {
		t.Errorf("changes %s\nwant    %s", got, want)
	}
}

// TestLimitRenewedAndReset: a new match during the easing starts the
// full limit again; an operator resume ends it.
func TestLimitRenewedAndReset(t *testing.T) {
	pat := Pattern{Match: regexp.MustCompile(`slow down`), Action: Limited, Duration: 5 * time.Minute, Limits: Limits{MaxMsgsPerConn: 5}}
	c, ck, _ := newTest(t, Config{Patterns: []Pattern{pat}})
	c.Record(errEv("s", ck.Now(), 451, "slow down"))
	ck.Add(6 * time.Minute)
	c.Tick(ck.Now())
	if d := c.Check("s", ck.Now()); d.Limit == nil || d.Limit.Step < 1 {
		t.Fatalf("not easing: %+v", d.Limit)
	}
	c.Record(errEv("s", ck.Now(), 451, "slow down"))
	if d := c.Check("s", ck.Now()); d.Limit == nil || d.Limit.Step != 0 || d.Limit.Apply(100, d.Limit.MaxMsgsPerConn) != 5 {
		t.Fatalf("not renewed: %+v", d.Limit)
	}
	c.Reset("s")
	if d := c.Check("s", ck.Now()); d.Limit != nil {
		t.Fatalf("reset kept the limit: %+v", d.Limit)
	}
}

// TestAdoptIgnoresLimits: the records of another node's timed limit
// (start, steps, end to "normal") never change this node's state.
func TestAdoptIgnoresLimits(t *testing.T) {
	c, ck, _ := newTest(t, Config{})
	c.Suspend("x", time.Hour, "test")
	c.Adopt(Change{Time: ck.Now(), Site: "x", From: Normal, To: Limited})
	c.Adopt(Change{Time: ck.Now(), Site: "x", From: Limited, To: Normal, Reason: "limit ended"})
	if d := c.Peek("x", ck.Now()); d.State != Suspended || d.Limit != nil {
		t.Fatalf("state %s limit %+v after another node's limit records", d.State, d.Limit)
	}
}
