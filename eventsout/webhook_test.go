package eventsout

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/spool"
)

// verify checks a signature header the way the README tells receivers to.
func verify(secret, header string, body []byte) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	want, _ := hex.DecodeString(sig)
	return hmac.Equal(mac.Sum(nil), want)
}

func hook(url string) config.Webhook {
	w := config.Webhook{Name: "hook", URL: url, Secret: "s3cret", BatchSize: 7}
	w.BatchTime = config.Duration(20 * time.Millisecond)
	w.Timeout = config.Duration(2 * time.Second)
	return w
}

// A receiver down for a while then back gets every event, in order, each
// duplicate carrying the id of the same record; the body is signed.
func TestWebhookDownThenBack(t *testing.T) {
	e := newEnv(t, nil)
	got := newReceived()
	var up atomic.Bool
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !verify("s3cret", r.Header.Get(SignatureHeader), body) {
			t.Errorf("bad signature %q", r.Header.Get(SignatureHeader))
		}
		if !up.Load() {
			refused.Add(1)
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if err := got.addJSON(t, body); err != nil {
			t.Errorf("body is not a JSON array: %v", err)
		}
	}))
	defer srv.Close()
	e.cfg.Webhooks = []config.Webhook{hook(srv.URL)}
	m := e.manager(Options{})
	e.write(40)
	waitFor(t, 5*time.Second, "refusals", func() bool { return refused.Load() >= 3 })
	if st := m.Status()[0]; st.Lag != 40 || st.Failures == 0 || !strings.Contains(st.LastError, "503") {
		t.Errorf("status while down = %+v, want lag 40 and a 503 error", st)
	}
	up.Store(true)
	e.write(60)
	waitFor(t, 10*time.Second, "100 events", func() bool { return got.count() == 100 })
	got.checkAll(t, 0, 100)
	waitFor(t, 5*time.Second, "lag 0", func() bool { return m.Status()[0].Lag == 0 })
}

// Stopping Penstock while the receiver is down, writing more, and starting
// again loses nothing: the cursor is in the spool.
func TestWebhookRestartKeepsCursor(t *testing.T) {
	e := newEnv(t, nil)
	got := newReceived()
	var up atomic.Bool
	up.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !up.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		got.addJSON(t, body)
	}))
	defer srv.Close()
	e.cfg.Webhooks = []config.Webhook{hook(srv.URL)}
	m := e.manager(Options{})
	e.write(10)
	waitFor(t, 5*time.Second, "10 events", func() bool { return got.count() == 10 })
	up.Store(false)
	e.write(10)
	waitFor(t, 5*time.Second, "a failure", func() bool { return m.Status()[0].Failures > 0 })
	m.Close()
	e.write(10) // written while no output runs
	up.Store(true)
	e.manager(Options{})
	waitFor(t, 10*time.Second, "30 events", func() bool { return got.count() == 30 })
	got.checkAll(t, 0, 30)
}

// Receivers that answer garbage, hang past the timeout, or drop the
// connection are retried; every event still arrives.
func TestWebhookMalformedResponses(t *testing.T) {
	e := newEnv(t, nil)
	got := newReceived()
	var calls atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch calls.Add(1) {
		case 1: // 500 with binary garbage
			w.WriteHeader(500)
			w.Write([]byte{0xff, 0xfe, 0, 1, 2})
		case 2: // slower than the timeout
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case 3: // not HTTP at all, then hang up
			c, buf, _ := w.(http.Hijacker).Hijack()
			buf.WriteString("SMTP/1.0 220 hello\r\n\r\n")
			buf.Flush()
			c.Close()
		case 4: // a redirect is not acceptance
			w.WriteHeader(http.StatusNoContent + 100)
		case 5: // huge reply
			w.WriteHeader(400)
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		default:
			got.addJSON(t, body)
		}
	}))
	defer srv.Close()
	defer close(release)
	h := hook(srv.URL)
	h.Timeout = config.Duration(200 * time.Millisecond)
	e.cfg.Webhooks = []config.Webhook{h}
	m := e.manager(Options{})
	e.write(5)
	waitFor(t, 10*time.Second, "5 events", func() bool { return got.count() == 5 })
	got.checkAll(t, 0, 5)
	if st := m.Status()[0]; st.Failures != 5 {
		t.Errorf("failures = %d, want 5 (%s)", st.Failures, st.LastError)
	}
}

