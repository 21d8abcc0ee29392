package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/campaign"
)

// send creates a delivery, streams its recipient list, then follows it to
// the end. The delivery lives in the daemon: stopping the command (Ctrl-C)
// stops the following, never the delivery.

// sendOpts are the parts of send that tests replace.
type sendOpts struct {
	tty   bool          // redraw one progress line with \r
	width int           // terminal width
	poll  time.Duration // between progress requests
	every time.Duration // between progress lines when not on a terminal
	now   func() time.Time
}

func cmdSend(args []string, stdout, stderr io.Writer) int {
	ctx, stop := interruptContext()
	defer stop()
	width := tableWidth
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n >= 40 && n <= 1000 {
		width = n
	}
	return runSend(ctx, args, stdout, stderr, sendOpts{
		tty: isTerminal(stdout), width: width, poll: time.Second, every: 5 * time.Second, now: time.Now,
	})
}

// interruptContext is cancelled by Ctrl-C: what the command waits for stops,
// the daemon's work goes on.
func interruptContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt)
}

// maxTemplateFile bounds the template file read into memory.
const maxTemplateFile = 16 << 20

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer, o sendOpts) int {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	client := clientFlags(fs)
	tplPath := fs.String("template", "", "template `FILE` (JSON: from, subject, text, html, headers, list_unsubscribe, feedback_id)")
	rcptPath := fs.String("recipients", "", "recipient list `FILE`: .csv (a header row with an email column; other columns are variables) or .ndjson ({\"address\", \"vars\"} a line)")
	from := fs.String("from", "", "envelope sender (default: the template's From address)")
	name := fs.String("name", "", "delivery name (default: the template file's name)")
	pool := fs.String("pool", "", "source pool (default: [delivery] default_pool)")
	noWait := fs.Bool("no-wait", false, "return once the recipients are queued")
	asJSON := fs.Bool("json", false, "print JSON: the delivery when done (with -no-wait, at once)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: penstock send -template T.json -recipients R.csv|R.ndjson [flags]")
		fs.PrintDefaults()
	}
	pos, ok := parseArgs(fs, args)
	if !ok {
		return 2
	}
	if len(pos) > 0 || *tplPath == "" || *rcptPath == "" {
		fs.Usage()
		return 2
	}

	// Everything that can be checked here is, before anything is created.
	tpl, err := readTemplate(*tplPath)
	if err != nil {
		return fail(stderr, err)
	}
	ctype, err := recipientsType(*rcptPath)
	if err != nil {
		return fail(stderr, err)
	}
	f, err := os.Open(*rcptPath)
	if err != nil {
		return fail(stderr, err)
	}
	defer f.Close()
	total, err := countRecipients(f, ctype)
	if err != nil {
		return fail(stderr, fmt.Errorf("%s: %w (nothing sent)", *rcptPath, err))
	}
	if total == 0 {
		return fail(stderr, fmt.Errorf("%s: no recipients (nothing sent)", *rcptPath))
	}
	sender := *from
	if sender == "" {
		a, err := mail.ParseAddress(tpl.From)
		if err != nil || strings.Contains(tpl.From, "{{") {
			return fail(stderr, fmt.Errorf("%s: cannot take the envelope sender from From %q: give -from", *tplPath, tpl.From))
		}
		sender = a.Address
	}
	if *name == "" {
		*name = strings.TrimSuffix(filepath.Base(*tplPath), filepath.Ext(*tplPath))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(stderr, err)
	}

	c, err := client()
	if err != nil {
		return fail(stderr, err)
	}
	var v api.DeliveryView
	if err := c.do("POST", "/api/v1/deliveries", api.DeliveryRequest{Name: *name, From: sender, Pool: *pool, Template: tpl}, &v); err != nil {
		return fail(stderr, fmt.Errorf("creating the delivery: %w", err))
	}
	start := o.now()
	var added api.AddResult
	if err := c.stream(ctx, "POST", "/api/v1/deliveries/"+url.PathEscape(v.ID)+"/recipients", ctype, f, &added); err != nil {
		fmt.Fprintf(stderr, "penstock: delivery %s: recipients: %v\n", v.ID, err)
		fmt.Fprintf(stderr, "penstock: recipients before the failure are queued; cancel them with: penstock deliveries -cancel %s\n", v.ID)
		return 1
	}
	if *noWait {
		if *asJSON {
			return printJSON(stdout, map[string]any{"delivery": v, "recipients": added})
		}
		fmt.Fprintf(stdout, "delivery %s: %s queued, %s suppressed (quarantined)\n", v.ID, num(added.Accepted), num(added.Suppressed))
		fmt.Fprintf(stdout, "follow it with: penstock deliveries %s\n", v.ID)
		return 0
	}
	if !*asJSON {
		fmt.Fprintf(stdout, "delivery %s %q: %s queued, %s suppressed (quarantined)\n", v.ID, clip(v.Name, 20), num(added.Accepted), num(added.Suppressed))
	}
	return follow(ctx, c, v.ID, start, *asJSON, stdout, stderr, o)
}

