// Command penstock is the Penstock MTA: the daemon (serve) and the
// operator's commands, which talk to a running daemon over its HTTP API.
package main

import (
	"fmt"
	"github.com/penstock-mta/penstock/cluster"
	"io"
	"os"
	"sort"
)

type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {"run the MTA", cmdServe},
		"check":   {"validate the configuration and print the effective config and rules", cmdCheck},
		"demo":    {"run a simulated world and show quotas and flow control at work", cmdDemo},
		"queue":   {"show queues per site: counts by state and waiting reason", cmdQueue},
		"explain": {"explain why mail to an address or domain waits", cmdExplain},
		"suspend": {"suspend a site or domain (-for D)", siteAction("suspend")},
		"resume":  {"resume a site or domain (ends operator and flow-control holds)", siteAction("resume")},
		"retry":   {"make every queued recipient of a site due now", siteAction("retry")},
		"purge":   {"cancel every queued recipient of a site or domain", siteAction("purge")},
		"reload":  {"make a running daemon reload its configuration file", cmdReload},
		"status":  {"totals and the local-problem indicator", cmdStatus},
		"cluster": {"cluster status: live nodes, their sources, connections held per rule", cluster.CLI},
		"bench":   {"throughput benchmark: SMTP in, durable spool, SMTP out to a loopback sink", cmdBench},
		"hostile": {"replay hostile conditions (crash: SIGKILLs; diskfull: a full spool disk) and count lost mail", cmdHostile},

		// Campaigns and the quarantine.
		"send":       {"send a campaign (template + recipient list) and follow its progress", cmdSend},
		"deliveries": {"list deliveries, show one's progress, or cancel one (-cancel ID)", cmdDeliveries},
		"quarantine": {"list, show, add, remove, import or release quarantined addresses", cmdQuarantine},
		"bounces":    {"the most frequent failure replies and their bounce reason and class", cmdBounces},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: penstock <command> [flags]")
	fmt.Fprintln(w)
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'penstock <command> -h' for a command's flags.")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	c, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "penstock: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}
