package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/penstock-mta/penstock/dkim"
)

// Every command describes itself: what it does, its arguments, an example,
// through both `penstock help CMD` and `penstock CMD -h`.
func TestHelpEveryCommand(t *testing.T) {
	for name, c := range commands() {
		if c.summary == "" || c.about == "" || c.example == "" {
			t.Errorf("%s: summary, about and example are all needed", name)
		}
		if name == "hostile" {
			continue // scenario subcommands: its own usage lists them
		}
		if name == "bench" || name == "quarantine" || name == "deliveries" || name == "send" || name == "cluster" {
			continue // their -h is their own; help still describes them
		}
		var out, errb bytes.Buffer
		if rc := run([]string{"help", name}, &out, &errb); rc != 0 {
			t.Errorf("help %s: rc %d, stderr %q", name, rc, errb.String())
		}
		h := out.String()
		if !strings.Contains(h, "usage: penstock "+name) || !strings.Contains(h, "Example:") || !strings.Contains(h, c.example[:strings.IndexByte(c.example+"\n", '\n')]) {
			t.Errorf("help %s lacks usage or example:\n%s", name, h)
		}
		if name == "help" || name == "version" {
			continue
		}
		out.Reset()
		errb.Reset()
		run([]string{name, "-h"}, &out, &errb)
		if !strings.Contains(errb.String(), "Example:") || (name != "dkim" && name != "hostile" && !strings.Contains(errb.String(), "Flags:")) {
			t.Errorf("%s -h lacks example or flags:\n%s", name, errb.String())
		}
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	for typed, want := range map[string]string{"quee": "queue", "explian": "explain", "stauts": "status", "rel": "reload"} {
		var out, errb bytes.Buffer
		if rc := run([]string{typed}, &out, &errb); rc != 2 {
			t.Errorf("%s: rc %d", typed, rc)
		}
		if !strings.Contains(errb.String(), "Did you mean 'penstock "+want+"'?") {
			t.Errorf("%s: %q, want a suggestion of %s", typed, errb.String(), want)
		}
	}
	var out, errb bytes.Buffer
	run([]string{"zzzzzzzz"}, &out, &errb)
	if strings.Contains(errb.String(), "Did you mean") {
		t.Errorf("nothing close, yet: %q", errb.String())
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run([]string{"version"}, &out, &errb); rc != 0 || !strings.HasPrefix(out.String(), "penstock ") {
		t.Fatalf("rc %d out %q err %q", rc, out.String(), errb.String())
	} // The line names the RSA signer this process uses.
	if want := "\ndkim rsa signer: " + dkim.RSAImplementation() + "\n"; !strings.Contains(out.String(), want) {
		t.Errorf("version output %q lacks %q", out.String(), want)
	}
}

// Flags after the positional argument are honoured (they were silently
// ignored, with the argument, by flag.Parse), and extra arguments are an
// error.
func TestFlagsAfterArguments(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"site":"gmail.com"}`))
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	if rc := run([]string{"queue", "gmail.com", "-api", srv.URL, "-json"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	mu.Lock()
	got := strings.Join(paths, ",")
	mu.Unlock()
	if got != "/api/v1/queues/gmail.com" {
		t.Fatalf("requests %q, want the site's queue", got)
	}
	if !strings.Contains(out.String(), `"site"`) {
		t.Fatalf("-json after the argument ignored: %q", out.String())
	}
	for _, args := range [][]string{
		{"queue", "a.com", "b.com", "-api", srv.URL},
		{"status", "extra", "-api", srv.URL},
		{"explain", "-api", srv.URL},
		{"resume", "a.com", "b.com", "-api", srv.URL},
	} {
		out.Reset()
		errb.Reset()
		if rc := run(args, &out, &errb); rc != 2 {
			t.Errorf("%v: rc %d, want 2 (usage error)", args, rc)
		}
		if !strings.Contains(errb.String(), "usage: penstock "+args[0]) {
			t.Errorf("%v: %q names no usage", args, errb.String())
		}
	}
}

// Names an operator copies are never cut, whatever their length.
func TestTableKeepsNames(t *testing.T) {
	var out bytes.Buffer
	site := "alt1.gmail-smtp-in.l.google.com,alt2.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com"
	writeTable(&out, []column{{name: "SITE", flex: true, keep: true}, {name: "RULE", max: 5, keep: true}, {name: "N", right: true}},
		[][]string{{site, "google-workspace", "3"}})
	if !strings.Contains(out.String(), site+"  google-workspace  3") {
		t.Fatalf("cut:\n%s", out.String())
	}
}
