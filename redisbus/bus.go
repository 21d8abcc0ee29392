// Package redisbus is the one Redis pub/sub connection of a process and
// the loop that keeps it: every part of the node that listens to Redis
// (quota's release and rejoin notices, cluster's flow changes) registers
// a handler for its channel or pattern here, instead of holding a
// subscription of its own.
//
// One goroutine receives on the connection and hands each message to the
// handler of its channel (or of the pattern it matched). When the
// connection breaks, every handler's Broken is called, the loop waits a
// backoff (50 ms doubling to 1 s) and receives again; go-redis then dials
// again and subscribes every channel and pattern anew, and each
// confirmation calls the Subscribed of its handler, whose owner makes up
// for what it may have missed (messages are not kept while nobody
// listens). Handlers run on the loop's goroutine, one at a time and in
// the order Redis sent: a handler that waits (a round trip at most)
// delays the others.
package redisbus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler receives what the bus gets for one channel or pattern. Any
// field may be nil.
type Handler struct {
	// Message is called with each message's channel and payload.
	Message func(channel, payload string)
	// Subscribed is called each time Redis confirms the subscription:
	// the first time and after every reconnection.
	Subscribed func()
	// Broken is called when the connection fails.
	Broken func(err error)
}

// Bus is one subscription connection and its receive loop.
type Bus struct {
	ps      *redis.PubSub
	log     *slog.Logger
	timeout time.Duration
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	channels map[string]Handler
	patterns map[string]Handler
	closed   bool
}

// New starts the bus on c: the subscription connection is dialled with
// the first Subscribe or PSubscribe. Close stops it.
func New(c *redis.Client, logger *slog.Logger) *Bus {
	if logger == nil {
		logger = slog.Default()
	}
	b := &Bus{ps: c.Subscribe(context.Background()), log: logger, timeout: c.Options().WriteTimeout,
		channels: map[string]Handler{}, patterns: map[string]Handler{}}
	if b.timeout <= 0 {
		b.timeout = 2 * time.Second
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.loop()
	return b
}

// ErrTaken is returned for a channel or pattern that has a handler
// already.
var ErrTaken = errors.New("redisbus: channel has a handler already")

// Subscribe sends the messages of channel to h. With Redis away the
// subscription is made when the bus reconnects; only a second handler
// for the same channel, or a closed bus, is an error.
func (b *Bus) Subscribe(channel string, h Handler) error {
	return b.add(b.channels, channel, h, b.ps.Subscribe)
}

// PSubscribe sends the messages of the channels matching pattern (Redis
// glob syntax) to h.
func (b *Bus) PSubscribe(pattern string, h Handler) error {
	return b.add(b.patterns, pattern, h, b.ps.PSubscribe)
}

func (b *Bus) add(m map[string]Handler, name string, h Handler, sub func(context.Context, ...string) error) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("redisbus: closed")
	}
	if _, ok := m[name]; ok {
		b.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrTaken, name)
	}
	m[name] = h
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	if err := sub(ctx, name); err != nil {
		// go-redis keeps the name and subscribes it on the next
		// connection: the loop's reconnection covers this.
		b.log.Debug("redisbus: subscription deferred until Redis answers", "channel", name, "err", err)
	}
	return nil
}

// Unsubscribe removes the handler of channel.
func (b *Bus) Unsubscribe(channel string) { b.remove(b.channels, channel, b.ps.Unsubscribe) }

// PUnsubscribe removes the handler of pattern.
func (b *Bus) PUnsubscribe(pattern string) { b.remove(b.patterns, pattern, b.ps.PUnsubscribe) }

func (b *Bus) remove(m map[string]Handler, name string, unsub func(context.Context, ...string) error) {
	b.mu.Lock()
	_, ok := m[name]
	delete(m, name)
	closed := b.closed
	b.mu.Unlock()
	if !ok || closed {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	// An error leaves Redis sending what nobody handles any more: the
	// loop drops it.
	_ = unsub(ctx, name)
}

// Close stops the loop and closes the connection. Handlers are not called
// after it returns.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	err := b.ps.Close()
	b.wg.Wait()
	return err
}

func (b *Bus) handler(pattern bool, name string) (Handler, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return Handler{}, false
	}
	if pattern {
		h, ok := b.patterns[name]
		return h, ok
	}
	h, ok := b.channels[name]
	return h, ok
}

func (b *Bus) broken(err error) {
	b.mu.Lock()
	var hs []Handler
	if !b.closed {
		for _, h := range b.channels {
			hs = append(hs, h)
		}
		for _, h := range b.patterns {
			hs = append(hs, h)
		}
	}
	b.mu.Unlock()
	for _, h := range hs {
		if h.Broken != nil {
			h.Broken(err)
		}
	}
}

func (b *Bus) loop() {
	defer b.wg.Done()
	const first = 50 * time.Millisecond
	backoff := first
	down := false
	for {
		msg, err := b.ps.Receive(b.ctx)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if !down {
				down = true
				b.log.Warn("redisbus: subscription connection lost; reconnecting", "err", err)
			}
			b.broken(err)
			t := time.NewTimer(backoff)
			select {
			case <-b.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = first
		switch m := msg.(type) {
		case *redis.Message:
			if h, ok := b.handler(m.Pattern != "", cmp.Or(m.Pattern, m.Channel)); ok && h.Message != nil {
				h.Message(m.Channel, m.Payload)
			}
		case *redis.Subscription:
			if m.Kind != "subscribe" && m.Kind != "psubscribe" {
				continue
			}
			if down {
				down = false
				b.log.Info("redisbus: subscriptions restored")
			}
			if h, ok := b.handler(m.Kind == "psubscribe", m.Channel); ok && h.Subscribed != nil {
				h.Subscribed()
			}
		}
	}
}