// Only the configured types are sent; the others still move the cursor.
func TestWebhookEventFilter(t *testing.T) {
	e := newEnv(t, nil)
	got := newReceived()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"type":"Delivery"`) {
			t.Errorf("a Delivery was sent to a Bounce-only hook")
		}
		got.addJSON(t, body)
	}))
	defer srv.Close()
	h := hook(srv.URL)
	h.Events = []string{"Bounce"}
	e.cfg.Webhooks = []config.Webhook{h}
	m := e.manager(Options{})
	e.write(20)
	waitFor(t, 5*time.Second, "10 bounces", func() bool { return got.count() == 10 })
	waitFor(t, 5*time.Second, "lag 0", func() bool { return m.Status()[0].Lag == 0 })
}

// Rotation renames delivery.log; the cursor and the event ids follow the
// file, so nothing is sent twice with two ids nor lost.
func TestWebhookAcrossRotation(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	e := newEnv(t, now)
	got := newReceived()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.addJSON(t, body)
	}))
	defer srv.Close()
	e.cfg.Webhooks = []config.Webhook{hook(srv.URL)}
	e.manager(Options{})
	e.write(15)
	clock.Add(int64(2 * time.Hour))
	e.write(15)
	waitFor(t, 5*time.Second, "30 events", func() bool { return got.count() == 30 })
	got.checkAll(t, 0, 30)
	if _, err := os.Stat(filepath.Join(e.cfg.Server.LogDir, "delivery-20260301.log")); err != nil {
		t.Fatalf("the log did not rotate: %v", err)
	}
}

// A file deleted under a cursor (retention) while Penstock was stopped is
// skipped, counted, and the output goes on with the oldest file left.
func TestCursorSkipsDeletedFile(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()).UTC() }
	e := newEnv(t, now)
	got := newReceived()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.addJSON(t, body)
	}))
	defer srv.Close()
	e.cfg.Webhooks = []config.Webhook{hook(srv.URL)}
	e.write(1)
	m := e.manager(Options{}) // the cursor: after r0, in the first file
	m.Close()
	e.write(4)
	clock.Add(int64(2 * time.Hour))
	e.write(5) // rotates: r0..r4 are in delivery-20260301.log
	if err := os.Remove(filepath.Join(e.cfg.Server.LogDir, "delivery-20260301.log")); err != nil {
		t.Fatal(err)
	}
	m = e.manager(Options{})
	waitFor(t, 5*time.Second, "5 events", func() bool { return got.count() == 5 })
	got.checkAll(t, 5, 10)
	if st := m.Status()[0]; st.Skipped != 1 {
		t.Errorf("skipped = %d, want 1", st.Skipped)
	}
}

// penstock webhook test's call.
func TestWebhookTest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !verify("s3cret", r.Header.Get(SignatureHeader), body) || !strings.Contains(string(body), `"type":"Test"`) {
			w.WriteHeader(400)
			return
		}
		w.Write([]byte("ok thanks"))
	}))
	defer srv.Close()
	code, reply, err := NewWebhook(hook(srv.URL), nil).Test(t.Context())
	if err != nil || code != 200 || reply != "ok thanks" {
		t.Fatalf("Test = %d %q %v", code, reply, err)
	}
}

// https receivers are verified: an unknown certificate is a failure
// (retried), a trusted one delivers.
func TestWebhookTLSVerified(t *testing.T) {
	got := newReceived()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.addJSON(t, body)
	}))
	defer srv.Close()

	e := newEnv(t, nil)
	e.cfg.Webhooks = []config.Webhook{hook(srv.URL)}
	m := e.manager(Options{}) // system roots: the test certificate is unknown
	e.write(3)
	waitFor(t, 5*time.Second, "a certificate failure", func() bool {
		return strings.Contains(m.Status()[0].LastError, "certificate")
	})
	if got.count() != 0 {
		t.Fatal("sent to an unverified server")
	}
	m.Close()

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	e.manager(Options{RootCAs: roots})
	waitFor(t, 5*time.Second, "3 events", func() bool { return got.count() == 3 })
	got.checkAll(t, 0, 3)
}

type countingKV struct {
	spool.KV
	puts atomic.Int64
}

func (c *countingKV) Put(k string, v []byte) error { c.puts.Add(1); return c.KV.Put(k, v) }

// The cursor is not written to the spool after every batch (each write is
// a spool transaction), yet a stop saves it: nothing is sent again.
func TestCursorSavesAreBounded(t *testing.T) {
	e := newEnv(t, nil)
	got := newReceived()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got.addJSON(t, body)
	}))
	defer srv.Close()
	h := hook(srv.URL)
	h.BatchSize = 10
	e.cfg.Webhooks = []config.Webhook{h}
	kv := &countingKV{KV: e.sp.KV(Bucket)}
	opts := Options{KV: kv, Poll: 10 * time.Millisecond, SaveEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	m, err := New(e.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	e.write(500)
	waitFor(t, 10*time.Second, "500 events", func() bool { return got.count() == 500 })
	// The last reply reached the output (a batch whose reply is cut by the
	// stop goes again, which is at-least-once, not a lost cursor).
	waitFor(t, 5*time.Second, "500 sent", func() bool { return m.Status()[0].Sent == 500 })
	m.Close()
	if n := kv.puts.Load(); n > 5 {
		t.Errorf("%d cursor writes for 50 batches", n)
	}
	e.manager(Options{})
	e.write(1)
	waitFor(t, 5*time.Second, "501 events", func() bool { return got.count() == 501 })
	got.mu.Lock()
	defer got.mu.Unlock()
	if got.dups != 0 {
		t.Errorf("%d events sent again after a clean stop", got.dups)
	}
}
