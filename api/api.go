// Package api is Penstock's HTTP API under /api/v1: JSON in and out,
// bearer-token authentication, errors as {"error": ..., "field": ...} with
// the right 4xx code. It translates requests into calls on the parts it
// is given (Deps: the queue, the campaigns, the quarantine, the node...)
// and never touches sockets or the spool itself. Activity keeps the aggregates only the API serves (the
// dashboard's per-minute timeline and each site's flow-control history),
// fed by a subscription to the delivery log.
package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/queue"
)

// Deps are the parts the API drives, each as it is: package mta passes
// its queue, campaign store, quarantine and itself, tests pass fakes.
// Queue, Deliveries, Quarantine and Node are required. A nil optional part
// makes its routes answer empty, or 404 where the feature is off.
type Deps struct {
	Queue      Queue      // the scheduler's views and operator actions (*queue.Queue)
	Deliveries Deliveries // campaigns (*campaigns.Store)
	Quarantine Quarantine // (*quarantine.Store)
	Node       Node       // what only the assembled node does
	Activity   *Activity  // the timeline and flow-control histories; nil: none
	Bounces    Bounces    // the most frequent failure replies (*bounce.Top)
	DKIM       DKIMStatus // signing status by From domain (*dkim.Stage)
	Reports    Reports    // the bounce listener's tally
	TLS        TLSStatus  // transport security per domain and MX host (*tlsstatus.Board)
	TLSReports TLSReports // the TLS reports held (TLSReportsOf)
	Warmup     Warmups    // (*warmup.Tracker)
	EventsOut  EventOutputs
	Now        func() time.Time // nil: time.Now
}

// Queue is the scheduler as the API uses it; package queue's Queue is one
// as it is.
type Queue interface {
	Sites() []queue.SiteView
	Site(name string) (queue.SiteView, bool)
	Explain(ctx context.Context, target string) queue.Explanation
	Totals() queue.Totals
	Suspend(site string, d time.Duration, who string) error
	Resume(site, who string) error
	Retry(site, who string) (int, error)
	Purge(site, who string) (int, error)
	// SetSuspended suspends (on) or resumes a tenant or a campaign as a
	// whole (kind queue.SuspendTenant or queue.SuspendDelivery); resuming
	// returns the recipients made due.
	SetSuspended(kind, name, who string, on bool) (int, error)
}

// Node is what only the assembled node does.
type Node interface {
	// ReloadFile re-reads the configuration file; it returns the keys
	// that changed but wait for a restart.
	ReloadFile() (restartNeeded []string, err error)
	LocalProblem() (bool, string)
	InjectMessage(ctx context.Context, req MessageRequest) (string, error)
	// Advise runs the advisor (package advisor) on the delivery log of the
	// last since, for one rule or ("") all.
	Advise(ctx context.Context, rule string, since time.Duration) (*advisor.Report, error)
}

// Bounces lists the most frequent normalised failure replies, of one site
// or of all (""); package bounce's Top is one as it is.
type Bounces interface {
	List(site string, n int) []bounce.TopEntry
}

// DKIMStatus is the signing status by From domain seen in the last day;
// package dkim's Stage is one as it is.
type DKIMStatus interface {
	Domains() []dkim.DomainStatus
}

// EventOutputs is the event outputs' state (webhooks, streams,
// PostgreSQL); package eventsout's Manager is one as it is.
type EventOutputs interface {
	Status() []eventsout.Status
}

// Minute counts delivery-log events in one minute (for the throughput plot).
type Minute struct {
	Minute     int64 `json:"minute"` // unix time of the minute's start
	Received   int   `json:"received"`
	Delivered  int   `json:"delivered"`
	Deferred   int   `json:"deferred"`
	Bounced    int   `json:"bounced"`
	Expired    int   `json:"expired"`
	Suppressed int   `json:"suppressed"`
}

// FlowChange is one flow-control state change of a site.
type FlowChange struct {
	Time   time.Time `json:"time"`
	State  string    `json:"state"`
	Change string    `json:"change"`
	Reason string    `json:"reason"`
}

