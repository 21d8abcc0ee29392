package eventsout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/penstock-mta/penstock/config"
)

// NATS publishes each event to <subject_prefix>.<type> through JetStream,
// with the event id as Nats-Msg-Id (JetStream drops a duplicate within the
// stream's duplicate window), and counts a batch as taken only when every
// message is acknowledged by the stream.
type NATS struct {
	cfg config.Stream

	mu     sync.Mutex
	nc     *nats.Conn
	js     jetstream.JetStream
	closed chan struct{} // closed when nc closes: pending acks will never come
}

func newNATS(cfg config.Stream) Sender { return &NATS{cfg: cfg} }

func (n *NATS) connect(ctx context.Context) error {
	// No reconnect loop inside the client: a failed batch drops the
	// connection and the output's own backoff makes a new one.
	closed := make(chan struct{})
	nc, err := nats.Connect(n.cfg.URL, nats.Timeout(10*time.Second), nats.NoReconnect(), nats.Name("penstock"),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		return fmt.Errorf("nats %s: %w", n.cfg.Name, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("nats %s: %w", n.cfg.Name, err)
	}
	if n.cfg.JetStream != "" {
		if _, err := js.Stream(ctx, n.cfg.JetStream); errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: n.cfg.JetStream,
				Subjects: []string{n.cfg.SubjectPrefix + ".>"}, Storage: jetstream.FileStorage})
			if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				nc.Close()
				return fmt.Errorf("nats %s: creating stream %s: %w", n.cfg.Name, n.cfg.JetStream, err)
			}
		} else if err != nil {
			nc.Close()
			return fmt.Errorf("nats %s: stream %s: %w", n.cfg.Name, n.cfg.JetStream, err)
		}
	}
	n.nc, n.js, n.closed = nc, js, closed
	return nil
}

// Send publishes evs asynchronously and waits for every acknowledgement.
func (n *NATS) Send(ctx context.Context, evs []Event) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc == nil || n.nc.IsClosed() {
		if err := n.connect(ctx); err != nil {
			return err
		}
	}
	err := n.publish(ctx, evs)
	if err != nil {
		n.nc.Close()
		n.nc, n.js = nil, nil
	}
	return err
}

func (n *NATS) publish(ctx context.Context, evs []Event) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	acks := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		msg := nats.NewMsg(n.cfg.SubjectPrefix + "." + e.Type)
		msg.Data = e.JSON
		msg.Header.Set(jetstream.MsgIDHeader, e.ID)
		f, err := n.js.PublishMsgAsync(msg)
		if err != nil {
			return fmt.Errorf("nats %s: publish: %w", n.cfg.Name, err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("nats %s: not acknowledged: %w", n.cfg.Name, err)
		case <-n.closed:
			return fmt.Errorf("nats %s: connection closed before the acknowledgements", n.cfg.Name)
		case <-ctx.Done():
			return fmt.Errorf("nats %s: waiting for acknowledgements: %w", n.cfg.Name, ctx.Err())
		}
	}
	return nil
}

// Close closes the connection.
func (n *NATS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.nc != nil {
		n.nc.Close()
		n.nc, n.js = nil, nil
	}
	return nil
}
