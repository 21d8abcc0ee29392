// Package deadline decides when a socket deadline needs setting again.
// Setting one re-arms runtime timers, and an SMTP dialogue asks for a new
// deadline before every command and every reply, microseconds apart. So a
// deadline is set 1/64 of the time left later than asked, and the one set
// last stays while it falls within [asked, asked + 1/64 of the time left]:
// a timeout is never sooner than asked, and at most 1/64 later (4.7 s on
// 5 minutes), and a burst of asks sets the socket once.
package deadline

import "time"

// Slack returns the deadline to set for one asked for as want (not zero),
// given the one set last (zero: none, or not known). ok is false when the
// one set last may stay.
func Slack(last, want time.Time) (set time.Time, ok bool) {
	slack := max(time.Until(want)/64, 0)
	if !last.IsZero() && !last.Before(want) && last.Sub(want) <= slack {
		return time.Time{}, false
	}
	return want.Add(slack), true
}
