package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/sim"
)

// benchCampaign measures a campaign through the API: one template, N
// recipients streamed as NDJSON to POST /deliveries/{id}/recipients,
// rendered and sent to the simulated sink, from the first API call to the
// last delivery. The sink runs in this process (its CPU is included).
func benchCampaign(ctx context.Context, f benchFlags, stdout, stderr io.Writer) int {
	world, err := sim.NewWorld()
	if err != nil {
		return fail(stderr, err)
	}
	defer world.Close()
	var domains []string
	for i := 0; i < f.domains; i++ {
		domains = append(domains, fmt.Sprintf("d%d.sink.bench.test", i))
	}
	sink, err := world.AddProvider(sim.Behavior{Name: "sink"}, domains, "mx.sink.bench.test")
	if err != nil {
		return fail(stderr, err)
	}
	dir, err := os.MkdirTemp("", "penstock-bench-campaign-")
	if err != nil {
		return fail(stderr, err)
	}
	defer os.RemoveAll(dir)
	cfg, err := benchConfig(dir, world.Nameserver(), world.Port, benchRuleFor(f, benchRuleMX))
	if err != nil {
		return fail(stderr, err)
	}
	m, err := mta.New(cfg, mta.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), NoSync: f.unsafeNoSync})
	if err != nil {
		return fail(stderr, err)
	}
	if err := m.Start(ctx); err != nil {
		return fail(stderr, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		m.Shutdown(sctx)
		cancel()
	}()
	base, token := "http://"+m.HTTPAddr()+"/api/v1", cfg.HTTP.Token
	call := func(method, path, ctype string, body io.Reader, out any) error {
		req, err := http.NewRequestWithContext(ctx, method, base+path, body)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
		}
		return json.Unmarshal(b, out)
	}
	// A template of about -size bytes, with three variables.
	text := "Dear {{.first_name}} of {{.city}},\n" + strings.Repeat("Penstock meters mail like water to a turbine. ", max(1, f.size/2/47)) + "\n"
	html := "<p>Dear {{.first_name}} of {{.city}}</p><p>" + strings.Repeat("Penstock meters mail. ", max(1, f.size/2/22)) + "</p>"
	tpl := map[string]any{"from": "News <news@bench.penstock.test>", "subject": "Hello {{.first_name}}", "text": text, "html": html,
		"list_unsubscribe": "https://bench.penstock.test/u?r={{.recipient}}"}
	var list bytes.Buffer
	for i := 0; i < f.n; i++ {
		fmt.Fprintf(&list, `{"address":"user%d@%s","vars":{"first_name":"Name%d","city":"Springfield"}}`+"\n", i, domains[i%len(domains)], i)
	}
	cpu0 := cpuSelf()
	t0 := time.Now()
	var created struct {
		ID string `json:"id"`
	}
	body, _ := json.Marshal(map[string]any{"name": "bench", "from": "bounces@bench.penstock.test", "template": tpl})
	if err := call("POST", "/deliveries", "application/json", bytes.NewReader(body), &created); err != nil {
		return fail(stderr, err)
	}
	var added struct {
		Accepted int `json:"accepted"`
	}
	if err := call("POST", "/deliveries/"+created.ID+"/recipients", "application/x-ndjson", &list, &added); err != nil {
		return fail(stderr, err)
	}
	ingested := time.Since(t0)
	if err := sink.WaitMessages(ctx, int64(f.n)); err != nil {
		return fail(stderr, fmt.Errorf("the sink got %d of %d: %w", sink.Delivered(), f.n, err))
	}
	el := time.Since(t0)
	cpu := cpuSelf() - cpu0
	res := map[string]any{
		"mode": "campaign", "recipients": f.n, "template_bytes": len(text) + len(html), "domains": f.domains,
		"ingest_seconds": ingested.Seconds(), "end_to_end_seconds": el.Seconds(), "end_to_end_msgs_per_s": float64(f.n) / el.Seconds(),
		"cpu_seconds_incl_sink": cpu.Seconds(), "peak_rss_mib": float64(procStatusKB("VmHWM")) / 1024, "unsafe_nosync": f.unsafeNoSync,
	}
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return 0
	}
	fmt.Fprintf(stdout, "penstock bench -campaign  %s  (%d CPUs)\n", time.Now().UTC().Format(time.RFC3339), machineInfo().CPUs)
	fmt.Fprintf(stdout, "  %d recipients over %d domain(s), template %d B (text + html, 3 variables, List-Unsubscribe), durable spool, delivery log on; sim sink in this process\n",
		f.n, f.domains, len(text)+len(html))
	fmt.Fprintf(stdout, "ingest       %d recipients accepted in %.2f s (%.0f/s)\n", added.Accepted, ingested.Seconds(), float64(added.Accepted)/ingested.Seconds())
	fmt.Fprintf(stdout, "end-to-end   %.0f msgs/s   %.2f s, first API call -> last delivery at the sink\n", float64(f.n)/el.Seconds(), el.Seconds())
	fmt.Fprintf(stdout, "cpu          %.2f s including the sink (%.0f us/msg)  peak RSS %.1f MiB\n", cpu.Seconds(),
		float64(cpu.Microseconds())/float64(f.n), float64(procStatusKB("VmHWM"))/1024)
	return 0
}
