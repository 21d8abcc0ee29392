package eventsout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/penstock-mta/penstock/config"
)

// AMQP publishes each event to a durable topic exchange with the record
// type as routing key, persistent, with the event id as message-id, and
// counts a batch as taken only when the broker has confirmed every message
// (RabbitMQ publisher confirms).
//
// The client library writes each publish to the socket by itself; a batch
// is instead gathered (heldConn) and written at once before its confirms
// are awaited: one write for Penstock and one read for the broker instead
// of one per event.
type AMQP struct {
	cfg config.Stream

	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
	sock *heldConn
}

func newAMQP(cfg config.Stream) Sender { return &AMQP{cfg: cfg} }

func (a *AMQP) connect(ctx context.Context) error {
	var sock *heldConn
	conn, err := amqp.DialConfig(a.cfg.URL, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			sock = &heldConn{Conn: c}
			return sock, nil
		},
		Heartbeat: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("amqp %s: %w", a.cfg.Name, err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil {
		err = ch.ExchangeDeclare(a.cfg.Exchange, "topic", true, false, false, false, nil)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("amqp %s: %w", a.cfg.Name, err)
	}
	a.conn, a.ch, a.sock = conn, ch, sock
	return nil
}

// Send publishes evs and waits for their confirms; any nack or lost
// connection fails the whole batch, to be sent again (the consumer
// deduplicates on message-id).
func (a *AMQP) Send(ctx context.Context, evs []Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil || a.conn.IsClosed() {
		if err := a.connect(ctx); err != nil {
			return err
		}
	}
	err := a.publish(ctx, evs)
	if err != nil {
		a.conn.Close()
		a.conn, a.ch, a.sock = nil, nil, nil
	}
	return err
}

func (a *AMQP) publish(ctx context.Context, evs []Event) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(evs))
	// What the library writes while held is sent by release; every return
	// path releases before waiting (the confirms need the publishes out).
	a.sock.hold()
	held := true
	defer func() {
		if held {
			a.sock.release()
		}
	}()
	for _, e := range evs {
		dc, err := a.ch.PublishWithDeferredConfirmWithContext(ctx, a.cfg.Exchange, e.Type, false, false, amqp.Publishing{
			ContentType: "application/json", DeliveryMode: amqp.Persistent,
			MessageId: e.ID, Type: e.Type, Timestamp: time.Now(), Body: e.JSON,
		})
		if err != nil {
			return fmt.Errorf("amqp %s: publish: %w", a.cfg.Name, err)
		}
		confirms = append(confirms, dc)
	}
	held = false
	if err := a.sock.release(); err != nil {
		return fmt.Errorf("amqp %s: publish: %w", a.cfg.Name, err)
	}
	for _, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("amqp %s: confirm: %w", a.cfg.Name, err)
		}
		if !ok {
			return errors.New("amqp " + a.cfg.Name + ": the broker refused a message (nack)")
		}
	}
	return nil
}

// Close closes the connection.
func (a *AMQP) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		a.conn.Close()
		a.conn, a.ch, a.sock = nil, nil, nil
	}
	return nil
}

// heldConn is a connection whose writes can be held back and sent as one.
// Writes from other goroutines of the library (heartbeats) while held are
// gathered too; they go out with the batch, a moment later.
type heldConn struct {
	net.Conn

	mu   sync.Mutex
	held bool
	buf  []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *heldConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// release writes what was held and stops holding. A failed write leaves
// the library believing frames went out that did not: the caller fails the
// batch and drops the connection.
func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // an unusually large batch: do not keep its buffer
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
