// Command penstock is the Penstock MTA: the daemon (serve) and the
// operator's commands, which talk to a running daemon over its HTTP API.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/penstock-mta/penstock/cluster"
)

// command is one entry of the command table. Its texts are the help that
// `penstock help NAME` and `penstock NAME -h` print.
type command struct {
	summary string // one line, for the list of commands
	args    string // positional arguments after the flags, e.g. "ADDRESS|DOMAIN"
	about   string // what it does, a few lines
	example string // one or more example command lines
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"serve": {summary: "run the MTA", run: cmdServe,
			about:   "Runs the MTA in the foreground: SMTP injection, the HTTP API and dashboard,\nand delivery. SIGHUP reloads the configuration; SIGTERM stops gracefully\n(what is not delivered stays in the spool).",
			example: "penstock serve -config /etc/penstock/penstock.toml"},
		"check": {summary: "validate the configuration and print the effective config and rules", run: cmdCheck,
			about:   "Loads and validates a configuration file (errors name file:line and key),\nthen prints the configuration and MX rules in force. With -domain, resolves\nthe domain's MX hosts and says which rule governs them and with what limits.",
			example: "penstock check -config penstock.toml\npenstock check -config penstock.toml -domain gmail.com"},
		"demo": {summary: "run a simulated world and show quotas and flow control at work", run: cmdDemo,
			about:   "Starts simulated receiving providers and DNS on loopback, a node, and sends\nmail through it, showing per-site progress, quotas and flow control.",
			example: "penstock demo"},
		"queue": {summary: "show queues per site: counts by state and waiting reason", run: cmdQueue, args: "[SITE|DOMAIN]",
			about:   "Without an argument, lists every site with queued mail and why it waits.\nWith a site or domain, shows that site in detail.",
			example: "penstock queue\npenstock queue gmail.com -json"},
		"explain": {summary: "explain why mail to an address or domain waits", run: cmdExplain, args: "ADDRESS|DOMAIN",
			about:   "Shows the MX hosts, the rule that governs them and why, quota use,\nflow-control state, the recipients waiting with their status and last reply,\nand a verdict.",
			example: "penstock explain bob@example.com\npenstock explain yahoo.com -api http://127.0.0.1:8025"},
		"suspend": {summary: "suspend a site or domain (-for D), a tenant (-tenant T) or a campaign (-delivery ID)", run: siteAction("suspend"), args: "SITE|DOMAIN",
			about:   "Holds every recipient of a site: they wait as \"Messages queued (suspended by\noperator)\" until resumed or until -for has passed. With -tenant or -delivery,\nholds a tenant's or a campaign's mail at every site (\"Messages queued (tenant\nsuspended)\", \"Messages queued (campaign suspended)\") until resumed, across\nrestarts; the rest of each site's mail goes on. In a cluster a tenant's or a\ncampaign's suspension applies on every node (shared through Redis; made while\nRedis is unreachable, it holds on this node and is shared once Redis is back).",
			example: "penstock suspend yahoo.com -for 30m\npenstock suspend -tenant acme\npenstock suspend -delivery d-42"},
		"resume": {summary: "resume a site or domain (ends operator and flow-control holds), a tenant or a campaign", run: siteAction("resume"), args: "SITE|DOMAIN",
			about:   "Ends an operator suspension and any flow-control backoff or suspension of\nthe site at once. With -tenant or -delivery, ends that suspension: its mail\nis due at once (on every node of a cluster).",
			example: "penstock resume yahoo.com\npenstock resume -tenant acme"},
		"retry": {summary: "make every queued recipient of a site due now", run: siteAction("retry"), args: "SITE|DOMAIN",
			about:   "Makes every recipient of the site that waits for its next retry due now\n(quotas and flow control still apply).",
			example: "penstock retry example.com"},
		"purge": {summary: "cancel every queued recipient of a site or domain", run: siteAction("purge"), args: "SITE|DOMAIN",
			about:   "Cancels every queued recipient of the site: they are logged as cancelled\nand never sent.",
			example: "penstock purge example.com"},
		"reload": {summary: "make a running daemon reload its configuration file", run: cmdReload,
			about:   "Asks the running daemon to reload its configuration file, as SIGHUP does.\nA file with errors is refused and the running configuration stays.",
			example: "penstock reload"},
		"status": {summary: "totals and the local-problem indicator", run: cmdStatus,
			about:   "Prints the node's totals (queued, delivered, bounced...) and whether a\nlocal problem (our resolver, sockets or network) is detected.",
			example: "penstock status -api http://127.0.0.1:8025"},
		"cluster": {summary: "cluster status: live nodes, their sources, connections held per rule", run: cluster.CLI, args: "status",
			about:   "Shows the cluster as Redis sees it: live nodes, their sources, connections\nheld per rule, and whether any node runs degraded.",
			example: "penstock cluster status -config penstock.toml"},
		"bench": {summary: "throughput benchmark: SMTP in, durable spool, SMTP out to a loopback sink", run: cmdBench,
			about:   "Measures end-to-end throughput on this machine: SMTP injection, the durable\nspool, delivery to a loopback sink; prints msgs/s, CPU per message and\npeak RSS.",
			example: "penstock bench -n 20000"},
		"version": {summary: "print the version of this binary", run: cmdVersion,
			about:   "Prints the module version, the source revision and the Go version this\nbinary was built with, and what makes its DKIM RSA signatures: libcrypto\n(OpenSSL 3, opened at run time; a cgo build on Linux) or Go's crypto/rsa\n(a static build, or no libcrypto.so.3 on the machine).",
			example: "penstock version"},
		"dkim": {summary: "make a DKIM key and its DNS record (keygen), check the published records (check), or show signing by From domain (status)", run: cmdDKIM, args: "keygen|check|status",
			about:   "keygen writes a private key (mode 0600) and prints the DNS TXT record to\npublish and the [[dkim]] lines to add; check resolves each configured\nselector's TXT record and says whether it is published and matches the key;\nstatus asks the running server, per From domain, how many messages were\nsigned (aligned), signed by a third party, or left unsigned and why.",
			example: "penstock dkim keygen -domain example.com -selector s2026 -type ed25519\npenstock dkim check -config penstock.toml\npenstock dkim status"},
		"webhook": {summary: "post one signed test event to a [[webhook]] and print the reply", run: cmdWebhook, args: "test NAME",
			about:   "Posts a JSON array holding one event of type \"Test\" to the named\n[[webhook]]'s URL, signed with its secret like every batch, and prints\nthe HTTP status and the start of the reply. Exits 1 unless the reply is 2xx.",
			example: "penstock webhook test crm -config penstock.toml"},
		"hostile": {summary: "replay hostile conditions (crash: SIGKILLs; diskfull: a full spool disk) and count lost mail", run: cmdHostile, args: "crash|diskfull",
			about:   "Runs a built penstock binary as a child process against a loopback sink and\nreplays hostile conditions: crash (SIGKILLs during injection and delivery)\nor diskfull (the spool on a small tmpfs). Every acknowledged message must\narrive: it counts acked, received, duplicates and lost, and exits 1 if\nanything is lost.",
			example: "penstock hostile crash -kills 20\npenstock hostile diskfull -build"},
		"help": {summary: "describe a command: what it does, its arguments and an example", run: cmdHelp, args: "[COMMAND]",
			about:   "Without an argument, lists the commands. With one, describes it.",
			example: "penstock help explain"},

		// Campaigns and the quarantine.
		"send": {summary: "send a campaign (template + recipient list) and follow its progress", run: cmdSend, args: "-template T.json -recipients R.csv|R.ndjson",
			about:   "Creates a delivery through the API from a template file and a CSV or\nNDJSON recipient list, then follows its progress until done.",
			example: "penstock send -template welcome.json -recipients list.csv"},
		"deliveries": {summary: "list deliveries, show one's progress, or cancel one (-cancel ID)", run: cmdDeliveries, args: "[ID]",
			about:   "Lists deliveries (campaigns), shows one's counts, or cancels one.",
			example: "penstock deliveries\npenstock deliveries d-1234 -json\npenstock deliveries -cancel d-1234"},
		"quarantine": {summary: "list, show, add, remove, import or release quarantined addresses", run: cmdQuarantine, args: "list|show|add|remove|import|release ...",
			about:   "Manages the quarantine: addresses that bounced hard, complained or were\nadded by an operator are suppressed at injection.",
			example: "penstock quarantine list\npenstock quarantine show bob@example.com"},
		"advise": {summary: "are my thresholds right? per-rule advice from the delivery log, with config diffs", run: cmdAdvise,
			about:   "Reads the delivery log of a period (-since, default 7d) and reports per MX\nrule and site deliveries, deferrals, flow-control episodes and hourly\nthroughput, then recommends: raise a limit mail waited on, lower one the\nreceiver throttles at, drop a rule that never matches. Each recommendation\nhas its evidence, the [[mx_rule]] diff and the expected effect. With\n-config it reads [server] log_dir itself; otherwise it asks the API.\n\n-what-if (with -config) replays the period in the simulator, against the\nadvisor's proposal or the rules of -proposed FILE, and compares deliveries,\ndeferrals and time to deliver, current against proposed, per site\n(-site S for one). The model knows only what the log recorded; the output\nlists its assumptions.",
			example: "penstock advise -config penstock.toml -since 7d\npenstock advise -rule yahoo -api http://127.0.0.1:8025 -json\npenstock advise -what-if -config penstock.toml -since 2d\npenstock advise -config penstock.toml -proposed new.toml -site yahoo.com"},
		"warmup": {summary: "IP warm-up: each warming source's day, step, today's volume and limit, health, next decision", run: cmdWarmup, args: "status",
			about:   "Shows each [[warmup]] source and provider group: the day of its warm-up,\nthe step of its schedule, the messages sent today against the day's limit,\ntoday's and yesterday's health (deferral ratio, throttles, complaints) and\nwhat the next day boundary would decide. With -config it reads the state\nsaved in [server] spool_dir; otherwise it asks the API.",
			example: "penstock warmup status -config penstock.toml\npenstock warmup status -api http://127.0.0.1:8025 -json"},
		"bounces": {summary: "the most frequent failure replies and their bounce reason and class", run: cmdBounces,
			about:   "The most frequent failure replies, normalised, with how the bounce rules\nqualified them: a frequent reply with reason unknown wants a [[bounce_rule]].",
			example: "penstock bounces -site gmail.com -n 50"},
		"tlsrpt": {summary: "the SMTP TLS reports (RFC 8460) this node would send: TLS successes and failures per domain and day", run: cmdTLSRPT,
			about:   "Shows the TLS outcomes of outgoing sessions, aggregated per recipient domain\nand UTC day as the daily RFC 8460 report sends them ([tlsrpt] enabled):\nsuccessful sessions, failures by result type with the MX host and details.",
			example: "penstock tlsrpt\npenstock tlsrpt -domain example.com -json"},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		return cmdVersion(nil, stdout, stderr)
	}
	c, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "penstock: unknown command %q\n", args[0])
		if s := suggest(args[0]); s != "" {
			fmt.Fprintf(stderr, "Did you mean 'penstock %s'?\n", s)
		}
		fmt.Fprintln(stderr, "Run 'penstock help' for the list of commands.")
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}
