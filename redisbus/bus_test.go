package redisbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/cluster/redistest"
	"github.com/penstock-mta/penstock/redisbus"
)

type msg struct{ handler, channel, payload string }

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// Messages go to the handler of their channel or of the pattern they
// matched; a second handler for a name is refused; after Unsubscribe a
// handler gets nothing more.
func TestBusRoutes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	bus := redisbus.New(c, nil)
	t.Cleanup(func() { bus.Close() })
	got := make(chan msg, 16)
	subscribed := make(chan string, 4)
	handler := func(name string) redisbus.Handler {
		return redisbus.Handler{
			Message:    func(channel, payload string) { got <- msg{name, channel, payload} },
			Subscribed: func() { subscribed <- name },
		}
	}
	if err := bus.Subscribe("t:chan", handler("chan")); err != nil {
		t.Fatal(err)
	}
	if err := bus.PSubscribe("t:pat:*", handler("pat")); err != nil {
		t.Fatal(err)
	}
	if err := bus.Subscribe("t:chan", handler("again")); !errors.Is(err, redisbus.ErrTaken) {
		t.Fatalf("second handler for t:chan: %v, want ErrTaken", err)
	}
	seen := map[string]bool{}
	for range 2 {
		seen[recv[string](t, subscribed, "the subscriptions")] = true
	}
	if !seen["chan"] || !seen["pat"] {
		t.Fatalf("subscriptions confirmed: %v", seen)
	}
	ctx := context.Background()
	c.Publish(ctx, "t:chan", "1")
	c.Publish(ctx, "t:pat:x", "2")
	c.Publish(ctx, "t:other", "3")
	if m := recv[msg](t, got, "t:chan"); m != (msg{"chan", "t:chan", "1"}) {
		t.Errorf("first message %+v", m)
	}
	if m := recv[msg](t, got, "t:pat:x"); m != (msg{"pat", "t:pat:x", "2"}) {
		t.Errorf("second message %+v", m)
	}
	bus.Unsubscribe("t:chan")
	c.Publish(ctx, "t:chan", "4")
	c.Publish(ctx, "t:pat:y", "5")
	// In order on one connection: had the channel's handler been called,
	// its message would come first.
	if m := recv[msg](t, got, "t:pat:y"); m != (msg{"pat", "t:pat:y", "5"}) {
		t.Errorf("after Unsubscribe: %+v, want only the pattern's message", m)
	}
}
