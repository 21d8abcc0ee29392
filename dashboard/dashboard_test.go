package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var assetRef = regexp.MustCompile(`(?:href|src)="(static/[^"?]+)\?v=([0-9a-f]{16})"`)

// The page names each asset by content hash; the hashed URL is cached for
// good, the page and unhashed URLs are revalidated, and types are right.
func TestPageAndAssets(t *testing.T) {
	h := Handler()
	r := get(t, h, "GET", "/", nil)
	page := body(t, r)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r.Header.Get("Cache-Control") != "no-cache" || r.Header.Get("ETag") == "" {
		t.Errorf("GET /: Cache-Control %q ETag %q", r.Header.Get("Cache-Control"), r.Header.Get("ETag"))
	}
	if !strings.Contains(r.Header.Get("Content-Security-Policy"), "default-src 'none'") || r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /: security headers missing: %v", r.Header)
	}
	refs := assetRef.FindAllStringSubmatch(page, -1)
	want := map[string]string{"static/app.js": "text/javascript; charset=utf-8", "static/app.css": "text/css; charset=utf-8", "static/favicon.svg": "image/svg+xml"}
	seen := map[string]bool{}
	for _, m := range refs {
		ct, ok := want[m[1]]
		if !ok {
			t.Errorf("page refers to unexpected asset %s", m[1])
			continue
		}
		seen[m[1]] = true
		r := get(t, h, "GET", "/"+m[1]+"?v="+m[2], nil)
		b := body(t, r)
		if r.StatusCode != 200 || r.Header.Get("Content-Type") != ct || len(b) == 0 {
			t.Errorf("GET %s: %d %q, %d bytes", m[1], r.StatusCode, r.Header.Get("Content-Type"), len(b))
		}
		if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s with its hash: Cache-Control %q", m[1], cc)
		}
		// Without the hash (or with an old one) the browser must revalidate.
		r = get(t, h, "GET", "/"+m[1]+"?v=0000000000000000", nil)
		if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s with a stale hash: Cache-Control %q", m[1], cc)
		}
		// Revalidation answers 304.
		r = get(t, h, "GET", "/"+m[1], map[string]string{"If-None-Match": r.Header.Get("ETag")})
		if r.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", m[1], r.StatusCode)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("page does not refer to %s with a hash", name)
		}
	}
	if r := get(t, h, "HEAD", "/", nil); r.StatusCode != 200 || body(t, r) != "" {
		t.Errorf("HEAD /: %d", r.StatusCode)
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/nope", "/static/", "/static/nope.js", "/static/../dashboard.go", "/index.htm"} {
		if r := get(t, h, "GET", p, nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
	r := get(t, h, "POST", "/", nil)
	if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
}

// Nothing is fetched from the internet: no asset names a remote URL (the
// SVG namespace is a name, not a fetch).
func TestNoRemoteURLs(t *testing.T) {
	remote := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range remote.FindAllString(string(b), -1) {
			if m != "http://www.w3.org" {
				t.Errorf("%s refers to %s", p, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAdvisorPanel: the overview has the advisor's panel, and the script
// fills it (and the site page's) from the advise route; the browser test
// in package mta checks what it shows against the route after a real run.
func TestAdvisorPanel(t *testing.T) {
	h := Handler()
	page := body(t, get(t, h, "GET", "/", nil))
	if !strings.Contains(page, `id="advice"`) || !strings.Contains(page, `id="advice-body"`) {
		t.Error("the overview has no advisor panel")
	}
	js, err := static.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"api('advise?since=' + ADVICE_SINCE)", "'advice-row'", "'site-advice'", "'advice-diff'", "'advice-evidence'"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
}
