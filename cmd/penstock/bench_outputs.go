package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/eventsout"
)

// benchOutputFlags turn event outputs on for a bench run: relay with every
// output on versus off measures what following the delivery log costs.
type benchOutputFlags struct {
	webhook              bool
	amqp, nats, postgres string
}

func (o *benchOutputFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.webhook, "webhook", false, "with a [[webhook]] (all events) to a receiver on loopback in this process")
	fs.StringVar(&o.amqp, "amqp", "", "with an amqp [[stream]] to this broker URL (exchange penstock_bench)")
	fs.StringVar(&o.nats, "nats", "", "with a nats [[stream]] to this server URL (JetStream stream PENSTOCK_BENCH, subjects penstock_bench.>)")
	fs.StringVar(&o.postgres, "postgres", "", "with [postgres] to this DSN (schema penstock_bench)")
}

func (o *benchOutputFlags) any() bool {
	return o.webhook || o.amqp != "" || o.nats != "" || o.postgres != ""
}

// apply adds the outputs to cfg; the returned function stops the webhook
// receiver.
func (o *benchOutputFlags) apply(cfg *config.Config) (names string, stop func(), err error) {
	stop = func() {}
	var on []string
	if o.webhook {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", stop, err
		}
		var posts atomic.Int64
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			posts.Add(1)
		})}
		go srv.Serve(ln)
		stop = func() { srv.Close() }
		w := config.Webhook{Name: "bench-webhook", URL: "http://" + ln.Addr().String() + "/", Secret: "bench"}
		cfg.Webhooks = append(cfg.Webhooks, w)
		on = append(on, "webhook")
	}
	if o.amqp != "" {
		cfg.Streams = append(cfg.Streams, config.Stream{Name: "bench-amqp", Type: config.StreamAMQP, URL: o.amqp, Exchange: "penstock_bench"})
		on = append(on, "amqp")
	}
	if o.nats != "" {
		cfg.Streams = append(cfg.Streams, config.Stream{Name: "bench-nats", Type: config.StreamNATS, URL: o.nats,
			SubjectPrefix: "penstock_bench", JetStream: "PENSTOCK_BENCH"})
		on = append(on, "nats")
	}
	if o.postgres != "" {
		cfg.Postgres = config.Postgres{DSN: o.postgres, Schema: "penstock_bench"}
		on = append(on, "postgres")
	}
	cfg.ApplyDefaults()
	if cfg.Postgres.BatchSize == 0 {
		cfg.Postgres.BatchSize = 1000
	}
	return strings.Join(on, "+"), stop, cfg.Validate()
}

// drain waits until every output has sent the whole log (bounded by d) and
// returns how long that took and the outputs' final state.
func benchDrain(ctx context.Context, status func() []eventsout.Status, d time.Duration) (time.Duration, []eventsout.Status) {
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for {
		st := status()
		behind := false
		for _, s := range st {
			behind = behind || s.Lag > 0
		}
		if !behind {
			return time.Since(start), st
		}
		select {
		case <-tick.C:
		case <-deadline:
			return time.Since(start), st
		case <-ctx.Done():
			return time.Since(start), st
		}
	}
}

func printBenchOutputs(w io.Writer, r *benchResult) {
	if r.Outputs == "" {
		return
	}
	fmt.Fprintf(w, "event outputs     %s: all caught up %.2f s after the last delivery\n", r.Outputs, r.OutputsDrainS)
	for _, s := range r.OutputStatus {
		fmt.Fprintf(w, "  %-14s sent %d, lag %d, failures %d %s\n", s.Name, s.Sent, s.Lag, s.Failures, s.LastError)
	}
	if len(r.ReceiversCPUS) == 0 {
		return
	}
	// Each receiver's whole CPU from the run's start until the outputs
	// caught up, whoever its clients were: on a shared machine an upper
	// bound of what this run cost it.
	names := slices.Sorted(maps.Keys(r.ReceiversCPUS))
	var parts []string
	total := 0.0
	for _, n := range names {
		s := r.ReceiversCPUS[n]
		total += s
		parts = append(parts, fmt.Sprintf("%s %.2f s (%.0f us/msg)", n, s, perMsgUs(s, r.Delivered)))
	}
	fmt.Fprintf(w, "receivers cpu     %.2f s (%.0f us/msg) in the local receiver processes, all their clients included: %s\n",
		total, perMsgUs(total, r.Delivered), strings.Join(parts, ", "))
}

func perMsgUs(s float64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return s * 1e6 / float64(n)
}
