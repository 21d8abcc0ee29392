package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/whatif"
)

// whatIfSetup writes a configuration whose log holds a campaign: 285
// messages received at once for bulk.test, sent at 95 an hour (the cap is
// 100) for three hours with no error.
func whatIfSetup(t *testing.T) (cfgPath, dir string) {
	t.Helper()
	dir = t.TempDir()
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
			id := fmt.Sprintf("m%d-%d", h, i)
			lg.Write(&events.Record{Type: events.Reception, Time: start.Add(-time.Minute), ID: id})
		}
	}
	for h := 0; h < 3; h++ {
		for i := 0; i < 95; i++ {
			lg.Write(&events.Record{Type: events.Delivery, Time: start.Add(time.Duration(h)*time.Hour + time.Duration(i)*36*time.Second),
				ID: fmt.Sprintf("m%d-%d", h, i), Site: "bulk.test", Rule: "bulk", SourceIP: "192.0.2.1"})
		}
	}
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	return cfgPath, dir
}

// TestAdviseWhatIf: -what-if replays the period under the current limits
// and the advisor's proposal (bulk 100 -> 150 an hour) and prints the
// comparison with the model's assumptions; -proposed takes the proposal
// from a file; -what-if needs the log, so -api is refused.
func TestAdviseWhatIf(t *testing.T) {
	cfg, dir := whatIfSetup(t)
	code, out, errs := runCmd("advise", "-what-if", "-config", cfg, "-since", "1d")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"in the simulator: current limits against the advisor's recommendations.",
		"Site bulk.test (rule bulk): 285 messages",
		"model: the record shows no push-back: the receiver is assumed to take any",
		"arrival times: 285 of 285 from Reception records\n",
		"                             RECORDED      CURRENT     PROPOSED\n",
		"  messages_per_hour               100          100          150\n",
		"  delivered                       285          285          285\n",
		"  deferrals                         0            0            0\n",
		"  all delivered after ",
		"The model assumes",
		"not modelled: flow-control backoff",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkWidth(t, "advise -what-if", out)
	code, out, errs = runCmd("advise", "-what-if", "-config", cfg, "-since", "1d", "-json")
	var res whatif.Result
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatalf("-json: exit %d, %v: %s\n%s", code, err, errs, out)
	}
	// 285 messages at 150 an hour against 100 an hour.
	if s := res.Sites[0]; s.Proposed.Finish >= s.Current.Finish*3/4 || s.Proposed.Deferrals != 0 || s.Current.Finish < 2*time.Hour {
		t.Errorf("replay: %+v", s)
	}

	// A proposal from a file: a lower rate takes longer.
	prop := filepath.Join(dir, "proposed.toml")
	if err := os.WriteFile(prop, []byte(strings.Replace(adviseRules, "messages_per_hour = 100", "messages_per_hour = 50", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCmd("advise", "-config", cfg, "-since", "1d", "-proposed", prop, "-json")
	if code != 0 {
		t.Fatalf("-proposed: exit %d: %s", code, errs)
	}
	res = whatif.Result{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("-json: %v\n%s", err, out)
	}
	if len(res.Sites) != 1 || res.Sites[0].Proposed.Limits.MessagesPerHour != 50 || res.Sites[0].Proposed.Finish <= res.Sites[0].Current.Finish {
		t.Errorf("-proposed: %+v", res.Sites)
	}

	// The proposal equal to the rules in force: nothing to compare.
	same := filepath.Join(dir, "same.toml")
	if err := os.WriteFile(same, []byte(adviseRules), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCmd("advise", "-config", cfg, "-since", "1d", "-proposed", same); code != 0 || !strings.Contains(out, "No limit to compare") {
		t.Errorf("same rules: exit %d, %s", code, out)
	}
	if code, _, errs := runCmd("advise", "-what-if", "-api", "http://127.0.0.1:1", "-config", cfg); code == 0 || !strings.Contains(errs, "give -config F") {
		t.Errorf("-what-if -api: exit %d, %q", code, errs)
	}
}