// Error is the JSON error body.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// maxBody bounds request bodies other than injection.
const maxBody = 1 << 20

// Handler returns the API's http.Handler. An empty token disables
// authentication (the caller then listens on loopback only).
func Handler(d Deps, token string, maxMessage int64) http.Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	h := &handler{d: d, token: token, maxMessage: maxMessage}
	mux := http.NewServeMux()
	for _, rt := range h.routes() {
		mux.HandleFunc(rt.Method+" "+rt.Path, rt.handle)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path, "")
	})
	return h.auth(mux)
}

// Route is one API route: the method and path pattern as net/http's
// ServeMux reads them (the OpenAPI description is checked against these).
type Route struct {
	Method, Path string
	handle       http.HandlerFunc
}

// Routes lists the API's routes.
func Routes() []Route { return (&handler{}).routes() }

func (h *handler) routes() []Route {
	rs := []Route{
		{"GET", "/api/v1/status", h.status},
		{"GET", "/api/v1/queues", h.queues},
		{"GET", "/api/v1/queues/{site}", h.queue},
		{"GET", "/api/v1/explain", h.explain},
		{"POST", "/api/v1/sites/{site}/{action}", h.siteAction},
		{"GET", "/api/v1/sites/{site}/flow", h.siteFlow},
		{"GET", "/api/v1/timeline", h.timeline},
		{"POST", "/api/v1/reload", h.reload},
		{"POST", "/api/v1/messages", h.messages},
		{"POST", "/api/v1/deliveries", h.createDelivery},
		{"GET", "/api/v1/deliveries", h.listDeliveries},
		{"GET", "/api/v1/deliveries/{id}", h.getDelivery},
		{"POST", "/api/v1/deliveries/{id}/recipients", h.addRecipients},
		{"POST", "/api/v1/deliveries/{id}/cancel", h.cancelDelivery},
		{"POST", "/api/v1/deliveries/{id}/suspend", h.suspension(queue.SuspendDelivery, "id", true)},
		{"POST", "/api/v1/deliveries/{id}/resume", h.suspension(queue.SuspendDelivery, "id", false)},
		{"POST", "/api/v1/tenants/{name}/suspend", h.suspension(queue.SuspendTenant, "name", true)},
		{"POST", "/api/v1/tenants/{name}/resume", h.suspension(queue.SuspendTenant, "name", false)},
	}
	return append(rs, h.moreRoutes()...)
}

type handler struct {
	d          Deps
	token      string
	maxMessage int64
}

