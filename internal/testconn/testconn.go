// Package testconn holds a test double shared by the packages that own
// sockets: a connection that records every deadline set on it, so that a
// test can count them and check how far ahead each was set.
package testconn

import (
	"net"
	"sync"
	"time"
)

// Kinds of deadline, by the method that set it.
const (
	Both  = "both" // SetDeadline
	Read  = "read"
	Write = "write"
)

// Set is one deadline set: when, and for when.
type Set struct {
	At, Deadline time.Time
}

// Deadlines is a net.Conn that records the deadlines set on it; safe for
// concurrent use.
type Deadlines struct {
	net.Conn
	mu   sync.Mutex
	sets map[string][]Set
}

func (c *Deadlines) record(kind string, t time.Time) {
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[string][]Set{}
	}
	c.sets[kind] = append(c.sets[kind], Set{time.Now(), t})
	c.mu.Unlock()
}

// SetDeadline records and sets.
func (c *Deadlines) SetDeadline(t time.Time) error {
	c.record(Both, t)
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline records and sets.
func (c *Deadlines) SetReadDeadline(t time.Time) error {
	c.record(Read, t)
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline records and sets.
func (c *Deadlines) SetWriteDeadline(t time.Time) error {
	c.record(Write, t)
	return c.Conn.SetWriteDeadline(t)
}

// Sets returns the deadlines of one kind set so far, oldest first.
func (c *Deadlines) Sets(kind string) []Set {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Set(nil), c.sets[kind]...)
}
