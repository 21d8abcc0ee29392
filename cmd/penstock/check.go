package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/queue"
)

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	domain := fs.String("domain", "", "resolve this domain's MX hosts and say which rule governs it")
	quiet := fs.Bool("q", false, "print only errors and the -domain answer, not the effective configuration")
	apiURL := fs.String("api", "", "with -domain: a running node's API URL, to show its flow state for the site and per source")
	token := fs.String("token", os.Getenv("PENSTOCK_TOKEN"), "with -api: the API bearer token (default from -config)")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rules, err := cfg.RuleSet()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	capSet, err := caps.FromConfig(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// The DKIM key files (readable, strong enough); their DNS records are
	// `penstock dkim check`'s job.
	if _, ok := loadDKIM(cfg, stderr); !ok {
		return 1
	}
	if *domain != "" {
		res, err := dns.New(cfg.DNS.Nameservers, time.Duration(cfg.DNS.Timeout))
		if err != nil {
			fmt.Fprintln(stderr, "dns:", err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		mx, err := res.LookupMX(ctx, *domain)
		if err != nil {
			fmt.Fprintf(stderr, "%s: MX lookup failed: %v\n", *domain, err)
			return 1
		}
		var hosts []string
		for _, h := range mx.Hosts {
			hosts = append(hosts, h.Host)
		}
		m := rules.Match(hosts)
		fmt.Fprintf(stdout, "domain:  %s\nsite:    %s\nMX:      %s\n", *domain, dns.SiteKey(mx.Hosts), strings.Join(hosts, ", "))
		if m.Host != "" {
			fmt.Fprintf(stdout, "rule:    %s (pattern %q matches %s)\n", m.Rule.Name, m.Pattern, m.Host)
		} else {
			fmt.Fprintf(stdout, "rule:    %s (no rule matches; catch-all)\n", m.Rule.Name)
		}
		r := m.Rule
		fmt.Fprintf(stdout, "limits:  scope %s, max_connections %d, max_messages_per_connection %d, messages_per_hour %d, tls %s\n",
			r.Scope, r.MaxConnections, r.MaxMessagesPerConnection, r.MessagesPerHour, r.TLS)
		fmt.Fprintf(stdout, "shaping: max_connection_rate %s, messages_per_day %s\n", r.MaxConnectionRate, perDay(r.MessagesPerDay))
		if r.NoChunking {
			fmt.Fprintln(stdout, "chunking: off (chunking = false: DATA even where CHUNKING is offered)")
		}
		for _, c := range capSet.ForSite(r.Name, hosts) {
			from := "every source"
			if len(c.Sources) > 0 {
				from = "source " + strings.Join(c.Sources, ", ")
			}
			fmt.Fprintf(stdout, "cap:     %s (%s; from %s)\n", c.Name, c.Limits(), from)
		}
		fmt.Fprintf(stdout, "sources: %s\n", poolSources(cfg))
		if *apiURL != "" {
			tok := *token
			if tok == "" {
				tok = cfg.HTTP.Token
			}
			c := &apiClient{base: strings.TrimSuffix(*apiURL, "/"), token: tok, http: &http.Client{Timeout: 30 * time.Second}}
			var ex queue.Explanation
			if err := c.do("GET", "/api/v1/explain?domain="+url.QueryEscape(*domain), nil, &ex); err != nil {
				fmt.Fprintf(stderr, "%s: flow state: %v\n", *apiURL, err)
				return 1
			}
			printFlowSources(stdout, ex)
		}
		return 0
	}
	if *quiet {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	fmt.Fprintln(stdout, "# effective configuration")
	if err := cfg.WriteEffective(stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, "\n# effective MX rules, in match order (first match wins)")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tname\tmx\tscope\tconns\tmsgs/conn\tmsgs/hour\tconn rate\tmsgs/day\ttls\tfrom")
	for i, r := range rules.Rules() {
		from := "config"
		if r.ReplacesShipped {
			from = "config (replaces shipped)"
		}
		if r.Builtin {
			from = "shipped"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n", i+1, r.Name, strings.Join(r.Patterns, ","), r.Scope,
			r.MaxConnections, r.MaxMessagesPerConnection, r.MessagesPerHour, r.MaxConnectionRate, perDay(r.MessagesPerDay), r.TLS, from)
	}
	tw.Flush()
	if all := capSet.All(); len(all) > 0 {
		fmt.Fprintln(stdout, "\n# caps, checked besides the rule")
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "name\tsource\trule\tmx\tlimits")
		any := func(l []string) string {
			if len(l) == 0 {
				return "any"
			}
			return strings.Join(l, ",")
		}
		for _, c := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, any(c.Sources), any(c.Rules), any(c.MX), c.Limits())
		}
		tw.Flush()
	}
	if len(cfg.Tenants) > 0 {
		fmt.Fprintln(stdout, "\n# tenants")
		tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "name\tmsgs/hour\tweight")
		for _, t := range cfg.Tenants {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", t.Name, perDay(t.MessagesPerHour), t.Weight)
		}
		tw.Flush()
	}
	return 0
}

// poolSources lists the sources the queue sends from, with their weights:
// the default pool as queue.ConfigFrom builds it (every source, when no
// pool is named the default).
func poolSources(cfg *config.Config) string {
	qc, err := queue.ConfigFrom(cfg)
	if err != nil {
		return err.Error()
	}
	pool := qc.Pools[qc.DefaultPool]
	if len(pool) == 0 {
		return "the kernel's choice (no pool)"
	}
	parts := make([]string, len(pool))
	for i, src := range pool {
		parts[i] = fmt.Sprintf("%s %s (weight %d)", src.Name, src.IP, src.Weight)
	}
	return "pool " + qc.DefaultPool + ": " + strings.Join(parts, ", ")
}

// printFlowSources prints a running node's flow state of a site and of
// each of its sources.
func printFlowSources(w io.Writer, ex queue.Explanation) {
	if ex.Site == nil {
		fmt.Fprintln(w, "flow:    the node has no mail for this site (no flow state)")
		return
	}
	fmt.Fprintf(w, "flow:    site %s\n", ex.Site.Flow.State)
	for _, d := range ex.Site.Sources {
		line := fmt.Sprintf("%s %s (%d errors in %d attempts)", d.Source, d.State, d.Errors, d.Attempts)
		if d.Diagnosis != "" {
			line += ": " + d.Diagnosis
		}
		wrapIndented(w, "source:  ", "         ", line)
	}
}

// perDay prints a messages_per_day value.
func perDay(n int) string {
	if n <= 0 {
		return "unlimited"
	}
	return fmt.Sprint(n)
}
