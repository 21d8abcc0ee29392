package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
)

const adviseRules = `
[[mx_rule]]
name = "bulk"
mx = ["mx.bulk.test"]
messages_per_hour = 100

[[mx_rule]]
name = "ghost"
mx = ["mx.nowhere.test"]

[[mx_rule]]
name = "yahoo"
mx = ["*.yahoodns.net"]
max_connections = 3
`

// adviseSetup writes a configuration whose log_dir holds a recorded
// history ending now: bulk.test at 95 of its 100 messages per hour for
// three hours with no error, one delivery under "yahoo", nothing under
// "ghost".
func adviseSetup(t *testing.T) (cfgPath string) {
	t.Helper()
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	cfgPath = filepath.Join(dir, "penstock.toml")
	body := fmt.Sprintf("[server]\nspool_dir = %q\nlog_dir = %q\n%s", dir, logDir, adviseRules)
	if err := os.WriteFile(cfgPath, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	lg, err := events.Open(logDir, events.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Hour).Add(-5 * time.Hour)
	for h := 0; h < 3; h++ {
		for i := 0; i < 95; i++ {
			lg.Write(&events.Record{Type: events.Delivery, Time: start.Add(time.Duration(h)*time.Hour + time.Duration(i)*30*time.Second),
				ID: fmt.Sprintf("m%d-%d", h, i), Site: "bulk.test", Rule: "bulk", SourceIP: "192.0.2.1"})
		}
	}
	lg.Write(&events.Record{Type: events.Delivery, Time: start.Add(4 * time.Hour), ID: "y1", Site: "yahoo.com", Rule: "yahoo", SourceIP: "192.0.2.1"})
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

func checkAdviceText(t *testing.T, out string) {
	t.Helper()
	for _, want := range []string{
		"286 records in ",
		"RULE                 SCOPE  CONNS PER-HOUR DELIVERED DEFERRED BOUNCED PEAK/H\n",
		"bulk                 source    10      100       285        0       0     95\n",
		"built-in rules saw no mail)\n",
		"  bulk.test (rule bulk): 285 delivered, 0 deferred, 0 bounced; peak 95/h, 3\n    active hours\n",
		`RAISE rule "bulk": messages_per_hour 100 -> 150 (site bulk.test)`,
		"effect: that run's 285 messages would have finished in ~1.9 h instead of ~3 h\n",
		"     - messages_per_hour = 100\n     + messages_per_hour = 150\n",
		`UNUSED rule "ghost"`,
		"     - name = \"ghost\"\n",
		`OVERRIDDEN rule "yahoo"`,
		"     - max_connections = 10\n     + max_connections = 3\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkWidth(t, "advise", out)
}

// TestAdviseFromConfig: with -config, advise reads the log directory
// itself and prints the rules, sites and recommendations with diffs.
func TestAdviseFromConfig(t *testing.T) {
	cfg := adviseSetup(t)
	// An API named in the environment does not take over from -config.
	t.Setenv("PENSTOCK_API", "http://127.0.0.1:1")
	code, out, errs := runCmd("advise", "-config", cfg, "-since", "1d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	checkAdviceText(t, out)

	code, out, errs = runCmd("advise", "-config", cfg, "-rule", "bulk", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep advisor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-json: %v\n%s", err, out)
	}
	if len(rep.Rules) != 1 || len(rep.Recommendations) != 1 || rep.Recommendations[0].Kind != advisor.Raise || rep.Recommendations[0].To != 150 {
		t.Errorf("-rule bulk -json: %+v", rep)
	}

	for _, c := range []struct{ args, want string }{
		{"-since soon", "-since: must be a positive duration"},
		{"-rule nope", `no such rule named "nope"`},
		{"extra", "usage"},
	} {
		code, _, errs := runCmd(append([]string{"advise", "-config", cfg}, strings.Fields(c.args)...)...)
		if code == 0 || !strings.Contains(strings.ToLower(errs), strings.ToLower(c.want)) {
			t.Errorf("advise %s: exit %d, stderr %q; want an error with %q", c.args, code, errs, c.want)
		}
	}
}

// adviseBackend serves the advisor through the API as the node does: the
// rules of a configuration, its log directory.
type adviseBackend struct {
	apiParts
	cfg *config.Config
}

func (b adviseBackend) Advise(ctx context.Context, rule string, since time.Duration) (*advisor.Report, error) {
	rules, err := b.cfg.RuleSet()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return advisor.Analyze(ctx, rules, b.cfg.Server.LogDir, advisor.Options{Since: now.Add(-since), Until: now, Rule: rule})
}

// TestAdviseFromAPI: with -api, advise asks GET /api/v1/advise and prints
// the same report; the API's errors reach the operator.
func TestAdviseFromAPI(t *testing.T) {
	cfg, err := config.Load(adviseSetup(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler(api.Deps{Node: adviseBackend{cfg: cfg}}, opToken, 1<<20))
	t.Cleanup(srv.Close)
	code, out, errs := runCmd("advise", "-api", srv.URL, "-token", opToken, "-since", "1d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	checkAdviceText(t, out)
	code, _, errs = runCmd("advise", "-api", srv.URL, "-token", opToken, "-rule", "nope")
	if code == 0 || !strings.Contains(errs, `"nope"`) {
		t.Errorf("unknown rule over the API: exit %d, %q", code, errs)
	}
}

// TestAdviceSitesCapped: the text lists a rule's busiest sites and any
// site a recommendation names, and says how many it left out.
func TestAdviceSitesCapped(t *testing.T) {
	rep := &advisor.Report{Rules: []advisor.RuleReport{{Name: "r", Scope: "source"}},
		Recommendations: []advisor.Recommendation{{Kind: advisor.Lower, Rule: "r", Site: "quiet.test", Evidence: "e"}}}
	for i := 0; i < 14; i++ {
		rep.Rules[0].Sites = append(rep.Rules[0].Sites, advisor.SiteReport{Site: fmt.Sprintf("s%02d.test", i), Deliveries: 100 + i})
	}
	rep.Rules[0].Sites = append(rep.Rules[0].Sites, advisor.SiteReport{Site: "quiet.test", Deliveries: 1})
	var b strings.Builder
	printAdvice(&b, rep)
	out := b.String()
	if !strings.Contains(out, "s13.test") || !strings.Contains(out, "s04.test") || strings.Contains(out, "s03.test") ||
		!strings.Contains(out, "quiet.test (rule r)") || !strings.Contains(out, "... and 4 more sites under rule r") {
		t.Errorf("output:\n%s", out)
	}
}
