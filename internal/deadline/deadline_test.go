package deadline

import (
	"testing"
	"time"
)

func TestSlack(t *testing.T) {
	want := time.Now().Add(64 * time.Second)
	set, ok := Slack(time.Time{}, want)
	if !ok || set.Before(want) || set.Sub(want) > time.Second {
		t.Fatalf("first ask: set %v (ok %v), want within a second after %v", set, ok, want)
	}
	// Asked again a moment later: the deadline set stays.
	if _, ok := Slack(set, want.Add(time.Millisecond)); ok {
		t.Errorf("a deadline 1 ms later than the one in force was set again")
	}
	// Asked for sooner than the one in force: never later than asked.
	if s, ok := Slack(set, want.Add(-time.Second)); !ok || !s.Before(set) {
		t.Errorf("a sooner deadline was not set: %v, %v", s, ok)
	}
	// Asked for past the slack: set again.
	if _, ok := Slack(set, want.Add(2*time.Second)); !ok {
		t.Errorf("a deadline past the slack was not set")
	}
}
