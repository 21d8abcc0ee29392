package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/penstock-mta/penstock/api"
)

// tableWidth is the width operator tables fit in.
const tableWidth = 80

// cmdDeliveries lists deliveries, shows one, or cancels one.
func cmdDeliveries(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deliveries", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	cancel := fs.String("cancel", "", "cancel delivery `ID`: its queued recipients are dropped (sent ones stay sent)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: penstock deliveries [flags] [ID]\n       penstock deliveries -cancel ID")
		fs.PrintDefaults()
	}
	pos, ok := parseArgs(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 1 || *cancel != "" && len(pos) > 0 {
		fs.Usage()
		return 2
	}
	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	switch {
	case *cancel != "":
		var res struct {
			ID        string `json:"id"`
			Cancelled int    `json:"cancelled"`
		}
		if err := c.do("POST", "/api/v1/deliveries/"+url.PathEscape(*cancel)+"/cancel", nil, &res); err != nil {
			return fail(stderr, err)
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		fmt.Fprintf(stdout, "delivery %s cancelled: %d queued recipients dropped\n", *cancel, res.Cancelled)
	case len(pos) == 1:
		var v api.DeliveryView
		if err := c.do("GET", "/api/v1/deliveries/"+url.PathEscape(pos[0]), nil, &v); err != nil {
			return fail(stderr, err)
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		printDelivery(stdout, v, time.Now())
	default:
		var res struct {
			Deliveries []api.DeliveryView `json:"deliveries"`
		}
		if err := c.do("GET", "/api/v1/deliveries", nil, &res); err != nil {
			return fail(stderr, err)
		}
		if *asJSON {
			return printJSON(stdout, res)
		}
		printDeliveries(stdout, res.Deliveries)
	}
	return 0
}

// parseArgs parses flags placed before, between or after the positional
// arguments (penstock quarantine show ADDR -json), which flag.Parse alone
// stops at. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, bool) {
	var pos []string
	for range len(args) + 1 { // each round consumes at least one argument
		if fs.Parse(args) != nil {
			return nil, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, true
}

func printDeliveries(w io.Writer, ds []api.DeliveryView) {
	if len(ds) == 0 {
		fmt.Fprintln(w, "no deliveries")
		return
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		done := "no"
		if d.Done {
			done = "yes"
		}
		rows = append(rows, []string{d.ID, d.Name, num(d.Total), num(d.Counts.Delivered), num(d.Counts.Bounced),
			num(d.Counts.Queued), num(int(d.RatePerMinute + 0.5)), done})
	}
	writeTable(w, []column{
		{name: "ID", max: 17, keep: true}, {name: "NAME", flex: true}, {name: "TOTAL", right: true, max: 9},
		{name: "DELIVERED", right: true, max: 9}, {name: "BOUNCED", right: true, max: 9},
		{name: "QUEUED", right: true, max: 9}, {name: "/MIN", right: true, max: 7}, {name: "DONE", max: 4},
	}, rows)
}

func printDelivery(w io.Writer, v api.DeliveryView, now time.Time) {
	kv := func(k, val string) { fmt.Fprintf(w, "%-18s %s\n", k+":", val) }
	kv("delivery", fmt.Sprintf("%s %q", v.ID, clip(v.Name, tableWidth-40)))
	sender := v.Sender
	if v.Pool != "" {
		sender += " (pool " + v.Pool + ")"
	}
	kv("sender", sender)
	if !v.Created.IsZero() {
		kv("created", v.Created.Local().Format("2006-01-02 15:04:05"))
	}
	printCounts(w, v)
	if v.Counts.Queued > 0 {
		for _, k := range sortedByCount(v.ByStatus) {
			fmt.Fprintf(w, "%18s %11s  %s\n", "", num(v.ByStatus[k]), clip(k, tableWidth-33))
		}
	}
	kv("rate", num(int(v.RatePerMinute+0.5))+"/min")
	if v.ETA != nil {
		kv("ETA", fmt.Sprintf("%s (in %s)", v.ETA.Local().Format("2006-01-02 15:04:05"), roundDur(v.ETA.Sub(now))))
	}
	if v.ETANote != "" {
		kv("ETA note", clip(v.ETANote, tableWidth-20))
	}
	if v.Done {
		kv("done", "yes")
	} else {
		kv("done", "no")
	}
}

// printCounts prints a delivery's counts, bounces by reason under them.
func printCounts(w io.Writer, v api.DeliveryView) {
	c := v.Counts
	line := func(name string, n int) {
		pct := ""
		if v.Total > 0 && n > 0 {
			pct = fmt.Sprintf("  %5.1f%%", float64(n)*100/float64(v.Total))
		}
		fmt.Fprintf(w, "%-18s %11s%s\n", name+":", num(n), pct)
	}
	fmt.Fprintf(w, "%-18s %11s\n", "total:", num(v.Total))
	line("delivered", c.Delivered)
	line("bounced", c.Bounced)
	for _, k := range sortedByCount(v.BouncedByReason) {
		fmt.Fprintf(w, "  %-16s %11s\n", clip(k, 16), num(v.BouncedByReason[k]))
	}
	line("suppressed", c.Suppressed)
	line("expired", c.Expired)
	line("cancelled", c.Cancelled)
	if v.Recovered > 0 {
		line("recovered", v.Recovered)
	}
	line("queued", c.Queued)
}

// sortedByCount returns m's keys, largest count first.
func sortedByCount(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// num writes n with thousands separators: 1,234,567.
func num(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + num(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// roundDur is d for people: whole seconds, or minutes past an hour.
func roundDur(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d >= time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

// clip shortens s to n characters, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n < 1 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// clipMiddle shortens s to n characters by cutting out its middle.
func clipMiddle(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 3 {
		return clip(s, n)
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// column describes one column of writeTable.
type column struct {
	name  string
	right bool // numbers
	max   int  // characters at most (0: no cap)
	flex  bool // takes the width the others leave
	mid   bool // cut in the middle (addresses: the domain stays)
	keep  bool // never cut: names an operator copies (site, rule, reason, address, id)
}

// writeTable writes rows under a header, columns two spaces apart, within
// tableWidth: capped columns are cut to their cap, the flex column gets
// what remains (at least 8), and cut values end in "…". A kept column is
// never cut: a row with a long name runs past tableWidth rather than
// hide what the operator must copy (and -json has everything).
func writeTable(w io.Writer, cols []column, rows [][]string) {
	const gap = 2
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = utf8.RuneCountInString(c.name)
		for _, r := range rows {
			width[i] = max(width[i], utf8.RuneCountInString(r[i]))
		}
		if c.max > 0 && !c.keep {
			width[i] = min(width[i], max(c.max, utf8.RuneCountInString(c.name)))
		}
	}
	for i, c := range cols {
		if !c.flex || c.keep {
			continue
		}
		rest := tableWidth - gap*(len(cols)-1)
		for j := range cols {
			if j != i {
				rest -= width[j]
			}
		}
		width[i] = min(width[i], max(rest, 8))
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cols {
			v := clip(cells[i], width[i])
			if c.mid {
				v = clipMiddle(cells[i], width[i])
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(v))
			if i > 0 {
				b.WriteString(strings.Repeat(" ", gap))
			}
			if c.right {
				b.WriteString(pad + v)
			} else if i < len(cols)-1 {
				b.WriteString(v + pad)
			} else {
				b.WriteString(v)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c.name
	}
	line(head)
	for _, r := range rows {
		line(r)
	}
}
