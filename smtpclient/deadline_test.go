package smtpclient

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/internal/testconn"
)

type deadlineDialer struct{ conn *testconn.Deadlines }

func (d *deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.conn = &testconn.Deadlines{Conn: c}
	return d.conn, nil
}

// A Send sets the socket's deadline once per timeout it runs under (command,
// then data), not before every command and reply; each deadline set is at
// least the timeout from the moment it was set, and at most 1/64 more.
func TestSendSetsFewDeadlines(t *testing.T) {
	addr := fastSink(t, false)
	o := testOpts()
	o.CommandTimeout, o.DataTimeout = 5*time.Minute, 10*time.Minute
	d := &deadlineDialer{}
	o.Dialer = d
	c, err := Dial(context.Background(), addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := len(d.conn.Sets(testconn.Both))
	if _, err := c.Send(ctx, "sender@example.org", []string{"a@example.com", "b@example.com"}, body2K()); err != nil {
		t.Fatal(err)
	}
	sets := d.conn.Sets(testconn.Both)[before:]
	if len(sets) > 3 {
		t.Errorf("one Send set the deadline %d times, want at most 3 (command, data, command again for the next)", len(sets))
	}
	if len(sets) == 0 {
		t.Fatal("no deadline set by Send")
	}
	for _, s := range sets {
		if got := s.Deadline.Sub(s.At); got < o.CommandTimeout || got > o.DataTimeout+o.DataTimeout/64 {
			t.Errorf("deadline %v after it was set, want within [%v, %v]", got, o.CommandTimeout, o.DataTimeout+o.DataTimeout/64)
		}
	}
}

// A context deadline sooner than the timeout is set exactly.
func TestSendContextDeadlineExact(t *testing.T) {
	addr := fastSink(t, false)
	d := &deadlineDialer{}
	o := testOpts()
	o.Dialer = d
	c, err := Dial(context.Background(), addr, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dl := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	if _, err := c.Send(ctx, "sender@example.org", []string{"a@example.com"}, body2K()); err != nil {
		t.Fatal(err)
	}
	sets := d.conn.Sets(testconn.Both)
	if last := sets[len(sets)-1].Deadline; !last.Equal(dl) {
		t.Errorf("deadline %v, want the context's %v", last, dl)
	}
}