func (h *handler) auth(next http.Handler) http.Handler {
	if h.token == "" {
		return next
	}
	guarded := BearerAuth(h.token, "[http] token", next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			guarded.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// BearerAuth serves next only to requests that carry "Authorization:
// Bearer token" (RFC 6750 §2.1), compared in constant time; others get a
// 401 whose message names setting, where the token is configured.
func BearerAuth(token, setting string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="penstock"`)
			writeErr(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <"+setting+">)", "Authorization")
			return
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			writeErr(w, http.StatusUnauthorized, "wrong bearer token", "Authorization")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg, field string) {
	writeJSON(w, code, Error{Error: msg, Field: field})
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	local, detail := h.d.Node.LocalProblem()
	res := map[string]any{"totals": h.d.Queue.Totals(), "local_problem": local, "local_problem_detail": detail}
	if h.d.EventsOut != nil {
		if st := h.d.EventsOut.Status(); len(st) > 0 {
			res["event_outputs"] = st
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) queues(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"sites": h.d.Queue.Sites()})
}

func (h *handler) queue(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("site")
	v, ok := h.d.Queue.Site(name)
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown site or domain: "+name, "site")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("address")
	field := "address"
	if target == "" {
		target, field = q.Get("domain"), "domain"
	}
	if target == "" {
		writeErr(w, http.StatusBadRequest, "give ?address= or ?domain=", "address")
		return
	}
	if len(target) > 320 || strings.ContainsAny(target, " \r\n\t") {
		writeErr(w, http.StatusBadRequest, "not an address or domain: "+target, field)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	writeJSON(w, http.StatusOK, h.d.Queue.Explain(ctx, target))
}

func (h *handler) timeline(w http.ResponseWriter, r *http.Request) {
	n := 60
	if v := r.URL.Query().Get("minutes"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			writeErr(w, http.StatusBadRequest, "minutes must be 1 to 60", "minutes")
			return
		}
	}
	minutes := make([]Minute, n)
	if h.d.Activity != nil {
		minutes = h.d.Activity.Timeline(h.d.Now(), n)
	}
	writeJSON(w, http.StatusOK, map[string]any{"minutes": minutes})
}

func (h *handler) siteFlow(w http.ResponseWriter, r *http.Request) {
	v, ok := h.d.Queue.Site(r.PathValue("site"))
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown site or domain: "+r.PathValue("site"), "site")
		return
	}
	site, changes := v.Site, []FlowChange(nil)
	if h.d.Activity != nil {
		changes = h.d.Activity.FlowChanges(site)
	}
	if changes == nil {
		changes = []FlowChange{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": site, "changes": changes})
}

type actionRequest struct {
	For string `json:"for"` // suspend: duration, "" = until resumed
	By  string `json:"by"`
}

func (h *handler) siteAction(w http.ResponseWriter, r *http.Request) {
	site, action := r.PathValue("site"), r.PathValue("action")
	var req actionRequest
	if r.ContentLength != 0 {
		if !decode(w, r, &req, maxBody) {
			return
		}
	}
	who := req.By
	if who == "" {
		who = "api"
	}
	var err error
	res := map[string]any{"site": site, "action": action}
	switch action {
	case "suspend":
		var d time.Duration
		if req.For != "" {
			d, err = time.ParseDuration(req.For)
			if err != nil || d < 0 {
				writeErr(w, http.StatusBadRequest, "bad duration "+req.For+" (e.g. 30m, 2h)", "for")
				return
			}
		}
		err = h.d.Queue.Suspend(site, d, who)
	case "resume":
		err = h.d.Queue.Resume(site, who)
	case "retry":
		var n int
		n, err = h.d.Queue.Retry(site, who)
		res["recipients"] = n
	case "purge":
		var n int
		n, err = h.d.Queue.Purge(site, who)
		res["recipients"] = n
	default:
		writeErr(w, http.StatusNotFound, "unknown action "+action+" (suspend, resume, retry, purge)", "action")
		return
	}
	if err != nil {
		if queue.ErrUnknownSite(err) {
			writeErr(w, http.StatusNotFound, err.Error(), "site")
			return
		}
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) reload(w http.ResponseWriter, r *http.Request) {
	keys, err := h.d.Node.ReloadFile()
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "reload refused, the running configuration stays: "+err.Error(), "config")
		return
	}
	writeJSON(w, http.StatusOK, ReloadResult{Result: "reloaded", RestartNeeded: keys})
}

// ReloadResult answers POST /api/v1/reload.
type ReloadResult struct {
	Result string `json:"result"`
	// RestartNeeded names keys that differ from the running node's but
	// only take effect at the next start ("dns.nameservers").
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors, and the size is bounded.
func decode(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	// A body declared larger than the limit is refused before a byte of
	// it is read; MaxBytesReader bounds a body of unknown length.
	if r.ContentLength > limit {
		writeErr(w, http.StatusRequestEntityTooLarge, "request body too large", "")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			writeErr(w, http.StatusRequestEntityTooLarge, "request body too large", "")
		case errors.As(err, &ute):
			writeErr(w, http.StatusBadRequest, "wrong type for "+ute.Field+": "+err.Error(), ute.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			writeErr(w, http.StatusBadRequest, "unknown field "+f, f)
		default:
			writeErr(w, http.StatusBadRequest, "bad JSON: "+err.Error(), "")
		}
		return false
	}
	if dec.More() {
		writeErr(w, http.StatusBadRequest, "bad JSON: trailing data after the object", "")
		return false
	}
	return true
}
