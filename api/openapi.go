package api

import (
	_ "embed"
	"io"
	"net/http"
)

// openAPISpec describes every route of Routes() (OpenAPI 3.0). A test
// checks the two against each other, both ways, so they cannot drift.
//
//go:embed openapi.json
var openAPISpec string

// openAPI serves the description. It sits behind the token like the rest:
// it says nothing secret, but one rule for all of /api is simpler to
// reason about.
func (h *handler) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, openAPISpec)
}
