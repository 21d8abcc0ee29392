package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/penstock-mta/penstock/api"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/queue"
)

// apiClient talks to a running daemon's HTTP API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags adds the flags every operator command shares. The API address
// and token come from -api/-token, else PENSTOCK_API/PENSTOCK_TOKEN, else
// the configuration file's [http] section, else the default.
func clientFlags(fs *flag.FlagSet) func() (*apiClient, error) {
	apiURL := fs.String("api", os.Getenv("PENSTOCK_API"), "API base URL (default from -config, else http://127.0.0.1:8025)")
	token := fs.String("token", os.Getenv("PENSTOCK_TOKEN"), "API bearer token (default from -config)")
	cfgPath := fs.String("config", "", "configuration file to take [http] listen and token from")
	return func() (*apiClient, error) {
		base, tok := *apiURL, *token
		if base == "" || tok == "" {
			cfg, err := loadConfig(*cfgPath)
			if err != nil {
				return nil, err
			}
			if base == "" {
				base = "http://" + cfg.HTTP.Listen
			}
			if tok == "" {
				tok = cfg.HTTP.Token
			}
		}
		return &apiClient{base: strings.TrimSuffix(base, "/"), token: tok, http: &http.Client{Timeout: 30 * time.Second}}, nil
	}
}

