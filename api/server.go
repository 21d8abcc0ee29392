package api

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// HTTP timeouts. A connection that sends nothing, or sends slowly, must not
// hold a file descriptor forever: idle keep-alive connections by the
// thousand once exhausted the process's descriptors, and then SMTP
// deliveries failed with "too many open files".
const (
	httpReadHeaderTimeout = 10 * time.Second
	// Whole requests, bodies included: a campaign's recipient list is
	// streamed in one request, so this is generous.
	httpReadTimeout  = 10 * time.Minute
	httpWriteTimeout = 10 * time.Minute
)

// NewServer builds the one HTTP server of a node: every timeout set,
// and at most [http] max_connections connections open at once on ln (the
// returned listener).
func NewServer(h http.Handler, ln net.Listener, cfg config.HTTP) (*http.Server, net.Listener) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       cfg.IdleTimeout.Std(),
	}
	return srv, newLimitListener(ln, cfg.MaxConnections)
}

// MetricsAuth guards /metrics with [http] metrics_token, or else the API
// token, unless metrics_open says a scraper may read it without one.
func MetricsAuth(cfg config.HTTP, h http.Handler) http.Handler {
	if cfg.MetricsOpen {
		return h
	}
	if cfg.MetricsToken != "" {
		return BearerAuth(cfg.MetricsToken, "[http] metrics_token", h)
	}
	if cfg.Token != "" {
		return BearerAuth(cfg.Token, "[http] token", h)
	}
	return h // no token at all: the listener is on loopback (the caller sees to it)
}

// limitListener lets at most cap(slots) connections be open at once. Accept
// waits for a slot before it takes the next connection from the kernel, so
// connections beyond the limit wait in the listen backlog (and the kernel
// refuses them once that is full) instead of each taking a descriptor.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max(n, 1)), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
