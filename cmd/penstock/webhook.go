package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/penstock-mta/penstock/eventsout"
)

// cmdWebhook is "penstock webhook test NAME": one signed test event to the
// named [[webhook]], and the receiver's reply.
func cmdWebhook(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("webhook", stderr)
	cfgPath := fs.String("config", "", "configuration file (default: built-in defaults)")
	pos, ok := positional(fs, args, 2, 2)
	if !ok {
		return 2
	}
	if pos[0] != "test" {
		fmt.Fprintf(stderr, "penstock webhook: unknown subcommand %q: want test\n", pos[0])
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	w, err := cfg.Webhook(pos[1])
	if err != nil {
		fmt.Fprintln(stderr, "penstock webhook:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(w.Timeout)+time.Second)
	defer cancel()
	code, reply, err := eventsout.NewWebhook(w, nil).Test(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "penstock webhook test:", err)
		return 1
	}
	fmt.Fprintf(stdout, "POST %s: HTTP %d\n%s\n", w.URL, code, reply)
	if code < 200 || code > 299 {
		return 1
	}
	return 0
}

// printOutputs is penstock status's section on the event outputs.
func printOutputs(w io.Writer, outs []eventsout.Status) {
	if len(outs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nevent outputs:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  OUTPUT\tKIND\tLAG\tSENT\tFAILURES\tSKIPPED\tLAST ERROR")
	for _, o := range outs {
		last := "-"
		if o.LastError != "" {
			last = o.LastErrorAt.Format(time.DateTime) + " " + o.LastError
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%s\n", o.Name, o.Kind, o.Lag, o.Sent, o.Failures, o.Skipped, last)
	}
	tw.Flush()
}