// readTemplate reads a campaign.Template strictly and checks it as the
// daemon will, so that a typo fails here, naming the file.
func readTemplate(path string) (campaign.Template, error) {
	var t campaign.Template
	data, err := os.ReadFile(path)
	if err != nil {
		return t, err
	}
	if len(data) > maxTemplateFile {
		return t, fmt.Errorf("%s: larger than %d bytes", path, maxTemplateFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("%s: %v", path, err)
	}
	if dec.More() {
		return t, fmt.Errorf("%s: data after the JSON object", path)
	}
	if _, err := campaign.Compile(t); err != nil {
		return t, fmt.Errorf("%s: %v", path, err)
	}
	return t, nil
}

// recipientsType is the Content-Type of a recipient list, by extension.
func recipientsType(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return "text/csv", nil
	case ".ndjson", ".jsonl":
		return "application/x-ndjson", nil
	}
	return "", fmt.Errorf("%s: name the list .csv or .ndjson (the extension says its format)", path)
}

// countRecipients reads the whole list as the daemon will, so that a bad
// line is found before the delivery exists.
func countRecipients(r io.Reader, ctype string) (int, error) {
	read := campaign.ReadNDJSON
	if ctype == "text/csv" {
		read = campaign.ReadCSV
	}
	n := 0
	err := read(r, func(campaign.Recipient) error { n++; return nil })
	return n, err
}

