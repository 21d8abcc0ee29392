package mta

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
)

// Shutdown waits for the delivery-log subscribers it started: one still
// draining its channel holds Shutdown up, and Shutdown returns only after it
// is done (it used to cancel the subscriptions and return at once, leaving
// the dashboard, metrics and bounce-statistics goroutines running).
func TestShutdownWaitsForSubscribers(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.Hostname = "penstock.test"
	cfg.Server.SpoolDir = filepath.Join(dir, "spool")
	cfg.Server.LogDir = filepath.Join(dir, "log")
	cfg.DNS.Nameservers = []string{"127.0.0.1:1"} // never asked: nothing is sent
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	m, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	m.subscribe(func(ch <-chan *events.Record) {
		for range ch {
		}
		close(closed)
		<-release
		close(done)
	})
	returned := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		returned <- m.Shutdown(ctx)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown never cancelled the subscription")
	}
	// The subscriber is blocked: a Shutdown that waits for it cannot return.
	// One that does not would return within this bound.
	select {
	case err := <-returned:
		t.Fatalf("Shutdown returned (%v) while a subscriber was still running", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the subscriber ended")
	}
	select {
	case <-done:
	default:
		t.Fatal("Shutdown returned before its subscriber ended")
	}
}
