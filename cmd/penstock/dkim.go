package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/dns"
)

// cmdDKIM is `penstock dkim keygen|check|status`.
func cmdDKIM(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: penstock dkim keygen -domain D -selector S [-type rsa|ed25519] [-bits 2048] [-out FILE]\n       penstock dkim check [-config F]\n       penstock dkim status [-api URL] [-json]")
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		describe(stderr, "dkim", commands()["dkim"])
		return 0
	case "keygen":
		return dkimKeygen(args[1:], stdout, stderr)
	case "check":
		return dkimCheck(args[1:], stdout, stderr)
	case "status":
		return dkimStatus(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "penstock dkim: unknown subcommand %q: want keygen, check or status\n", args[0])
	return 2
}

func dkimKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("domain", "", "signing domain (d=), such as example.com")
	selector := fs.String("selector", "", "selector (s=), such as 2025a: the key is published at SELECTOR._domainkey.DOMAIN")
	typ := fs.String("type", "rsa", "key type: rsa or ed25519")
	bits := fs.Int("bits", 2048, "RSA key size, at least 2048")
	out := fs.String("out", "", "private key file to write (default DOMAIN.SELECTOR.pem); never overwritten")
	if fs.Parse(args) != nil {
		return 2
	}
	if *domain == "" || *selector == "" {
		fmt.Fprintln(stderr, "penstock dkim keygen: -domain and -selector are required")
		return 2
	}
	if *out == "" {
		*out = *domain + "." + *selector + ".pem"
	}
	// The same checks as a [[dkim]] entry gets, so the key printed here
	// can be configured as printed.
	cfg := config.Default()
	cfg.DKIM = []config.DKIM{{Domain: *domain, Selector: *selector, KeyFile: *out}}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "penstock dkim keygen:", err)
		return 2
	}
	key, pemData, err := dkim.GenerateKey(*typ, *bits)
	if err != nil {
		fmt.Fprintln(stderr, "penstock dkim keygen:", err)
		return 2
	}
	record, err := dkim.Record(key.Public())
	if err != nil {
		fmt.Fprintln(stderr, "penstock dkim keygen:", err)
		return 1
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			fmt.Fprintf(stderr, "penstock dkim keygen: %s exists: not overwritten (a key in use must stay until its selector is retired)\n", *out)
		} else {
			fmt.Fprintln(stderr, "penstock dkim keygen:", err)
		}
		return 1
	}
	_, werr := f.Write(pemData)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(*out)
		fmt.Fprintln(stderr, "penstock dkim keygen:", err)
		return 1
	}
	d := cfg.DKIM[0].Domain
	name := dkim.RecordName(*selector, d)
	fmt.Fprintf(stdout, "Wrote the private key to %s (mode 0600).\n\n", *out)
	fmt.Fprintf(stdout, "Publish this TXT record (zone file form, strings of at most 255 bytes):\n\n")
	fmt.Fprintf(stdout, "%s. IN TXT ( %s )\n\n", name, dkim.ZoneStrings(record))
	fmt.Fprintf(stdout, "name:  %s\nvalue: %s\n\n", name, record)
	fmt.Fprintf(stdout, "Then add to penstock.toml (and run 'penstock dkim check' once the record is live):\n\n")
	fmt.Fprintf(stdout, "[[dkim]]\ndomain = %q\nselector = %q\nkey_file = %q\n", d, *selector, *out)
	return 0
}

func dkimCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dkim check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	if fs.Parse(args) != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	signer, ok := loadDKIM(cfg, stderr)
	if !ok {
		return 1
	}
	if len(cfg.DKIM) == 0 {
		fmt.Fprintln(stdout, "no [[dkim]] key configured: mail leaves unsigned")
		return 0
	}
	r, err := dns.NewTXT(cfg.DNS.Nameservers, time.Duration(cfg.DNS.Timeout))
	if err != nil {
		fmt.Fprintln(stderr, "dns:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := time.Now()
	statuses := dkim.Check(ctx, r, signer)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKEY\tACTIVE\tSTATE\tDETAIL")
	bad := 0
	for _, st := range statuses {
		active := "no"
		if st.Key.ActiveAt(now) {
			active = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s %d\t%s\t%s\t%s\n", st.Name, st.Key.Algorithm, st.Key.Bits, active, st.State, st.Detail)
		if st.State != dkim.StatePublished {
			bad++
		}
	}
	tw.Flush()
	for _, st := range statuses {
		if st.Want != "" && st.State != dkim.StateLookupFail {
			fmt.Fprintf(stdout, "\n%s: publish\n%s. IN TXT ( %s )\n", st.Name, st.Name, dkim.ZoneStrings(st.Want))
		}
	}
	if bad > 0 {
		fmt.Fprintf(stdout, "\n%d of %d key(s) not published as configured\n", bad, len(statuses))
		return 1
	}
	fmt.Fprintf(stdout, "\nall %d key(s) published and verified\n", len(statuses))
	return 0
}

// loadDKIM loads the [[dkim]] keys, printing warnings and problems to
// stderr; ok is false when a key cannot be used. `penstock check` runs it
// too.
func loadDKIM(cfg *config.Config, stderr io.Writer) (*dkim.Signer, bool) {
	s, warnings, err := dkim.New(cfg)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	return s, true
}

// dkimStatus prints, per sending (From) domain, whether the running
// server's mail is signed and aligned (GET /api/v1/dkim).
func dkimStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dkim status", stderr)
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
		Domains []dkim.DomainStatus `json:"domains"`
	}
	if err := c.do("GET", "/api/v1/dkim", nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	if len(res.Domains) == 0 {
		fmt.Fprintln(stdout, "no mail through the signing stage in the last day")
		return 0
	}
	fmt.Fprintln(stdout, "messages signed (aligned) / signed by a third party / unsigned, by From domain")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM DOMAIN\tSTATUS\tLAST HOUR\tLAST DAY")
	for _, d := range res.Domains {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Domain, d.Status, dkimCounts(d.LastHour), dkimCounts(d.LastDay))
	}
	tw.Flush()
	for _, d := range res.Domains {
		if r := unsignedReasons(d.LastDay); r != "" {
			fmt.Fprintf(stdout, "%s: unsigned in the last day: %s\n", d.Domain, r)
		}
		if d.SignedBy != "" {
			fmt.Fprintf(stdout, "%s: last signed by %s\n", d.Domain, d.SignedBy)
		}
	}
	return 0
}

// dkimCounts is "5,000 / 2 / 4": signed, third-party, unsigned.
func dkimCounts(c dkim.SigningCounts) string {
	var n uint64
	for _, k := range c.Unsigned {
		n += k
	}
	return fmt.Sprintf("%s / %s / %s", num(int(c.Signed)), num(int(c.ThirdParty)), num(int(n)))
}

// unsignedReasons is "bad_from 1, no_key 3".
func unsignedReasons(c dkim.SigningCounts) string {
	reasons := make([]string, 0, len(c.Unsigned))
	for r, k := range c.Unsigned {
		reasons = append(reasons, r+" "+num(int(k)))
	}
	slices.Sort(reasons)
	return strings.Join(reasons, ", ")
}
