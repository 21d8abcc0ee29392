package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/sim"
)

// `penstock check -domain` says when the matched rule keeps DATA
// (chunking = false), and says nothing of it otherwise.
func TestCheckDomainChunking(t *testing.T) {
	srv := testDNS(t)
	srv.SetMX("old.test", sim.MXRecord{Host: "mx.old.test", Pref: 10})
	srv.SetMX("new.test", sim.MXRecord{Host: "mx.new.test", Pref: 10})
	cfgFile := filepath.Join(t.TempDir(), "penstock.toml")
	conf := fmt.Sprintf("[dns]\nnameservers = [%q]\n\n[[mx_rule]]\nname = \"old\"\nmx = \"*.old.test\"\nchunking = false\n", srv.Addr())
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]bool{"old.test": true, "new.test": false} {
		code, out, errs := runCmd("check", "-config", cfgFile, "-domain", domain)
		if code != 0 || strings.Contains(out, "chunking: off") != want {
			t.Errorf("check -domain %s: exit %d, 'chunking: off' shown %v, want %v\n%s%s", domain, code, !want, want, out, errs)
		}
	}
}
