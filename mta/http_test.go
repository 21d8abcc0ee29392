package mta_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// rawGet sends one keep-alive GET on c and reads the response.
func rawGet(t *testing.T, c net.Conn, r *bufio.Reader, path, token string) int {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: penstock\r\n"
	if token != "" {
		req += "Authorization: Bearer " + token + "\r\n"
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestHTTPIdleConnectionsClosed replays the descriptor exhaustion: clients
// that open keep-alive connections, send one unauthenticated request and
// then nothing. The server must close them after [http] idle_timeout.
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, newWorld(t), func(c *config.Config) {
		c.HTTP.Token = "secret"
		c.HTTP.IdleTimeout = config.Duration(300 * time.Millisecond)
	})
	const n = 20
	type idle struct {
		c net.Conn
		r *bufio.Reader
	}
	var conns []idle
	for range n {
		c, err := net.DialTimeout("tcp", h.m.HTTPAddr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufio.NewReader(c)
		if code := rawGet(t, c, r, "/api/v1/status", ""); code != http.StatusUnauthorized {
			t.Fatalf("unauthenticated request: %d, want 401", code)
		}
		conns = append(conns, idle{c, r})
	}
	for i, ic := range conns {
		// The server closes an idle connection: the read ends with EOF
		// well before this deadline; a timeout means it was kept open.
		ic.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := ic.r.ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("idle connection %d still open after 10s (idle_timeout 300ms)", i)
		}
		if err == nil {
			t.Fatalf("idle connection %d: unexpected data", i)
		}
	}
}

// TestHTTPConnectionCap: with max_connections = 3, a fourth connection is
// not served while three are open, and is once one of them closes.
func TestHTTPConnectionCap(t *testing.T) {
	t.Parallel()
	h := newHarness(t, newWorld(t), func(c *config.Config) {
		c.HTTP.MaxConnections = 3
		c.HTTP.IdleTimeout = config.Duration(time.Minute)
	})
	var open []net.Conn
	for range 3 {
		c, err := net.DialTimeout("tcp", h.m.HTTPAddr(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code := rawGet(t, c, bufio.NewReader(c), "/api/v1/status", ""); code != http.StatusOK {
			t.Fatalf("status: %d", code)
		}
		open = append(open, c)
	}
	extra, err := net.DialTimeout("tcp", h.m.HTTPAddr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	io.WriteString(extra, "GET /api/v1/status HTTP/1.1\r\nHost: penstock\r\n\r\n")
	r := bufio.NewReader(extra)
	// A negative check needs a bound: 300ms is ample for a loopback reply.
	extra.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("a fourth connection was served while max_connections = 3 were open")
	}
	open[0].Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served once a slot freed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %d", resp.StatusCode)
	}
}

// TestMetricsToken replays the leak: /metrics answered without the token
// when [http] token was set.
func TestMetricsToken(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		http config.HTTP
		want map[string]int // token sent -> status
	}{
		{"api token", config.HTTP{Token: "api"}, map[string]int{"": 401, "wrong": 401, "api": 200}},
		{"metrics token", config.HTTP{Token: "api", MetricsToken: "scrape"}, map[string]int{"": 401, "api": 401, "scrape": 200}},
		{"metrics open", config.HTTP{Token: "api", MetricsOpen: true}, map[string]int{"": 200}},
		{"no token, loopback", config.HTTP{}, map[string]int{"": 200}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, newWorld(t), func(c *config.Config) {
				c.HTTP.Token, c.HTTP.MetricsToken, c.HTTP.MetricsOpen = tc.http.Token, tc.http.MetricsToken, tc.http.MetricsOpen
			})
			for token, want := range tc.want {
				req, _ := http.NewRequest("GET", "http://"+h.m.HTTPAddr()+"/metrics", nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("token %q: %d, want %d", token, resp.StatusCode, want)
				}
				if want == 200 && !strings.Contains(string(b), "penstock_") {
					t.Errorf("token %q: no metrics in the body", token)
				}
				if want != 200 && strings.Contains(string(b), "penstock_") {
					t.Errorf("token %q: metrics served with %d", token, resp.StatusCode)
				}
			}
		})
	}
}