func (c *apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach penstock at %s (is 'penstock serve' running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
			Field string `json:"field"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "penstock:", err)
	return 1
}

func cmdQueue(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, ok := positional(fs, args, 0, 1)
	if !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	if len(pos) == 1 {
		var v queue.SiteView
		if err := c.do("GET", "/api/v1/queues/"+url.PathEscape(pos[0]), nil, &v); err != nil {
			return fail(stderr, err)
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		printSite(stdout, v)
		return 0
	}
	var res struct {
		Sites []queue.SiteView `json:"sites"`
	}
	if err := c.do("GET", "/api/v1/queues", nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	printSites(stdout, res.Sites)
	return 0
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
	return 0
}

// shortStatus abbreviates a status text for the 80-column table.
func shortStatus(s string) string {
	s = strings.TrimPrefix(s, "Messages queued (")
	return strings.TrimSuffix(s, ")")
}

// printSites prints one line per site, readable at 80 columns.
func printSites(w io.Writer, sites []queue.SiteView) {
	if len(sites) == 0 {
		fmt.Fprintln(w, "no sites known yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "SITE\tQUEUED\tCONN\tDLV/1H\tFLOW\tRULE\tWAITING FOR")
	for _, s := range sites {
		why := ""
		if s.Wait != nil {
			why = shortStatus(s.Wait.Status)
		} else if s.Queued > 0 {
			keys := make([]string, 0, len(s.ByStatus))
			for k := range s.ByStatus {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return s.ByStatus[keys[i]] > s.ByStatus[keys[j]] })
			if len(keys) > 0 {
				why = shortStatus(keys[0])
			}
		}
		// Site and rule are never cut: operators copy them into explain,
		// suspend and the configuration.
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", s.Site, s.Queued, s.Connections, s.DeliveredLastHour,
			s.Flow.State, s.Rule.Name, why)
	}
	tw.Flush()
}

func printSite(w io.Writer, s queue.SiteView) {
	fmt.Fprintf(w, "site:        %s\n", s.Site)
	fmt.Fprintf(w, "MX hosts:    %s\n", strings.Join(s.MXHosts, ", "))
	fmt.Fprintf(w, "rule:        %s — %s\n", s.Rule.Name, s.Rule.Why)
	perHour := "unlimited per hour"
	if s.Rule.MessagesPerHour > 0 {
		perHour = fmt.Sprintf("%d msgs/hour", s.Rule.MessagesPerHour)
	}
	fmt.Fprintf(w, "limits:      scope %s, %d connections, %d msgs/connection, %s, tls %s\n",
		s.Rule.Scope, s.Rule.MaxConnections, s.Rule.MaxMessagesPerConnection, perHour, s.Rule.TLS)
	if s.Rule.MaxConnectionRate != "" || s.Rule.MessagesPerDay > 0 {
		rate := s.Rule.MaxConnectionRate
		if rate == "" {
			rate = "unlimited"
		}
		fmt.Fprintf(w, "shaping:     max_connection_rate %s, messages_per_day %s\n", rate, perDay(s.Rule.MessagesPerDay))
	}
	fmt.Fprintf(w, "queued:      %d (%d in delivery on %d connections)\n", s.Queued, s.InFlight, s.Connections)
	keys := make([]string, 0, len(s.ByStatus))
	for k := range s.ByStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %7d  %s\n", s.ByStatus[k], k)
	}
	if s.Wait != nil {
		fmt.Fprintf(w, "waiting:     %s\n             %s\n", s.Wait.Status, s.Wait.Detail)
		if !s.Wait.Until.IsZero() {
			fmt.Fprintf(w, "             next slot expected at %s\n", s.Wait.Until.Local().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "flow:        %s", s.Flow.State)
	if s.Flow.Detail != "" {
		fmt.Fprintf(w, " — %s", s.Flow.Detail)
	}
	fmt.Fprintln(w)
	if s.Flow.Diagnosis != "" {
		fmt.Fprintf(w, "diagnosis:   %s\n", s.Flow.Diagnosis)
	}
	for _, d := range s.Sources {
		fmt.Fprintf(w, "source:      %s %s — %s\n", d.Source, d.State, d.Detail)
		if d.Diagnosis != "" && d.State != flow.Normal {
			wrapIndented(w, "            ", "            ", d.Diagnosis)
		}
	}
	if s.Suspended {
		fmt.Fprintln(w, "operator:    suspended")
	}
	for _, q := range s.Quotas {
		fmt.Fprintf(w, "quota:       %s: %d of %d in use\n", q.Key, q.InUse, q.Limit)
	}
	fmt.Fprintf(w, "totals:      %d delivered (%d in the last hour), %d bounced, %d deferred, %d expired\n",
		s.Delivered, s.DeliveredLastHour, s.Bounced, s.Deferred, s.Expired)
	for _, r := range s.Recent {
		code := "(no reply)" // our side failed before the remote said anything
		if r.Code != 0 {
			code = strconv.Itoa(r.Code)
		}
		fmt.Fprintf(w, "reply:       %s %s [%s] %s %s %s\n", r.Time.Local().Format("15:04:05"), r.MXHost, r.MXIP, code, r.Enhanced, r.Text)
	}
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("explain", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, ok := positional(fs, args, 1, 1)
	if !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	t := pos[0]
	key := "domain"
	if strings.Contains(t, "@") {
		key = "address"
	}
	var ex queue.Explanation
	if err := c.do("GET", "/api/v1/explain?"+key+"="+url.QueryEscape(t), nil, &ex); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, ex)
	}
	fmt.Fprintf(stdout, "target:      %s (domain %s)\n", ex.Target, ex.Domain)
	if ex.MXError != "" {
		fmt.Fprintf(stdout, "MX lookup:   %s\n", ex.MXError)
	}
	if ex.LocalProblem != "" {
		fmt.Fprintf(stdout, "LOCAL PROBLEM: %s\n", ex.LocalProblem)
	}
	if p := ex.TLSPolicy; p != nil {
		line := p.Source + " " + p.Mode
		if len(p.MX) > 0 {
			line += ", mx " + strings.Join(p.MX, " ")
		}
		if !p.Expires.IsZero() {
			line += ", expires " + p.Expires.Local().Format(time.RFC3339)
		}
		if p.Note != "" {
			line += " (" + p.Note + ")"
		}
		fmt.Fprintf(stdout, "TLS policy:  %s\n", line)
	}
	if ex.Site != nil {
		printSite(stdout, *ex.Site)
	}
	for i, r := range ex.Recipients {
		if i == 10 {
			fmt.Fprintf(stdout, "recipient:   … and %d more (see -json)\n", len(ex.Recipients)-10)
			break
		}
		next := ""
		if !r.NextAttempt.IsZero() {
			next = " next attempt " + r.NextAttempt.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "recipient:   %s %s: %s (attempts %d%s) %s\n", r.ID, r.Recipient, r.Status, r.Attempts, next, r.LastReply)
	}
	fmt.Fprintf(stdout, "verdict:     %s\n", ex.Verdict)
	return 0
}

func siteAction(action string) func(args []string, stdout, stderr io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		fs := newFlags(action, stderr)
		client := clientFlags(fs)
		var dur *time.Duration
		var tenant, delivery *string
		if action == "suspend" {
			dur = fs.Duration("for", 0, "suspension length (default: until resumed)")
		}
		if action == "suspend" || action == "resume" {
			tenant = fs.String("tenant", "", action+" a tenant's mail at every site instead of a site")
			delivery = fs.String("delivery", "", action+" a campaign (delivery id) instead of a site")
		}
		pos, ok := positional(fs, args, 0, 1)
		if !ok {
			return 2
		}
		whole := ""
		if tenant != nil && *tenant != "" {
			whole = "/api/v1/tenants/" + url.PathEscape(*tenant) + "/" + action
		}
		if delivery != nil && *delivery != "" {
			if whole != "" {
				fmt.Fprintf(stderr, "penstock %s: give -tenant or -delivery, not both\n", action)
				return 2
			}
			whole = "/api/v1/deliveries/" + url.PathEscape(*delivery) + "/" + action
		}
		switch {
		case whole != "" && len(pos) > 0:
			fmt.Fprintf(stderr, "penstock %s: give a site, or -tenant, or -delivery, not several\n", action)
			return 2
		case whole != "" && dur != nil && *dur > 0:
			fmt.Fprintf(stderr, "penstock %s: -for is for sites; a tenant or campaign is suspended until resumed\n", action)
			return 2
		case whole == "" && len(pos) == 0:
			fmt.Fprintf(stderr, "penstock %s: missing argument\n", action)
			return 2
		}
		c, err := client()
		if err != nil {
			return fail(stderr, err)
		}
		if whole != "" {
			var res map[string]any
			if err := c.do("POST", whole, map[string]string{"by": "cli"}, &res); err != nil {
				return fail(stderr, err)
			}
			fmt.Fprintf(stdout, "%v %v: %s done (%v recipients made due)\n", res["kind"], res["name"], action, res["recipients"])
			return 0
		}
		body := map[string]string{"by": "cli"}
		if dur != nil && *dur > 0 {
			body["for"] = dur.String()
		}
		var res map[string]any
		if err := c.do("POST", "/api/v1/sites/"+url.PathEscape(pos[0])+"/"+action, body, &res); err != nil {
			return fail(stderr, err)
		}
		msg := fmt.Sprintf("%s: %s done", pos[0], action)
		if n, ok := res["recipients"]; ok {
			msg += fmt.Sprintf(" (%v recipients)", n)
		}
		fmt.Fprintln(stdout, msg)
		return 0
	}
}

func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", stderr)
	client := clientFlags(fs)
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	var res api.ReloadResult
	if err := c.do("POST", "/api/v1/reload", nil, &res); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintln(stdout, "reloaded")
	for _, k := range res.RestartNeeded {
		fmt.Fprintf(stdout, "  %s: changed, applied only at the next start (restart penstock serve)\n", k)
	}
	return 0
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	var res struct {
		Totals      queue.Totals       `json:"totals"`
		Local       bool               `json:"local_problem"`
		LocalDetail string             `json:"local_problem_detail"`
		Outputs     []eventsout.Status `json:"event_outputs,omitempty"`
	}
	if err := c.do("GET", "/api/v1/status", nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	t := res.Totals
	fmt.Fprintf(stdout, "queued %d at %d sites; delivered %d, bounced %d, deferred %d, expired %d\n",
		t.Queued, t.Sites, t.Delivered, t.Bounced, t.Deferred, t.Expired)
	if res.Local {
		fmt.Fprintln(stdout, "LOCAL PROBLEM:", res.LocalDetail)
	}
	printOutputs(stdout, res.Outputs)
	return 0
}
