package api

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/reports"
)

var updateOpenAPI = flag.Bool("update-openapi", false, "rewrite openapi.json's schemas of Go types from the types")

type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]any `json:"schemas"`
	} `json:"components"`
}

type openAPIParam struct {
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
	Ref      string `json:"$ref"`
}

func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal([]byte(openAPISpec), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Fatalf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPIRoutes: the description and Routes() list the same (method,
// path) pairs, and every path parameter is declared.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	var raw map[string]any
	json.Unmarshal([]byte(openAPISpec), &raw)
	methods := []string{"get", "put", "post", "delete", "patch", "head", "options"}
	documented := map[string]bool{}
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	for path, item := range doc.Paths {
		var shared []openAPIParam
		if p, ok := item["parameters"]; ok {
			json.Unmarshal(p, &shared)
		}
		for m, op := range item {
			if !slices.Contains(methods, m) {
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = true
			var o struct {
				Parameters []openAPIParam             `json:"parameters"`
				Responses  map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(op, &o); err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			declared := map[string]bool{}
			for _, p := range append(slices.Clone(shared), o.Parameters...) {
				if p.Ref != "" {
					p = resolveParam(t, raw, p.Ref)
				}
				if p.In == "path" {
					if !p.Required {
						t.Errorf("%s %s: path parameter %s not required", m, path, p.Name)
					}
					declared[p.Name] = true
				}
			}
			inPath := map[string]bool{}
			for _, w := range wildcard.FindAllStringSubmatch(path, -1) {
				inPath[w[1]] = true
				if !declared[w[1]] {
					t.Errorf("%s %s: path parameter {%s} not declared", m, path, w[1])
				}
			}
			for p := range declared {
				if !inPath[p] {
					t.Errorf("%s %s: declares path parameter %s that the path lacks", m, path, p)
				}
			}
			if len(o.Responses) == 0 {
				t.Errorf("%s %s: no responses", m, path)
			}
			if path != "/api/v1/openapi.json" && o.Responses["401"] == nil {
				t.Errorf("%s %s: 401 not described", m, path)
			}
		}
	}
	routes := map[string]bool{}
	for _, r := range Routes() {
		routes[r.Method+" "+r.Path] = true
		if !documented[r.Method+" "+r.Path] {
			t.Errorf("route %s %s is not in openapi.json", r.Method, r.Path)
		}
	}
	for k := range documented {
		if !routes[k] {
			t.Errorf("openapi.json describes %s, which Routes() lacks", k)
		}
	}
	// Every $ref points at something.
	refs := regexp.MustCompile(`"\$ref":\s*"#/([^"]+)"`).FindAllStringSubmatch(openAPISpec, -1)
	for _, r := range refs {
		var cur any = raw
		for _, part := range strings.Split(r[1], "/") {
			m, _ := cur.(map[string]any)
			cur = m[part]
		}
		if cur == nil {
			t.Errorf("$ref #/%s resolves to nothing", r[1])
		}
	}
}

func resolveParam(t *testing.T, raw map[string]any, ref string) openAPIParam {
	name := strings.TrimPrefix(ref, "#/components/parameters/")
	comp, _ := raw["components"].(map[string]any)
	params, _ := comp["parameters"].(map[string]any)
	b, _ := json.Marshal(params[name])
	var p openAPIParam
	if err := json.Unmarshal(b, &p); err != nil || p.Name == "" {
		t.Fatalf("parameter %s: not found", ref)
	}
	return p
}

// schemaTypes are the bodies whose schemas are derived from the Go types:
// the test fails when a type changes and the description does not.
var schemaTypes = map[string]any{
	"Error":            Error{},
	"Totals":           queue.Totals{},
	"SiteView":         queue.SiteView{},
	"Explanation":      queue.Explanation{},
	"ActionRequest":    actionRequest{},
	"FlowChange":       FlowChange{},
	"DKIMDomain":       dkim.DomainStatus{},
	"Minute":           Minute{},
	"MessageRequest":   MessageRequest{},
	"DeliveryRequest":  DeliveryRequest{},
	"DeliveryView":     DeliveryView{},
	"AddResult":        AddResult{},
	"Entry":            quarantine.Entry{},
	"QuarantineList":   QuarantineList{},
	"QuarantineUpdate": QuarantineUpdate{},
	"ReleaseRequest":   ReleaseRequest{},
	"BounceReply":      BounceReply{},
	"ReportStats":      reports.Stats{},
	"AdviceReport":     advisor.Report{},
	"TLSStatus":        TLSStatusView{},
	"WarmupList":       WarmupList{},
}

// schemaGen derives OpenAPI 3.0 schemas from Go types as encoding/json
// writes them; named structs become components.
type schemaGen struct {
	defs  map[string]any
	names map[string]reflect.Type
}

func (g *schemaGen) schema(t *testing.T, rt reflect.Type, name string) any {
	switch {
	case rt == reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case rt == reflect.TypeFor[json.RawMessage]():
		return map[string]any{}
	case rt.Kind() == reflect.Slice && rt.Elem().Kind() == reflect.Uint8:
		return map[string]any{"type": "string", "format": "byte"}
	}
	switch rt.Kind() {
	case reflect.Pointer:
		return g.schema(t, rt.Elem(), "")
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t, rt.Elem(), "")}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t, rt.Elem(), "")}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if name == "" {
			name = rt.Name()
		}
		if prev, ok := g.names[name]; ok {
			if prev != rt {
				t.Fatalf("schema name %s: both %v and %v", name, prev, rt)
			}
			return map[string]any{"$ref": "#/components/schemas/" + name}
		}
		g.names[name] = rt
		props := map[string]any{}
		g.fields(t, rt, props)
		g.defs[name] = map[string]any{"type": "object", "properties": props}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	t.Fatalf("no schema for %v", rt)
	return nil
}

