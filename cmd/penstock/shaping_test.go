package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
)

// TestCheckDomainShaping: `penstock check -domain` prints the matched
// rule's connection rate and daily quota; the full check lists them per
// rule; a bad rate is refused with file, line and key.
func TestCheckDomainShaping(t *testing.T) {
	srv := testDNS(t)
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

// Explain answers for the sources test's domain: a site whose source
// 127.0.0.2 is in backoff while 127.0.0.3 is normal.
func (b *opBackend) Explain(_ context.Context, target string) queue.Explanation {
	if target != "sources.test" {
		return queue.Explanation{Target: target, Domain: target}
	}
	return queue.Explanation{Target: target, Domain: target, Site: &queue.SiteView{Site: "mx.sources.test",
		Flow: flow.Decision{State: flow.Normal},
		Sources: []flow.SourceDecision{
			{Source: "127.0.0.2", Decision: flow.Decision{State: flow.Backoff, Attempts: 20, Errors: 9,
				Detail: "source 127.0.0.2: flow state backoff", Diagnosis: "reputation of source 127.0.0.2 at mx.sources.test: the provider is throttling or blocking mail from this source"}},
			{Source: "127.0.0.3", Decision: flow.Decision{State: flow.Normal, Attempts: 20, Detail: "source 127.0.0.3: flow state normal"}},
		}}}
}

// TestCheckDomainSources: `penstock check -domain` lists the pool's
// sources, and with -api the running node's flow state per source; the
// explain command prints each source's state and diagnosis.
func TestCheckDomainSources(t *testing.T) {
	srv := testDNS(t)
	srv.SetMX("sources.test", sim.MXRecord{Host: "mx.sources.test", Pref: 10})
	_, apiFlags := opServer(t)
	cfgFile := filepath.Join(t.TempDir(), "penstock.toml")
	conf := fmt.Sprintf("[dns]\nnameservers = [%q]\n\n[delivery]\ndefault_pool = \"main\"\n\n"+
		"[[source]]\nname = \"ip2\"\nip = \"127.0.0.2\"\n\n[[source]]\nname = \"ip3\"\nip = \"127.0.0.3\"\n\n"+
		"[[pool]]\nname = \"main\"\nsources = [{source = \"ip2\"}, {source = \"ip3\", weight = 2}]\n", srv.Addr())
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(append([]string{"check", "-config", cfgFile, "-domain", "sources.test"}, apiFlags...)...)
	for _, want := range []string{
		"sources: pool main: ip2 127.0.0.2 (weight 1), ip3 127.0.0.3 (weight 2)",
		"flow:    site normal",
		"source:  127.0.0.2 backoff (9 errors in 20 attempts): reputation of source",
		"source:  127.0.0.3 normal (0 errors in 20 attempts)",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("check -domain -api: exit %d, no %q in\n%s%s", code, want, out, errs)
		}
	}
	code, out, _ = runOp(t, append([]string{"explain", "sources.test"}, apiFlags...)...)
	if code != 0 || !strings.Contains(out, "source:      127.0.0.2 backoff — source 127.0.0.2: flow state backoff") ||
		!strings.Contains(out, "reputation of source 127.0.0.2") {
		t.Errorf("explain: exit %d\n%s", code, out)
	}
}
