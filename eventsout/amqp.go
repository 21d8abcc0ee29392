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
type AMQP struct {
	cfg config.Stream

	mu   sync.Mutex
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newAMQP(cfg config.Stream) Sender { return &AMQP{cfg: cfg} }

func (a *AMQP) connect(ctx context.Context) error {
	conn, err := amqp.DialConfig(a.cfg.URL, amqp.Config{
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 10 * time.Second}
			return d.DialContext(ctx, network, addr)
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
	a.conn, a.ch = conn, ch
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
		a.conn, a.ch = nil, nil
	}
	return err
}

func (a *AMQP) publish(ctx context.Context, evs []Event) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(evs))
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
		a.conn, a.ch = nil, nil
	}
	return nil
}
