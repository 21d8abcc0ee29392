package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/penstock-mta/penstock/api"
)

func cmdTLSRPT(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tlsrpt", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON (each report as it is sent, under \"report\")")
	domain := fs.String("domain", "", "one policy domain (default: all)")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	path := "/api/v1/tlsrpt"
	if *domain != "" {
		path += "?" + url.Values{"domain": {*domain}}.Encode()
	}
	var res api.TLSReportsView
	if err := c.do("GET", path, nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	state := "off ([tlsrpt] enabled = false): nothing is sent"
	if res.Enabled {
		state = "on: finished days are sent daily at " + res.SendAt + " UTC to each domain's rua"
	}
	fmt.Fprintln(stdout, "TLS reporting "+state)
	if len(res.Reports) == 0 {
		fmt.Fprintln(stdout, "no TLS outcomes recorded")
		return 0
	}
	for _, r := range res.Reports {
		for _, p := range r.Report.Policies {
			fmt.Fprintf(stdout, "%s  %s  %s successful, %s failed  (%s)\n", r.Day, r.Domain,
				num(int(p.Summary.Successful)), num(int(p.Summary.Failed)), p.Policy.Type)
			for _, f := range p.FailureDetails {
				where := strings.TrimSpace(f.ReceivingMXHostname + " " + f.ReceivingIP)
				fmt.Fprintf(stdout, "    %s × %s  %s\n", num(int(f.FailedSessionCount)), f.ResultType, where)
				if f.AdditionalInformation != "" {
					fmt.Fprintln(stdout, "        "+clip(f.AdditionalInformation, tableWidth-8))
				}
			}
		}
	}
	return 0
}
