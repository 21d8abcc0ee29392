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
