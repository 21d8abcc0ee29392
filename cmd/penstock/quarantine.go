package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/reports"
)

// cmdQuarantine dispatches penstock quarantine's subcommands.
func cmdQuarantine(args []string, stdout, stderr io.Writer) int {
	subs := map[string]func([]string, io.Writer, io.Writer) int{
		"list": quarantineList, "show": quarantineShow, "add": quarantineAdd,
		"remove": quarantineRemove, "import": quarantineImport, "release": quarantineRelease,
	}
	usage := func(w io.Writer) {
		fmt.Fprint(w, `usage: penstock quarantine <subcommand> [flags]
  list [-status S] [-reason R] [-match RE] [-domain D] [-from DATE] [-to DATE] [-limit N] [-after ADDR]
  show ADDRESS
  add [-status denylisted|quarantined|allowlisted|valid] [-note T] ADDRESS
  remove ADDRESS
  import [-status S] [-note T] FILE        (one address a line, or CSV; - reads stdin)
  release [filters as list] [-note T] [-dry-run]
DATE is RFC 3339 (2024-05-01T14:00:00Z) or local time: 2024-05-01 or "2024-05-01 14:00".
Every subcommand takes -json and the API flags (-api, -token, -config).
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "help" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	sub, ok := subs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "penstock quarantine: unknown subcommand %q\n", args[0])
		usage(stderr)
		return 2
	}
	return sub(args[1:], stdout, stderr)
}

// qflags are the flags of a quarantine subcommand.
type qflags struct {
	fs     *flag.FlagSet
	client func() (*apiClient, error)
	json   *bool
}

func newQFlags(name string, stderr io.Writer) *qflags {
	fs := flag.NewFlagSet("quarantine "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &qflags{fs: fs, client: clientFlags(fs), json: fs.Bool("json", false, "print JSON")}
}

// parse parses the flags and wants n positional arguments.
func (q *qflags) parse(args []string, n int, usage string) ([]string, bool) {
	q.fs.Usage = func() {
		fmt.Fprintln(q.fs.Output(), "usage: penstock quarantine "+usage)
		q.fs.PrintDefaults()
	}
	pos, ok := parseArgs(q.fs, args)
	if ok && len(pos) != n {
		q.fs.Usage()
		ok = false
	}
	return pos, ok
}

// filterFlags adds the list/release filters and returns a function that
// puts them into query form, dates converted to RFC 3339.
func filterFlags(fs *flag.FlagSet, withStatus bool) func() (map[string]string, error) {
	var status *string
	if withStatus {
		status = fs.String("status", "", "status: valid, with_errors, quarantined, denylisted, allowlisted")
	}
	reason := fs.String("reason", "", "bounce reason, e.g. user_unknown")
	match := fs.String("match", "", "regular expression (RE2) on the last reply text")
	domain := fs.String("domain", "", "recipient domain")
	from := fs.String("from", "", "updated at or after `DATE`")
	to := fs.String("to", "", "updated before `DATE`")
	return func() (map[string]string, error) {
		m := map[string]string{"reason": *reason, "match": *match, "domain": *domain}
		if status != nil {
			m["status"] = *status
		}
		for k, v := range map[string]string{"from": *from, "to": *to} {
			t, err := parseDate(v)
			if err != nil {
				return nil, fmt.Errorf("-%s: %w", k, err)
			}
			if !t.IsZero() {
				m[k] = t.Format(time.RFC3339)
			}
		}
		for k, v := range m {
			if v == "" {
				delete(m, k)
			}
		}
		return m, nil
	}
}

// parseDate reads RFC 3339, or a local date with an optional time.
func parseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2024-05-01T14:00:00Z) or a local date (2024-05-01, \"2024-05-01 14:00\")", s)
}

func quarantineList(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("list", stderr)
	filter := filterFlags(q.fs, true)
	limit := q.fs.Int("limit", 50, "entries at most (1 to 1000)")
	after := q.fs.String("after", "", "start after this `ADDRESS` (the next page)")
	if _, ok := q.parse(args, 0, "list [flags]"); !ok {
		return 2
	}
	f, err := filter()
	if err != nil {
		return fail(stderr, err)
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	v := url.Values{}
	for k, x := range f {
		v.Set(k, x)
	}
	v.Set("limit", strconv.Itoa(*limit))
	if *after != "" {
		v.Set("after", *after)
	}
	var res api.QuarantineList
	if err := c.do("GET", "/api/v1/quarantine?"+v.Encode(), nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *q.json {
		return printJSON(stdout, res)
	}
	if len(res.Entries) == 0 {
		fmt.Fprintln(stdout, "no entries match")
	} else {
		rows := make([][]string, 0, len(res.Entries))
		for _, e := range res.Entries {
			rows = append(rows, []string{e.Address, string(e.Status), strconv.Itoa(e.Errors), e.Reason,
				e.Updated.Local().Format("2006-01-02 15:04")})
		}
		// The last reply and the history are in show.
		writeTable(stdout, []column{
			{name: "ADDRESS", flex: true, keep: true}, {name: "STATUS", max: 11}, {name: "ERR", right: true, max: 3},
			{name: "REASON", max: 12, keep: true}, {name: "UPDATED", max: 16},
		}, rows)
	}
	if res.Next != "" {
		fmt.Fprintf(stdout, "more: add -after %s\n", res.Next)
	}
	fmt.Fprint(stdout, statusCounts(res.Counts))
	return 0
}

// statusCounts is "quarantine: 3 quarantined, 1 denylisted" (the
// statuses with entries, in a fixed order), wrapped at tableWidth.
func statusCounts(m map[quarantine.Status]int) string {
	order := []quarantine.Status{quarantine.Quarantined, quarantine.Denylisted, quarantine.WithErrors, quarantine.Allowlisted, quarantine.Valid}
	var b strings.Builder
	line := "quarantine:"
	sep := ""
	for _, s := range order {
		if m[s] == 0 {
			continue
		}
		part := fmt.Sprintf("%s %s", num(m[s]), s)
		if len(line)+len(sep)+1+len(part) > tableWidth {
			b.WriteString(line + sep + "\n")
			line, sep = "           ", ""
		}
		line += sep + " " + part
		sep = ","
	}
	if sep == "" && b.Len() == 0 {
		line += " empty"
	}
	b.WriteString(line + "\n")
	return b.String()
}

func quarantineShow(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("show", stderr)
	pos, ok := q.parse(args, 1, "show [flags] ADDRESS")
	if !ok {
		return 2
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	var e quarantine.Entry
	if err := c.do("GET", "/api/v1/quarantine/"+url.PathEscape(pos[0]), nil, &e); err != nil {
		return fail(stderr, err)
	}
	if *q.json {
		return printJSON(stdout, e)
	}
	printEntry(stdout, e)
	return 0
}

func printEntry(w io.Writer, e quarantine.Entry) {
	when := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	fmt.Fprintf(w, "address:     %s\n", e.Address)
	fmt.Fprintf(w, "status:      %s\n", e.Status)
	fmt.Fprintf(w, "errors:      %d\n", e.Errors)
	if e.Reason != "" {
		fmt.Fprintf(w, "reason:      %s\n", e.Reason)
	}
	if e.LastCode != 0 || e.LastText != "" {
		code := ""
		if e.LastCode != 0 {
			code = strconv.Itoa(e.LastCode)
		}
		wrapField(w, "last reply:", strings.Join(strings.Fields(code+" "+e.LastEnhanced+" "+e.LastText), " "))
	}
	if e.LastSite != "" {
		fmt.Fprintf(w, "last site:   %s\n", e.LastSite)
	}
	if e.LastMessageID != "" {
		fmt.Fprintf(w, "message:     %s\n", e.LastMessageID)
	}
	if e.Note != "" {
		wrapField(w, "note:", e.Note)
	}
	fmt.Fprintf(w, "first:       %s\n", when(e.First))
	fmt.Fprintf(w, "updated:     %s\n", when(e.Updated))
	if !e.LastSignificant.IsZero() {
		fmt.Fprintf(w, "last error:  %s\n", when(e.LastSignificant))
	}
	for _, h := range e.History {
		wrapField(w, "history:", fmt.Sprintf("%s %s → %s: %s", h.Time.Local().Format("2006-01-02 15:04"), h.From, h.To, h.Why))
	}
}

// wrapField prints label and text, the text wrapped at word boundaries to
// fit tableWidth, continuation lines indented under it.
func wrapField(w io.Writer, label, text string) {
	const indent = 13
	room := tableWidth - indent
	line := ""
	flush := func() {
		fmt.Fprintf(w, "%-*s%s\n", indent, label, line)
		label, line = "", ""
	}
	for _, word := range strings.Fields(text) {
		word = clip(word, room)
		if line != "" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > room {
			flush()
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	flush()
}

func quarantineAdd(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("add", stderr)
	status := q.fs.String("status", "denylisted", "denylisted (never sent to, never released in bulk), quarantined, allowlisted (always sent to) or valid")
	note := q.fs.String("note", "", "note kept on the entry and in its history")
	pos, ok := q.parse(args, 1, "add [flags] ADDRESS")
	if !ok {
		return 2
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	var e quarantine.Entry
	if err := c.do("PUT", "/api/v1/quarantine/"+url.PathEscape(pos[0]), api.QuarantineUpdate{Status: *status, Note: *note}, &e); err != nil {
		return fail(stderr, err)
	}
	if *q.json {
		return printJSON(stdout, e)
	}
	fmt.Fprintf(stdout, "%s: %s\n", e.Address, e.Status)
	return 0
}

func quarantineRemove(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("remove", stderr)
	pos, ok := q.parse(args, 1, "remove [flags] ADDRESS")
	if !ok {
		return 2
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	if err := c.do("DELETE", "/api/v1/quarantine/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return fail(stderr, err)
	}
	if *q.json {
		return printJSON(stdout, map[string]string{"removed": pos[0]})
	}
	fmt.Fprintf(stdout, "%s: removed (forgotten, as if it never failed)\n", pos[0])
	return 0
}

func quarantineImport(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("import", stderr)
	status := q.fs.String("status", "denylisted", "status to set: denylisted, quarantined, allowlisted or valid")
	note := q.fs.String("note", "", "note kept on each entry")
	pos, ok := q.parse(args, 1, "import [flags] FILE (- for stdin)")
	if !ok {
		return 2
	}
	var in io.Reader = os.Stdin
	ctype := "text/plain"
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		in = f
		if strings.EqualFold(filepath.Ext(pos[0]), ".csv") {
			ctype = "text/csv"
		}
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	v := url.Values{"status": {*status}}
	if *note != "" {
		v.Set("note", *note)
	}
	ctx, stop := interruptContext()
	defer stop()
	var res struct {
		Imported int `json:"imported"`
	}
	if err := c.stream(ctx, "POST", "/api/v1/quarantine/import?"+v.Encode(), ctype, in, &res); err != nil {
		return fail(stderr, fmt.Errorf("%s: %w", pos[0], err))
	}
	if *q.json {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "imported %s addresses as %s (those already %s are left alone)\n", num(res.Imported), *status, *status)
	return 0
}

// maxDryRunPages bounds the pages a release preview reads (a million
// entries).
const maxDryRunPages = 1000

func quarantineRelease(args []string, stdout, stderr io.Writer) int {
	q := newQFlags("release", stderr)
	filter := filterFlags(q.fs, false)
	note := q.fs.String("note", "", "note kept on each released entry, e.g. the incident")
	dry := q.fs.Bool("dry-run", false, "count what would be released, release nothing")
	if _, ok := q.parse(args, 0, "release [flags]  (at least one of -reason -match -domain -from -to)"); !ok {
		return 2
	}
	f, err := filter()
	if err != nil {
		return fail(stderr, err)
	}
	c, err := q.client()
	if err != nil {
		return fail(stderr, err)
	}
	if *dry {
		v := url.Values{"status": {"quarantined"}, "limit": {"1000"}}
		for k, x := range f {
			v.Set(k, x)
		}
		n := 0
		var sample []string
		for range maxDryRunPages {
			var res api.QuarantineList
			if err := c.do("GET", "/api/v1/quarantine?"+v.Encode(), nil, &res); err != nil {
				return fail(stderr, err)
			}
			n += len(res.Entries)
			for _, e := range res.Entries {
				if len(sample) < 5 {
					sample = append(sample, e.Address)
				}
			}
			if res.Next == "" {
				break
			}
			v.Set("after", res.Next)
		}
		if *q.json {
			return printJSON(stdout, map[string]any{"would_release": n, "sample": sample})
		}
		msg := fmt.Sprintf("would release %s addresses", num(n))
		if len(sample) > 0 {
			msg += ", e.g. " + strings.Join(sample, ", ")
		}
		fmt.Fprintln(stdout, clip(msg, tableWidth))
		return 0
	}
	body := api.ReleaseRequest{Reason: f["reason"], Match: f["match"], Domain: f["domain"], From: f["from"], To: f["to"], Note: *note}
	var res struct {
		Released int `json:"released"`
	}
	if err := c.do("POST", "/api/v1/quarantine/release", body, &res); err != nil {
		return fail(stderr, err)
	}
	if *q.json {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "released %s addresses (now valid, 0 errors)\n", num(res.Released))
	return 0
}

func cmdBounces(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bounces", stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	site := fs.String("site", "", "one site, or a domain it serves (default: all)")
	n := fs.Int("n", 20, "how many replies (1 to 1000)")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	v := url.Values{"n": {strconv.Itoa(*n)}}
	if *site != "" {
		v.Set("site", *site)
	}
	var res struct {
		Replies []api.BounceReply `json:"replies"`
		Reports *reports.Stats    `json:"reports,omitempty"`
	}
	if err := c.do("GET", "/api/v1/bounces?"+v.Encode(), nil, &res); err != nil {
		return fail(stderr, err)
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	defer printReports(stdout, res.Reports)
	if len(res.Replies) == 0 {
		fmt.Fprintln(stdout, "no failure replies yet")
		return 0
	}
	// Two lines a reply: the numbers, then the reply text under them,
	// which is what a [[bounce_rule]] would match.
	sites := map[string]bool{}
	for _, r := range res.Replies {
		sites[r.Site] = true
	}
	cols := []column{
		{name: "COUNT", right: true, max: 9}, {name: "CODE", max: 4}, {name: "ENHANCED", max: 8},
		{name: "REASON", max: 16, keep: true}, {name: "CLASS", max: 7},
	}
	withSite := len(sites) > 1
	if withSite {
		cols = append(cols, column{name: "SITE", flex: true, keep: true})
	} else {
		fmt.Fprintf(stdout, "site: %s\n", res.Replies[0].Site)
	}
	rows := make([][]string, 0, len(res.Replies))
	for _, r := range res.Replies {
		code := ""
		if r.Code != 0 {
			code = strconv.Itoa(r.Code)
		}
		row := []string{num(int(r.Count)), code, r.Enhanced, r.Reason, r.Class}
		if withSite {
			row = append(row, r.Site)
		}
		rows = append(rows, row)
	}
	var tb strings.Builder
	writeTable(&tb, cols, rows)
	lines := strings.Split(strings.TrimSuffix(tb.String(), "\n"), "\n")
	fmt.Fprintln(stdout, lines[0])
	for i, r := range res.Replies {
		fmt.Fprintln(stdout, lines[i+1])
		fmt.Fprintln(stdout, "       "+clip(r.Text, tableWidth-7))
	}
	unknown := 0
	for _, r := range res.Replies {
		if r.Reason == "unknown" {
			unknown++
		}
	}
	if unknown > 0 {
		fmt.Fprintf(stdout, "%d with reason unknown: no bounce rule matches; add a [[bounce_rule]]\n", unknown)
	}
	return 0
}

// printReports tells what the bounce listener did with the reports it
// received, and lists the latest that could not be verified.
func printReports(w io.Writer, st *reports.Stats) {
	if st == nil {
		return
	}
	tally := func(m map[string]uint64) (uint64, string) {
		var total uint64
		keys := make([]string, 0, len(m))
		for k, n := range m {
			total += n
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + " " + num(int(m[k]))
		}
		return total, strings.Join(parts, ", ")
	}
	acted, actedBy := tally(st.Acted)
	ignored, ignoredBy := tally(st.Ignored)
	if acted+ignored == 0 {
		return
	}
	fmt.Fprintf(w, "\nreports to the bounce listener: %s acted on, %s ignored\n", num(int(acted)), num(int(ignored)))
	if actedBy != "" {
		fmt.Fprintln(w, "  acted on: "+clip(actedBy, tableWidth-12))
	}
	if ignoredBy != "" {
		fmt.Fprintln(w, "  ignored:  "+clip(ignoredBy, tableWidth-12))
	}
	if st.Unverified == 0 {
		return
	}
	fmt.Fprintf(w, "%s unverified (no valid VERP address, no trusted reporter): never acted on\n", num(int(st.Unverified)))
	rows := make([][]string, 0, len(st.Recent))
	for _, u := range st.Recent {
		rows = append(rows, []string{u.Time.UTC().Format("2006-01-02 15:04:05"), u.Remote, u.Reason, u.Kind, strconv.Itoa(u.Named), u.To})
	}
	writeTable(w, []column{{name: "TIME", max: 19}, {name: "REMOTE", max: 39}, {name: "REASON", max: 12}, {name: "KIND", max: 10},
		{name: "NAMED", right: true, max: 6}, {name: "TO", flex: true}}, rows)
}
