package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebhookTestCommand(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		if r.Header.Get("X-Penstock-Signature") == "" {
			w.WriteHeader(401)
			return
		}
		w.Write([]byte("received"))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "p.toml")
	os.WriteFile(file, []byte("[[webhook]]\nname = \"crm\"\nurl = \""+srv.URL+"\"\nsecret = \"k\"\n"), 0o600)
	code, out, errs := runCmd("webhook", "test", "crm", "-config", file)
	if code != 0 || !strings.Contains(out, "HTTP 200") || !strings.Contains(out, "received") || !strings.Contains(got, `"type":"Test"`) {
		t.Fatalf("rc %d out %q err %q body %q", code, out, errs, got)
	}
	if code, _, errs := runCmd("webhook", "test", "nope", "-config", file); code != 1 || !strings.Contains(errs, `no [[webhook]] named "nope"`) {
		t.Fatalf("unknown name: rc %d err %q", code, errs)
	}
}

func TestStatusShowsEventOutputs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"totals":{},"event_outputs":[{"name":"crm","kind":"webhook","lag":42,"sent":7,"failures":3,"last_error":"webhook crm: HTTP 503: busy","last_error_at":"2026-03-01T10:00:00Z"}]}`))
	}))
	defer srv.Close()
	code, out, errs := runCmd("status", "-api", srv.URL)
	if code != 0 || !strings.Contains(out, "event outputs:") || !strings.Contains(out, "crm") ||
		!strings.Contains(out, "42") || !strings.Contains(out, "HTTP 503: busy") {
		t.Fatalf("rc %d out %q err %q", code, out, errs)
	}
}
