package eventsout

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/penstock-mta/penstock/config"
)

// logIDs reads every event id in the delivery log, in order.
func (e *env) logIDs() []string {
	e.t.Helper()
	tl := NewTail(e.cfg.Server.LogDir)
	tl.Refresh()
	var ids []string
	c := Cursor{}
	for i := 0; i < 1000; i++ {
		evs, next, _, _, err := tl.Read(c, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
		if next == c {
			return ids
		}
		c = next
	}
	e.t.Fatal("the log did not end")
	return nil
}

// sameIDs asserts the receiver holds exactly the log's event ids.
func (r *received) sameIDs(t *testing.T, ids []string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byID) != len(ids) {
		t.Fatalf("receiver has %d ids, the log %d", len(r.byID), len(ids))
	}
	for _, id := range ids {
		if _, ok := r.byID[id]; !ok {
			t.Fatalf("event %s of the log never arrived", id)
		}
	}
}

func unique(prefix string) string {
	return fmt.Sprintf("%s%d_%d", prefix, os.Getpid(), time.Now().UnixNano())
}

// AMQP: the broker cut off mid-run then back; a consumer bound to the
// exchange gets every event of the log, by message-id, in order.
func TestAMQPBrokerDownThenBack(t *testing.T) {
	const broker = "127.0.0.1:5672"
	exchange := unique("penstock_test_")
	conn, err := amqp.Dial("amqp://guest:guest@" + broker + "/")
	if err != nil {
		t.Fatalf("RabbitMQ on %s (started by .ci/run): %v", broker, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.ExchangeDelete(exchange, false, false)
	q, err := ch.QueueDeclare(exchange, false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := newReceived()
	keys := map[string]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for d := range deliveries {
			var ev map[string]any
			if err := json.Unmarshal(d.Body, &ev); err != nil || ev["event_id"] != d.MessageId || ev["type"] != d.RoutingKey {
				t.Errorf("message %q key %q: %s", d.MessageId, d.RoutingKey, d.Body)
			}
			got.add(t, []map[string]any{ev})
			got.mu.Lock()
			keys[d.RoutingKey]++
			got.mu.Unlock()
		}
	}()

	px := newProxy(t, broker)
	e := newEnv(t, nil)
	e.cfg.Streams = []config.Stream{{Name: "bus", Type: config.StreamAMQP, URL: "amqp://guest:guest@" + px.addr + "/",
		Exchange: exchange, BatchSize: 8}}
	m := e.manager(Options{})
	e.write(20)
	waitFor(t, 10*time.Second, "20 events", func() bool { return got.count() == 20 })
	px.down()
	e.write(20)
	waitFor(t, 10*time.Second, "a failure", func() bool { return m.Status()[0].Failures > 0 })
	px.up()
	waitFor(t, 20*time.Second, "40 events", func() bool { return got.count() == 40 })
	got.checkAll(t, 0, 40)
	got.sameIDs(t, e.logIDs())
	got.mu.Lock()
	if keys["Delivery"] < 20 || keys["Bounce"] < 20 {
		t.Errorf("routing keys %v", keys)
	}
	got.mu.Unlock()
	m.Close()
	if err := ch.ExchangeDelete(exchange, false, false); err != nil {
		t.Errorf("deleting the test exchange: %v", err)
	}
	ch.Close()
	<-done
}

// NATS JetStream: the server cut off mid-run then back; the stream holds
// every event of the log once (Nats-Msg-Id), on prefix.<type>.
func TestNATSServerDownThenBack(t *testing.T) {
	const server = "127.0.0.1:4222"
	nc, err := nats.Connect("nats://" + server)
	if err != nil {
		t.Fatalf("NATS on %s (started by .ci/run): %v", server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := strings.ToUpper(unique("PENSTOCK_T"))
	prefix := strings.ToLower(stream)
	ctx := context.Background()
	defer js.DeleteStream(ctx, stream)

	px := newProxy(t, server)
	e := newEnv(t, nil)
	e.cfg.Streams = []config.Stream{{Name: "bus", Type: config.StreamNATS, URL: "nats://" + px.addr,
		SubjectPrefix: prefix, JetStream: stream, BatchSize: 8}}
	m := e.manager(Options{})
	e.write(20)
	count := func() int {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return -1
		}
		info, err := s.Info(ctx)
		if err != nil {
			return -1
		}
		return int(info.State.Msgs)
	}
	waitFor(t, 10*time.Second, "20 messages", func() bool { return count() == 20 })
	px.down()
	e.write(20)
	waitFor(t, 10*time.Second, "a failure", func() bool { return m.Status()[0].Failures > 0 })
	px.up()
	waitFor(t, 20*time.Second, "40 messages", func() bool { return count() == 40 })

	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	got := newReceived()
	for seq := uint64(1); seq <= 40; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev map[string]any
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if msg.Subject != prefix+"."+ev["type"].(string) || msg.Header.Get(jetstream.MsgIDHeader) != ev["event_id"] {
			t.Errorf("message %d: subject %s header %v", seq, msg.Subject, msg.Header)
		}
		got.add(t, []map[string]any{ev})
	}
	got.checkAll(t, 0, 40)
	got.sameIDs(t, e.logIDs())
	if got.dups != 0 {
		t.Errorf("%d duplicates in the stream", got.dups)
	}
	m.Close() // before the deferred DeleteStream: nothing makes the stream again
}

// AMQP: a batch the broker takes in part (a full queue refuses the rest
// with nacks) is failed whole; sent again it arrives whole, every event
// under the same message-id and in the same order.
func TestAMQPBatchPartlyRefused(t *testing.T) {
	const broker = "127.0.0.1:5672"
	exchange := unique("penstock_test_nack_")
	conn, err := amqp.Dial("amqp://guest:guest@" + broker + "/")
	if err != nil {
		t.Fatalf("RabbitMQ on %s (started by .ci/run): %v", broker, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.ExchangeDelete(exchange, false, false)
	// all collects everything; small holds 3 messages and refuses more.
	all, err := ch.QueueDeclare(exchange+"_all", false, true, false, false, nil)
	if err == nil {
		_, err = ch.QueueDeclare(exchange+"_small", false, true, false, false,
			amqp.Table{"x-max-length": int32(3), "x-overflow": "reject-publish"})
	}
	if err == nil {
		err = ch.QueueBind(all.Name, "#", exchange, false, nil)
	}
	if err == nil {
		err = ch.QueueBind(exchange+"_small", "#", exchange, false, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(all.Name, false, false, false)

	var evs []Event
	for i := range 8 {
		ev, ok := makeEvent(fmt.Sprintf("k-%d", 100*i), []byte(fmt.Sprintf(`{"type":"Delivery","id":"m%d"}`, i)))
		if !ok {
			t.Fatal("makeEvent refused a record")
		}
		evs = append(evs, ev)
	}
	snd := newAMQP(config.Stream{Name: "bus", Type: config.StreamAMQP, URL: "amqp://guest:guest@" + broker + "/", Exchange: exchange})
	defer snd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := snd.Send(ctx, evs); err == nil || !strings.Contains(err.Error(), "nack") {
		t.Fatalf("a batch the broker refused in part: Send = %v, want a nack error", err)
	}
	if _, err := ch.QueueDelete(exchange+"_small", false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := snd.Send(ctx, evs); err != nil {
		t.Fatalf("the same batch again, with room: %v", err)
	}
	deliveries, err := ch.Consume(all.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < 2*len(evs) {
		select {
		case d := <-deliveries:
			ids = append(ids, d.MessageId)
		case <-ctx.Done():
			t.Fatalf("got %d messages of %d: %v", len(ids), 2*len(evs), ids)
		}
	}
	// Both sends, each whole and in log order, under the events' own ids.
	for i, id := range ids {
		if want := evs[i%len(evs)].ID; id != want {
			t.Fatalf("message %d has id %q, want %q (all: %v)", i, id, want, ids)
		}
	}
}
