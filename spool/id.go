package spool

import (
	"fmt"
	"strconv"
	"time"
)

// ID names one stored message. IDs come from a counter that is committed in
// the same transaction as the message, so an ID handed to a caller is never
// handed out again, even after a crash. At every Open the counter is raised to
// at least the current Unix time << 24, so a spool recreated from scratch (or
// restored from an old copy) still issues IDs above any it issued before,
// unless it averaged more than 16 million messages a second.
type ID uint64

// idTimeShift places the time floor of the ID counter: Unix seconds << 24
// stays below 2^63 until well past the year 10000.
const idTimeShift = 24

// idFloor is the lowest ID the counter may continue from at time now.
func idFloor(now time.Time) uint64 {
	sec := now.Unix()
	if sec < 0 {
		sec = 0
	}
	return uint64(sec) << idTimeShift
}

// String returns the ID as 16 lowercase hex digits, so IDs sort as text in
// the order they were assigned.
func (id ID) String() string {
	const hex = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = hex[id&0xf]
		id >>= 4
	}
	return string(b[:])
}

// ParseID parses the form printed by ID.String. It accepts exactly 16 hex
// digits (either case) so that a truncated ID copied from a log is refused
// instead of naming another message.
func ParseID(s string) (ID, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("spool: message id %q: want 16 hex digits, got %d characters", s, len(s))
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("spool: message id %q: not hexadecimal", s)
	}
	return ID(v), nil
}

// State is where one recipient stands. Queued is the only state that is not
// final: the recipient still has to be attempted.
type State uint8

const (
	Queued     State = iota // waiting for (another) delivery attempt
	Delivered               // accepted by the receiving MX
	Bounced                 // failed permanently; a bounce/DSN is due
	Expired                 // validity ran out while still queued
	Suppressed              // not sent: the address is quarantined
	Cancelled               // removed by an operator (purge)
	numStates
)

var stateNames = [numStates]string{"queued", "delivered", "bounced", "expired", "suppressed", "cancelled"}

// String returns the lowercase state name used in logs and the API.
func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// Final reports whether the recipient needs no further attempt. A message
// whose recipients are all final is removed from the spool by Update.
func (s State) Final() bool { return s != Queued }
