package api

import (
	"encoding/csv"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/quarantine"
)

// Quarantine and bounce-statistics routes. Filters are checked here, field
// by field, so that a typo in a date or a regexp is a 400 naming the field
// rather than an error from deep inside the store.

const (
	defaultListLimit = 100
	maxListLimit     = 1000
	defaultTopN      = 20
	maxTopN          = 1000
	// maxImportBody bounds an import list: about two million addresses.
	// The store validates the whole list before writing, so it is held in
	// memory once.
	maxImportBody = 64 << 20
	maxFilterText = 1024 // reason, match, domain
)

// QuarantineList is the answer of GET /api/v1/quarantine.
type QuarantineList struct {
	Entries []quarantine.Entry        `json:"entries"`
	Next    string                    `json:"next"` // pass as ?after= for the next page; "" on the last
	Counts  map[quarantine.Status]int `json:"counts"`
}

// QuarantineUpdate is the body of PUT /api/v1/quarantine/{address}.
type QuarantineUpdate struct {
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
}

// ReleaseRequest is the body of POST /api/v1/quarantine/release: a filter
// over quarantined entries (dates RFC 3339) and the note to keep on them.
type ReleaseRequest struct {
	Status string `json:"status,omitempty"` // "" or quarantined
	Reason string `json:"reason,omitempty"`
	Match  string `json:"match,omitempty"`
	Domain string `json:"domain,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Note   string `json:"note,omitempty"`
}

// BounceReply is one line of GET /api/v1/bounces: a normalised failure
// reply, how often it was seen and how the bounce rules qualified it.
type BounceReply struct {
	Site     string    `json:"site"`
	Code     int       `json:"code"`
	Enhanced string    `json:"enhanced,omitempty"`
	Text     string    `json:"text"`
	Reason   string    `json:"reason"`
	Class    string    `json:"class"`
	Count    uint64    `json:"count"`
	Last     time.Time `json:"last"`
}

func (h *handler) quarantineRoutes() []Route {
	return []Route{
		{"GET", "/api/v1/quarantine", h.quarantineList},
		{"POST", "/api/v1/quarantine/import", h.quarantineImport},
		{"POST", "/api/v1/quarantine/release", h.quarantineRelease},
		{"GET", "/api/v1/quarantine/{address}", h.quarantineGet},
		{"PUT", "/api/v1/quarantine/{address}", h.quarantinePut},
		{"DELETE", "/api/v1/quarantine/{address}", h.quarantineDelete},
		{"GET", "/api/v1/bounces", h.bounces},
	}
}

// badField is a 400 about one field.
type badField struct{ field, msg string }

func (e *badField) Error() string { return e.msg }

// parseFilter reads a filter from named values (query or body), checking
// each: the status exists, the regexp compiles (RE2), dates are RFC 3339
// and from is before to.
func parseFilter(get func(string) string) (quarantine.Filter, error) {
	var f quarantine.Filter
	if s := get("status"); s != "" {
		st, err := quarantine.ParseStatus(s)
		if err != nil {
			return f, &badField{"status", err.Error()}
		}
		f.Status = st
	}
	for _, k := range []string{"reason", "match", "domain"} {
		if len(get(k)) > maxFilterText {
			return f, &badField{k, fmt.Sprintf("%s: longer than %d bytes", k, maxFilterText)}
		}
	}
	f.Reason = get("reason")
	if f.Match = get("match"); f.Match != "" {
		if _, err := regexp.Compile(f.Match); err != nil {
			return f, &badField{"match", "match: not a regular expression (RE2): " + err.Error()}
		}
	}
	if f.Domain = strings.TrimSpace(get("domain")); strings.ContainsAny(f.Domain, " \t\r\n@/") {
		return f, &badField{"domain", "domain: not a domain: " + f.Domain}
	}
	for _, d := range []struct {
		name string
		t    *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		v := get(d.name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, &badField{d.name, fmt.Sprintf("%s: %q is not an RFC 3339 date (e.g. 2024-05-01T14:00:00Z)", d.name, v)}
		}
		*d.t = t
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, &badField{"to", "to: must be after from"}
	}
	return f, nil
}

// intParam reads an optional integer query parameter in [1, hi].
func intParam(q url.Values, name string, def, hi int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > hi {
		return 0, &badField{name, fmt.Sprintf("%s must be 1 to %d", name, hi)}
	}
	return n, nil
}

func writeFieldErr(w http.ResponseWriter, err error) bool {
	var bf *badField
	if errors.As(err, &bf) {
		writeErr(w, http.StatusBadRequest, bf.msg, bf.field)
		return true
	}
	return false
}

// writeQuarantineErr maps a store error: a bad address is the caller's
// (400), an unknown one 404, anything else the store's (503: try again).
func writeQuarantineErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, quarantine.ErrBadAddress):
		writeErr(w, http.StatusBadRequest, err.Error(), "address")
	case errors.Is(err, quarantine.ErrNotFound):
		writeErr(w, http.StatusNotFound, err.Error(), "address")
	default:
		writeErr(w, http.StatusServiceUnavailable, "quarantine not changed, try again: "+err.Error(), "")
	}
}

func (h *handler) quarantineList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q.Get)
	if writeFieldErr(w, err) {
		return
	}
	limit, err := intParam(q, "limit", defaultListLimit, maxListLimit)
	if writeFieldErr(w, err) {
		return
	}
	// One more than asked says whether there is a next page.
	entries, err := h.d.Quarantine.List(f, limit+1, q.Get("after"))
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, "quarantine unreadable, try again: "+err.Error(), "")
		return
	}
	res := QuarantineList{Entries: entries, Counts: h.d.Quarantine.Counts()}
	if len(entries) > limit {
		res.Entries = entries[:limit]
		res.Next = entries[limit-1].Address
	}
	if res.Entries == nil {
		res.Entries = []quarantine.Entry{}
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) quarantineGet(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	e, ok := h.d.Quarantine.Get(addr)
	if !ok {
		writeErr(w, http.StatusNotFound, "not in the quarantine: "+addr, "address")
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (h *handler) quarantinePut(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	var req QuarantineUpdate
	if !decode(w, r, &req, maxBody) {
		return
	}
	st, err := operatorStatus(req.Status)
	if writeFieldErr(w, err) {
		return
	}
	if err := h.d.Quarantine.Add(addr, st, req.Note); err != nil {
		writeQuarantineErr(w, err)
		return
	}
	e, ok := h.d.Quarantine.Get(addr)
	if !ok {
		// Removed by someone else between the two calls.
		writeErr(w, http.StatusConflict, "entry removed while being set, try again: "+addr, "address")
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// operatorStatus checks a status an operator may set: with_errors only
// ever comes from failures.
func operatorStatus(s string) (quarantine.Status, error) {
	if s == "" {
		return "", &badField{"status", "status is required: quarantined, denylisted, allowlisted or valid"}
	}
	st, err := quarantine.ParseStatus(s)
	if err != nil || st == quarantine.WithErrors {
		return "", &badField{"status", fmt.Sprintf("status %q: want quarantined, denylisted, allowlisted or valid (with_errors only comes from failures)", s)}
	}
	return st, nil
}

func (h *handler) quarantineDelete(w http.ResponseWriter, r *http.Request) {
	if err := h.d.Quarantine.Remove(r.PathValue("address")); err != nil {
		writeQuarantineErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) quarantineImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s := q.Get("status")
	if s == "" {
		s = string(quarantine.Denylisted)
	}
	st, err := operatorStatus(s)
	if writeFieldErr(w, err) {
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "text/plain" && mt != "text/csv" {
			writeErr(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: send text/plain (one address a line) or text/csv (the address first)", ct), "Content-Type")
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxImportBody)
	n, err := h.d.Quarantine.Import(r.Body, st, q.Get("note"))
	if err != nil {
		var mbe *http.MaxBytesError
		var pe *csv.ParseError
		switch {
		case errors.As(err, &mbe):
			writeErr(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("list larger than %d bytes: split it", maxImportBody), "body")
		case errors.As(err, &pe), strings.Contains(err.Error(), "nothing imported"):
			// The store validates every line before writing: nothing
			// changed, and the message names the bad lines.
			writeErr(w, http.StatusBadRequest, err.Error(), "body")
		default:
			// A write failed part way; importing again is safe.
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "import stopped, import again: " + err.Error(), "imported": n})
		}
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"imported": n})
}

func (h *handler) quarantineRelease(w http.ResponseWriter, r *http.Request) {
	var req ReleaseRequest
	if !decode(w, r, &req, maxBody) {
		return
	}
	body := map[string]string{"status": req.Status, "reason": req.Reason, "match": req.Match,
		"domain": req.Domain, "from": req.From, "to": req.To}
	f, err := parseFilter(func(k string) string { return body[k] })
	if writeFieldErr(w, err) {
		return
	}
	if f.Status != "" && f.Status != quarantine.Quarantined {
		writeErr(w, http.StatusBadRequest, "status: only quarantined entries are released (denylisted ones are complaints or the operator's: remove them one by one)", "status")
		return
	}
	if f.Reason == "" && f.Match == "" && f.Domain == "" && f.From.IsZero() && f.To.IsZero() {
		// Guard against a release of everything by an empty filter.
		writeErr(w, http.StatusBadRequest, "give at least one of reason, match, domain, from, to (to release every quarantined address, give an early from)", "match")
		return
	}
	n, err := h.d.Quarantine.Release(f, req.Note)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "release stopped, release again: " + err.Error(), "released": n})
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"released": n})
}

func (h *handler) bounces(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := intParam(q, "n", defaultTopN, maxTopN)
	if writeFieldErr(w, err) {
		return
	}
	site := q.Get("site")
	var top []bounce.TopEntry
	if site != "" {
		// A domain names its site; a site with bounces but no queue (it
		// went idle) is still asked for by its own name.
		if v, ok := h.d.Queue.Site(site); ok {
			site = v.Site
			top = h.topReplies(site, n)
		} else if top = h.topReplies(site, n); len(top) == 0 {
			writeErr(w, http.StatusNotFound, "unknown site or domain: "+site, "site")
			return
		}
	} else {
		top = h.topReplies("", n)
	}
	out := make([]BounceReply, len(top))
	for i, t := range top {
		out[i] = BounceReply{Site: t.Site, Code: t.Code, Enhanced: t.Enhanced, Text: t.Text,
			Reason: string(t.Reason), Class: string(t.Class), Count: t.Count, Last: t.Last}
	}
	res := map[string]any{"replies": out}
	if h.d.Reports != nil {
		res["reports"] = h.d.Reports.Reports()
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) topReplies(site string, n int) []bounce.TopEntry {
	if h.d.Bounces == nil {
		return nil
	}
	return h.d.Bounces.List(site, n)
}