func (g *schemaGen) fields(t *testing.T, rt reflect.Type, props map[string]any) {
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			g.fields(t, f.Type, props)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(t, f.Type, "")
	}
}

func stripDescriptions(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			if k != "description" && k != "example" {
				out[k] = stripDescriptions(x)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = stripDescriptions(x)
		}
		return out
	}
	return v
}

// keepDescriptions copies the descriptions of old into gen where the
// same property still exists.
func keepDescriptions(gen, old any) any {
	g, ok1 := gen.(map[string]any)
	o, ok2 := old.(map[string]any)
	if !ok1 || !ok2 {
		return gen
	}
	for _, k := range []string{"description", "example"} {
		if d, ok := o[k]; ok {
			g[k] = d
		}
	}
	for k, v := range g {
		if ov, ok := o[k]; ok {
			g[k] = keepDescriptions(v, ov)
		}
	}
	return g
}

// TestOpenAPISchemas: the schemas of Go-typed bodies match the types
// (descriptions aside). -update-openapi rewrites them, keeping the
// descriptions of the properties that remain.
func TestOpenAPISchemas(t *testing.T) {
	g := &schemaGen{defs: map[string]any{}, names: map[string]reflect.Type{}}
	names := make([]string, 0, len(schemaTypes))
	for n := range schemaTypes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		g.schema(t, reflect.TypeOf(schemaTypes[n]), n)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(openAPISpec), &raw); err != nil {
		t.Fatal(err)
	}
	comp := raw["components"].(map[string]any)
	schemas := comp["schemas"].(map[string]any)
	if *updateOpenAPI {
		for n, s := range g.defs {
			schemas[n] = keepDescriptions(s, schemas[n])
		}
		// The top-level keys in reading order; below them, sorted.
		var b bytes.Buffer
		b.WriteString("{")
		for i, k := range []string{"openapi", "info", "servers", "security", "paths", "components"} {
			v, err := json.MarshalIndent(raw[k], "  ", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "\n  %q: %s", k, v)
			delete(raw, k)
		}
		if len(raw) > 0 {
			t.Fatalf("openapi.json: top-level keys not written: %v", raw)
		}
		b.WriteString("\n}\n")
		if err := os.WriteFile("openapi.json", b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("openapi.json rewritten: rebuild to embed it")
		return
	}
	for n, s := range g.defs {
		want, _ := json.Marshal(s)
		got, _ := json.Marshal(stripDescriptions(schemas[n]))
		if !bytes.Equal(want, got) {
			t.Errorf("schema %s differs from its Go type %v:\n got %s\nwant %s\n(go test ./api -run TestOpenAPISchemas -update-openapi rewrites it)",
				n, g.names[n], got, want)
		}
	}
}
