package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/warmup"
)

// warmupSetup writes a configuration with ip3 warming for yahoo and a
// saved state where 3 messages went today.
func warmupSetup(t *testing.T) (string, *warmup.Tracker) {
	t.Helper()
	dir := t.TempDir()
	body := fmt.Sprintf(`[server]
spool_dir = %q
log_dir = %q
[[source]]
name = "ip3"
ip = "127.0.0.3"
[[warmup]]
source = "ip3"
rule = "yahoo"
schedule = [50, 100]
`, dir, dir)
	path := filepath.Join(dir, "penstock.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := warmup.New(warmup.Plans(cfg), warmup.Deps{Path: filepath.Join(dir, "warmup.json"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tr.Take("ip3", "yahoo", []string{"mta5.am0.yahoodns.net"})
	}
	if err := tr.Save(); err != nil {
		t.Fatal(err)
	}
	return path, tr
}

// TestWarmupStatusFromConfig: -config reads the state saved in the spool
// directory.
func TestWarmupStatusFromConfig(t *testing.T) {
	cfg, _ := warmupSetup(t)
	code, out, errs := runCmd("warmup", "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "ip3") || !strings.Contains(out, "rule:yahoo") || !strings.Contains(out, "3/50") {
		t.Fatalf("exit %d, stderr %q, out:\n%s", code, errs, out)
	}
	checkWidth(t, "warmup status", out)
	code, out, _ = runCmd("warmup", "status", "-config", cfg, "-json")
	var list api.WarmupList
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Sources) != 1 || list.Sources[0].Sent != 3 {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd("warmup", "-config", cfg); code != 2 {
		t.Fatalf("without status: exit %d, want 2", code)
	}
}

// TestWarmupStatusFromAPI: -api asks GET /api/v1/warmup.
func TestWarmupStatusFromAPI(t *testing.T) {
	_, tr := warmupSetup(t)
	srv := httptest.NewServer(api.Handler(api.Deps{Warmup: tr}, opToken, 1<<20))
	defer srv.Close()
	code, out, errs := runCmd("warmup", "status", "-api", srv.URL, "-token", opToken)
	if code != 0 || !strings.Contains(out, "3/50") || !strings.Contains(out, "healthy") {
		t.Fatalf("exit %d, stderr %q, out:\n%s", code, errs, out)
	}
}
