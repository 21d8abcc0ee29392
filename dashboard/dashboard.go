// Package dashboard serves Penstock's web dashboard: one page of plain
// HTML, CSS and JavaScript embedded in the binary, so nothing is fetched
// from the internet. The page reads the same JSON API as the CLI
// (/api/v1/status, /timeline, /queues, /queues/{site}, /sites/{site}/flow,
// /deliveries, /dkim, /tls) and redraws every two seconds: totals, a
// throughput plot of the last hour, queued recipients by status, the sites
// table, deliveries with progress bars, DKIM signing, transport security
// (the policy in force per domain, the last TLS outcome per MX host), and
// a site detail view with its flow-control timeline. It owns no state of the MTA and never calls into it; it only
// serves files.
//
// Caching: the page itself is revalidated on every load (Cache-Control:
// no-cache, with an ETag), and it names its assets with a content hash
// (/static/app.js?v=<hash>), so assets asked for with the current hash are
// cached for a year and an upgraded binary is picked up at once.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	hash        string // first 16 hex digits of the SHA-256 of body
}

// contentType is set explicitly rather than sniffed or taken from the
// system's MIME tables, which differ between machines.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".json":
		return "application/json"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// csp allows the page only its own origin: scripts, styles and API calls.
// Inline scripts and style attributes are refused; the script sets sizes
// through the CSSOM, which CSP permits.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type handler struct {
	index  asset
	assets map[string]asset // by name under static/, e.g. "app.js"
}

// Handler serves the dashboard: "/" (and "/index.html") is the page,
// "/static/<name>" its assets; anything else is 404. Mount it at "/" next
// to the API.
func Handler() http.Handler {
	h := &handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "static/")] = newAsset(p, b)
		return nil
	})
	if err != nil {
		// The files are compiled in: failing to read them is a build defect.
		panic("dashboard: embedded assets: " + err.Error())
	}
	page, ok := h.assets["index.html"]
	if !ok {
		panic("dashboard: embedded assets: no index.html")
	}
	delete(h.assets, "index.html")
	// Point the page at its assets by content hash: "static/app.js" becomes
	// "static/app.js?v=<hash>". The names are relative so the dashboard
	// also works behind a proxy that mounts it under a prefix.
	var pairs []string
	for name, a := range h.assets {
		pairs = append(pairs, `"static/`+name+`"`, `"static/`+name+`?v=`+a.hash+`"`)
	}
	h.index = newAsset("index.html", []byte(strings.NewReplacer(pairs...).Replace(string(page.body))))
	return h
}

func newAsset(name string, b []byte) asset {
	sum := sha256.Sum256(b)
	return asset{body: b, contentType: contentType(name), hash: hex.EncodeToString(sum[:8])}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the dashboard only serves GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	switch p := r.URL.Path; {
	case p == "/" || p == "/index.html":
		hdr.Set("Content-Security-Policy", csp)
		hdr.Set("X-Frame-Options", "DENY")
		h.serve(w, r, h.index, "no-cache")
	case strings.HasPrefix(p, "/static/"):
		a, ok := h.assets[strings.TrimPrefix(p, "/static/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		cache := "no-cache"
		if r.URL.Query().Get("v") == a.hash {
			// The URL names the content: it never changes.
			cache = "public, max-age=31536000, immutable"
		}
		h.serve(w, r, a, cache)
	default:
		http.NotFound(w, r)
	}
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, a asset, cache string) {
	hdr := w.Header()
	hdr.Set("Content-Type", a.contentType)
	hdr.Set("Cache-Control", cache)
	hdr.Set("ETag", `"`+a.hash+`"`)
	// ServeContent answers If-None-Match with 304 and handles HEAD and
	// ranges; the zero modification time leaves Last-Modified out.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
