package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/sim"
)

// TestCheckDomainShaping: `penstock check -domain` prints the matched
// rule's connection rate and daily quota; the full check lists them per
// rule; a bad rate is refused with file, line and key.
func TestCheckDomainShaping(t *testing.T) {
	srv, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetMX("shaped.test", sim.MXRecord{Host: "mx.shaped.test", Pref: 10})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "penstock.toml")
	conf := fmt.Sprintf("[dns]\nnameservers = [%q]\n\n[[mx_rule]]\nname = \"shaped\"\nmx = \"*.shaped.test\"\nmax_connection_rate = \"30/1m\"\nmessages_per_day = 500\n", srv.Addr())
	os.WriteFile(cfgFile, []byte(conf), 0o600)
	code, out, errs := runCmd("check", "-config", cfgFile, "-domain", "shaped.test")
	if code != 0 || !strings.Contains(out, "rule:    shaped") || !strings.Contains(out, "shaping: max_connection_rate 30/1m0s, messages_per_day 500") {
		t.Errorf("check -domain: exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runCmd("check", "-config", cfgFile); code != 0 || !strings.Contains(out, "conn rate") || !strings.Contains(out, "30/1m0s") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	capConf := conf + "\n[[cap]]\nname = \"group\"\nrule = \"shaped\"\nmax_connections = 3\nmessages_per_hour = 600\n"
	os.WriteFile(cfgFile, []byte(capConf), 0o600)
	if code, out, errs := runCmd("check", "-config", cfgFile, "-domain", "shaped.test"); code != 0 ||
		!strings.Contains(out, "cap:     group (max_connections 3, messages_per_hour 600; from every source)") {
		t.Errorf("check -domain with a cap: exit %d\n%s%s", code, out, errs)
	}
	os.WriteFile(cfgFile, []byte(capConf+"\n[[tenant]]\nname = \"acme\"\nmessages_per_hour = 500\nweight = 2\n"), 0o600)
	if code, out, _ := runCmd("check", "-config", cfgFile); code != 0 || !strings.Contains(out, "# caps") || !strings.Contains(out, "max_connections 3, messages_per_hour 600") ||
		!strings.Contains(out, "# tenants") || !strings.Contains(out, "acme  500        2") {
		t.Errorf("check with a cap: exit %d\n%s", code, out)
	}
	os.WriteFile(cfgFile, []byte(strings.Replace(capConf, `rule = "shaped"`, `rule = "shapde"`, 1)), 0o600)
	if code, _, errs := runCmd("check", "-q", "-config", cfgFile); code != 1 || !strings.Contains(errs, cfgFile+":12:") || !strings.Contains(errs, `no [[mx_rule]] (nor shipped rule) is named "shapde"`) {
		t.Errorf("cap with an unknown rule: exit %d %s", code, errs)
	}
	os.WriteFile(cfgFile, []byte(strings.Replace(conf, "30/1m", "30 per minute", 1)), 0o600)
	code, _, errs = runCmd("check", "-q", "-config", cfgFile)
	if code != 1 || !strings.Contains(errs, cfgFile+":7:") || !strings.Contains(errs, "max_connection_rate") {
		t.Errorf("bad rate: exit %d %s", code, errs)
	}
}
