package main

import (
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dkim"
)

// TestBenchDKIM: -dkim makes keys of each kind for the bench's From domain,
// and the signer built from the configuration signs a bench message with
// them, aligned; a kind it does not know is refused.
func TestBenchDKIM(t *testing.T) {
	for kind, want := range map[string][]string{"none": nil, "rsa": {"rsa-sha256"}, "ed25519": {"ed25519-sha256"}, "dual": {"rsa-sha256", "ed25519-sha256"}} {
		dir := t.TempDir()
		cfg, err := benchConfig(dir, "127.0.0.1:53", 25, benchRuleFor(benchFlags{maxConns: 1, maxMsgs: 1}, benchRuleMX))
		if err != nil {
			t.Fatal(err)
		}
		if err := benchDKIM(cfg, dir, kind); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if len(cfg.DKIM) != len(want) {
			t.Fatalf("%s: %d keys, want %d", kind, len(cfg.DKIM), len(want))
		}
		if kind == "none" {
			continue
		}
		s, _, err := dkim.New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		_, res, err := s.Sign(benchBody(1, "u@d0.bench.test", 2048, []byte(strings.Repeat("x", 70)+"\r\n")), time.Now(), "")
		if err != nil || !res.Aligned || len(res.Signatures) != len(want) {
			t.Fatalf("%s: %+v %v", kind, res, err)
		}
		for i, sig := range res.Signatures {
			if sig.Algorithm != want[i] || sig.Domain != "sender.bench.test" {
				t.Errorf("%s: signature %d is %+v, want %s by sender.bench.test", kind, i, sig, want[i])
			}
		}
	}
	if err := benchDKIM(config.Default(), t.TempDir(), "dsa"); err == nil {
		t.Error("-dkim dsa accepted")
	}
	if code, _, errs := runCmd("bench", "-dkim", "dsa"); code != 2 || !strings.Contains(errs, "want none, rsa, ed25519 or dual") {
		t.Errorf("bench -dkim dsa: %d %s", code, errs)
	}
}

// -sink-sessions limits the sim sink; it is refused negative or with an
// external sink (whose limit is its own).
func TestBenchSinkSessionsFlag(t *testing.T) {
	for _, args := range [][]string{{"bench", "-sink-sessions", "-1"}, {"bench", "-sink", "127.0.0.2:2525", "-sink-sessions", "256"}} {
		if code, _, errs := runCmd(args...); code != 2 || !strings.Contains(errs, "-sink-sessions") {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
}

// The sink's count of messages that came by BDAT is printed when there are any.
func TestBenchPrintSinkChunked(t *testing.T) {
	for _, tc := range []struct {
		chunked int64
		want    string
	}{{7, "connections opened 2  sessions shared 0  sink counted 10 (2 connections, max 2 at once, max 5 msgs/connection, 7 by BDAT)"}, {0, "max 5 msgs/connection)"}} {
		var b strings.Builder
		r := benchResult{Opened: 2, SinkCounted: 10, SinkConns: 2, SinkMaxConns: 2, SinkMaxPerCon: 5, SinkChunked: tc.chunked}
		r.print(&b)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("SinkChunked %d: no %q in\n%s", tc.chunked, tc.want, b.String())
		}
	}
}
