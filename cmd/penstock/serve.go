package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mta"
)

// loadConfig reads the file, or the built-in defaults when path is "".
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", stderr)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	grace := fs.Duration("grace", 30*time.Second, "on SIGTERM/SIGINT, how long sessions may take to finish")
	verbose := fs.Bool("v", false, "debug logging")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "penstock:", err)
		return 1
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	raiseFileLimit(logger)
	m, err := mta.New(cfg, mta.Options{Logger: logger})
	if err != nil {
		fmt.Fprintln(stderr, "penstock:", err)
		return 1
	}
	if err := m.Start(context.Background()); err != nil {
		fmt.Fprintln(stderr, "penstock:", err)
		m.Shutdown(context.Background())
		return 1
	}
	logger.Info("penstock running", "spool", cfg.Server.SpoolDir, "log", cfg.Server.LogDir, "smtp", m.SMTPAddr(), "http", m.HTTPAddr())

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for s := range sig {
		if s == syscall.SIGHUP {
			m.ReloadFile() // logs its outcome, as a reload through the API does
			continue
		}
		logger.Info("stopping: no new mail accepted; sessions finish", "grace", *grace)
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		err := m.Shutdown(ctx)
		cancel()
		if err != nil {
			logger.Warn("stopped with errors; queued mail stays in the spool", "err", err)
			return 1
		}
		logger.Info("stopped; queued mail stays in the spool")
		return 0
	}
	return 0
}
