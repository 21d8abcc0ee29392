package mta_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/sim"
)

// A message that comes in by BDAT, its commands and chunk in one write as
// Exim and Penstock send them, goes out by BDAT to a receiver offering
// CHUNKING, its lines as sent (DATA's end marker and dot-started lines are
// data to a chunk); a receiver whose rule says chunking = false gets it
// after DATA, the same bytes.
func TestChunkingEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	var mu sync.Mutex
	got := map[string]string{}
	hook := func(_ string, rcpts []string, body []byte) {
		mu.Lock()
		got[rcpts[0]] = string(body)
		mu.Unlock()
	}
	chunked, err := w.AddProvider(sim.Behavior{Name: "chunked", BodyHook: hook}, []string{"chunked.test"}, "mx.chunked.test")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := w.AddProvider(sim.Behavior{Name: "plain", BodyHook: hook}, []string{"plain.test"}, "mx.plain.test")
	if err != nil {
		t.Fatal(err)
	}
	no := false
	h := newHarness(t, w, func(c *config.Config) {
		c.MXRules = append(c.MXRules, config.MXRule{Name: "plain", MX: config.Patterns{"*.plain.test"}, Chunking: &no})
		c.ApplyDefaults()
	})

	text := "From: <s@example.org>\r\nSubject: chunk\r\n\r\n.\r\n..two\r\n.leading\r\nend\r\n"
	conn, err := net.DialTimeout("tcp", h.m.SMTPAddr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	expect := func(code int) {
		t.Helper()
		if _, msg, err := r.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v %q", code, err, msg)
		}
	}
	expect(220)
	io.WriteString(conn, "EHLO client.test\r\n")
	expect(250)
	for _, to := range []string{"a@chunked.test", "b@plain.test"} {
		fmt.Fprintf(conn, "MAIL FROM:<s@example.org>\r\nRCPT TO:<%s>\r\nBDAT %d LAST\r\n%s", to, len(text), text)
		expect(250)
		expect(250)
		expect(250)
	}
	io.WriteString(conn, "QUIT\r\n")
	expect(221)

	waitDelivered(t, chunked, 1, 30*time.Second)
	waitDelivered(t, plain, 1, 30*time.Second)
	if n := chunked.Stats().Chunked; n != 1 {
		t.Errorf("the receiver offering CHUNKING got %d messages by BDAT, want 1", n)
	}
	if n := plain.Stats().Chunked; n != 0 {
		t.Errorf("the chunking = false receiver got %d messages by BDAT, want 0", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, to := range []string{"a@chunked.test", "b@plain.test"} {
		if body := got[to]; !strings.HasSuffix(body, "\r\n"+text) || !strings.HasPrefix(body, "Received: ") {
			t.Errorf("%s got %q, want our Received field, then %q", to, body, text)
		}
	}
}