// stream sends body as is (not JSON; nil for none) and decodes the JSON
// answer. It has no overall timeout: a list of millions takes a while; ctx
// stops it.
func (c *apiClient) stream(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: %w", ctx.Err())
		}
		return fmt.Errorf("cannot reach penstock at %s (is 'penstock serve' running?): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error    string `json:"error"`
			Accepted *int   `json:"accepted"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			if e.Accepted != nil {
				return fmt.Errorf("%s (HTTP %d; %d queued before it)", e.Error, resp.StatusCode, *e.Accepted)
			}
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// maxPollErrors is how many progress requests in a row may fail (a node
// restarting) before send gives up following.
const maxPollErrors = 10

// follow polls the delivery until it is done, drawing progress, then
// prints the summary. Interrupted, it stops following and says how to
// come back.
func follow(ctx context.Context, c *apiClient, id string, start time.Time, asJSON bool, stdout, stderr io.Writer, o sendOpts) int {
	tick := time.NewTicker(o.poll)
	defer tick.Stop()
	var (
		v        api.DeliveryView
		errs     int
		lastLine time.Time
		drawn    bool
	)
	for {
		var cur api.DeliveryView // fresh: omitted fields must not keep old values
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.stream(pctx, "GET", "/api/v1/deliveries/"+url.PathEscape(id), "", nil, &cur)
		cancel()
		if err == nil {
			v = cur
		}
		switch {
		case ctx.Err() != nil:
			// Interrupted during the request: the select below says so.
		case err != nil:
			errs++
			if errs >= maxPollErrors {
				if drawn {
					fmt.Fprintln(stdout)
				}
				fmt.Fprintf(stderr, "penstock: stopped following delivery %s: %v\n", id, err)
				return 1
			}
		case asJSON:
			errs = 0
		default:
			errs = 0
			now := o.now()
			if o.tty {
				fmt.Fprint(stdout, "\r"+progressBar(v, now, o.width))
				drawn = true
			} else if lastLine.IsZero() || now.Sub(lastLine) >= o.every || v.Done {
				fmt.Fprintln(stdout, progressLine(now.Format("15:04:05")+" ", v, now, o.width))
				lastLine = now
			}
		}
		if err == nil && v.Done {
			break
		}
		select {
		case <-ctx.Done():
			if drawn {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintf(stderr, "penstock: stopped following; delivery %s goes on (penstock deliveries %s; cancel with -cancel %s)\n", id, id, id)
			return 130
		case <-tick.C:
		}
	}
	if asJSON {
		return printJSON(stdout, v)
	}
	if drawn {
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "delivery %s %q done in %s\n", v.ID, clip(v.Name, 30), roundDur(o.now().Sub(start)))
	printCounts(stdout, v)
	return 0
}

// finals counts a delivery's recipients that need nothing more.
func finals(v api.DeliveryView) int {
	c := v.Counts
	return c.Delivered + c.Bounced + c.Suppressed + c.Expired + c.Cancelled + v.Recovered
}

// progressText is one line of progress: done/total, ETA, rate, then the
// outcomes (what a narrow line cuts first), in words or, with short, in
// abbreviations.
func progressText(v api.DeliveryView, now time.Time, short bool) string {
	// Recipients held (suspended site, flow control, quota, MX lookup)
	// are not in the ETA: the line says how many wait beyond it.
	eta := "-"
	switch {
	case v.Done:
		eta = "done"
	case v.ETA != nil && v.Held > 0:
		eta = roundDur(v.ETA.Sub(now)) + " +" + num(v.Held) + " held"
	case v.ETA != nil:
		eta = roundDur(v.ETA.Sub(now))
	case v.Held > 0:
		eta = "unknown (" + num(v.Held) + " held)"
	}
	pct := 100
	if v.Total > 0 {
		pct = finals(v) * 100 / v.Total
	}
	words := [3]string{"delivered", "bounced", "suppressed"}
	if short {
		words = [3]string{"dlv", "bnc", "sup"}
	}
	return fmt.Sprintf("%s/%s %d%%  ETA %s  %s/min  %s %s  %s %s  %s %s",
		num(finals(v)), num(v.Total), pct, eta, num(int(v.RatePerMinute+0.5)),
		words[0], num(v.Counts.Delivered), words[1], num(v.Counts.Bounced), words[2], num(v.Counts.Suppressed))
}

// progressLine is prefix and the progress in at most width columns: in
// words if they fit, else abbreviated, else cut.
func progressLine(prefix string, v api.DeliveryView, now time.Time, width int) string {
	s := prefix + progressText(v, now, false)
	if len(s) > width {
		s = prefix + progressText(v, now, true)
	}
	return clip(s, width)
}

// progressBar is the progress behind a bar, padded to width-1 so that a
// redraw covers the previous line and the cursor never wraps.
func progressBar(v api.DeliveryView, now time.Time, width int) string {
	room := width - 1
	text := progressText(v, now, true)
	bar := room - len(text) - 3 // "[" bar "] "
	if bar < 10 {
		text = progressLine("", v, now, room)
		return text + strings.Repeat(" ", max(0, room-utf8.RuneCountInString(text)))
	}
	bar = min(bar, 20) // a fixed width while the numbers grow
	fill := bar
	if v.Total > 0 {
		fill = min(bar, finals(v)*bar/v.Total)
	}
	s := "[" + strings.Repeat("=", fill) + strings.Repeat(" ", bar-fill) + "] " + text
	return s + strings.Repeat(" ", max(0, room-len(s)))
}
