package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// liveOnReload tells what a reload applies to running parts: the
// scheduler's rules, sources, pools and delivery settings, flow control,
// and the keys read at each use. Everything else — listeners, the
// resolver, the stores, the classifier, cluster wiring, and any section
// added later until it is wired for reload — takes effect at the next
// start, and a reload says so key by key. Listing what is live (rather
// than what is not) keeps a new section honest by default.
func liveOnReload(key string) bool {
	switch key {
	case "mx_rule", "source", "pool", "delivery", "flow_control", "dkim", "dkim_default", "tlsrpt",
		"server.tls", "server.hostname", "server.use_shipped_rules":
		return true
	}
	return false
}

// RestartNeeded compares two configurations and names each key that
// differs but only takes effect at the next start ("dns.nameservers").
func RestartNeeded(running, next *Config) []string {
	var keys []string
	rv, nv := reflect.ValueOf(running).Elem(), reflect.ValueOf(next).Elem()
	t := rv.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := reloadKey(f)
		if name == "" || liveOnReload(name) {
			continue
		}
		a, b := rv.Field(i), nv.Field(i)
		if a.Kind() != reflect.Struct {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				keys = append(keys, name)
			}
			continue
		}
		for j := 0; j < a.NumField(); j++ {
			sub := reloadKey(a.Type().Field(j))
			if sub == "" || liveOnReload(name+"."+sub) {
				continue
			}
			if !reflect.DeepEqual(a.Field(j).Interface(), b.Field(j).Interface()) {
				keys = append(keys, name+"."+sub)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func reloadKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("toml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}

// RestartMessage is the sentence a reload logs and answers for keys that
// wait for the next start.
func RestartMessage(keys []string) string {
	if len(keys) == 0 {
		return ""
	}
	return fmt.Sprintf("changed but applied only at the next start (restart penstock serve): %s", strings.Join(keys, ", "))
}
