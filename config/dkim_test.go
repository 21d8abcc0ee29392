package config

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const dkimConfig = `[[source]]
name = "ip1"
ip = "192.0.2.10"

[[pool]]
name = "esp"
sources = [{ source = "ip1" }]
dkim_domain = "esp.example"

[[dkim]]
domain = "Example.COM"
selector = "2025a"
key_file = "/etc/penstock/dkim/2025a.pem"
retire_after = "2025-06-01"

[[dkim]]
domain = "example.com"
selector = "2025b"
key_file = "/etc/penstock/dkim/2025b.pem"
active_from = "2025-05-01T06:00:00Z"
sign_subdomains = true
expire = "7d"
canonicalization = "relaxed/simple"
headers = ["From", "To", "Subject"]
oversign = ["From"]

[[dkim]]
domain = "esp.example"
selector = "ed"
key_file = "/etc/penstock/dkim/esp-ed.pem"
oversign = []

[dkim_default]
domain = "esp.example"
keep_existing = false
`

func TestDKIMConfig(t *testing.T) {
	c := mustParse(t, "penstock.toml", dkimConfig)
	a, b, ed := c.DKIM[0], c.DKIM[1], c.DKIM[2]
	if a.Domain != "example.com" || a.Canonicalization != CanonRelaxed || !reflect.DeepEqual(a.Headers, DefaultDKIMHeaders()) ||
		!reflect.DeepEqual(a.Oversign, DefaultDKIMOversign()) || a.Expire != 0 || a.SignSubdomains {
		t.Errorf("defaults (domain lower-cased): %+v", a)
	}
	if b.Expire != Duration(7*24*time.Hour) || !b.SignSubdomains || b.Canonicalization != "relaxed/simple" ||
		!reflect.DeepEqual(b.Headers, []string{"From", "To", "Subject"}) || !reflect.DeepEqual(b.Oversign, []string{"From"}) {
		t.Errorf("set keys: %+v", b)
	}
	if ed.Oversign == nil || len(ed.Oversign) != 0 {
		t.Errorf("oversign = [] must mean none, got %v", ed.Oversign)
	}
	if c.DKIMDefault.Domain != "esp.example" || c.DKIMDefault.KeepExisting || c.Pools[0].DKIMDomain != "esp.example" {
		t.Errorf("dkim_default %+v, pool %+v", c.DKIMDefault, c.Pools[0])
	}
	if !Default().DKIMDefault.KeepExisting {
		t.Errorf("keep_existing must default to true")
	}
	from, err := ParseDKIMTime(b.ActiveFrom)
	if err != nil || !from.Equal(time.Date(2025, 5, 1, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("active_from: %v %v", from, err)
	}
	var buf bytes.Buffer
	if err := c.WriteEffective(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := Parse("effective.toml", buf.Bytes())
	if err != nil {
		t.Fatalf("effective: %v\n%s", err, buf.String())
	}
	if !reflect.DeepEqual(comparable(back), comparable(c)) {
		t.Errorf("round trip differs:\n%+v\n%+v", back.DKIM, c.DKIM)
	}
	e := c.DKIMError(1, "key_file", "cannot read %s", "x")
	if got := e.Error(); got != "penstock.toml:19: [[dkim]] example.com/2025b key_file: cannot read x" {
		t.Errorf("DKIMError: %q", got)
	}
}

func TestDKIMBad(t *testing.T) {
	const key = "[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey_file = \"k.pem\"\n"
	for _, tc := range []struct {
		name string
		doc  string
		line int
		want []string
	}{
		{"bad domain", "[[dkim]]\ndomain = \"example\"\nselector = \"s\"\nkey_file = \"k\"\n", 2, []string{"[[dkim]] example/s domain", "not a domain name"}},
		{"bad selector", "[[dkim]]\ndomain = \"example.com\"\nselector = \"s 1\"\nkey_file = \"k\"\n", 3, []string{"selector", `"s 1" is not a selector`}},
		{"missing key_file", "[[dkim]]\ndomain = \"example.com\"\nselector = \"s\"\n", 1, []string{"key_file", "missing"}},
		{"duplicate selector", key + key, 7, []string{"selector", "also [[dkim]] #1"}},
		{"no From", key + "headers = [\"To\", \"Subject\"]\n", 5, []string{"headers", `must include "From"`}},
		{"bad header name", key + "headers = [\"From\", \"Bad Name\"]\n", 5, []string{"headers #2", "not a header field name"}},
		{"signing DKIM-Signature", key + "headers = [\"From\", \"DKIM-Signature\"]\n", 5, []string{"headers #2", "changed in transit"}},
		{"oversign unsigned", key + "headers = [\"From\"]\noversign = [\"From\", \"Subject\"]\n", 6, []string{"oversign #2", `"Subject" is not in headers`}},
		{"canonicalization", key + "canonicalization = \"relaxed\"\n", 5, []string{"canonicalization", "not one of relaxed/relaxed"}},
		{"negative expire", key + "expire = \"-1h\"\n", 5, []string{"expire", "negative"}},
		{"short expire", key + "expire = \"10m\"\n", 5, []string{"expire", "shorter than an hour"}},
		{"expire number", key + "expire = 7\n", 5, []string{"expire", "want a duration"}},
		{"bad active_from", key + "active_from = \"March 1st\"\n", 5, []string{"active_from", "not a time"}},
		{"bad retire_after", key + "retire_after = \"2025-13-01\"\n", 5, []string{"retire_after", "not a time"}},
		{"retire before active", key + "active_from = \"2025-03-01\"\nretire_after = \"2025-02-01\"\n", 6, []string{"retire_after", "not after active_from"}},
		{"unknown key", key + "sign_subdomain = true\n", 5, []string{"unknown key", `did you mean "sign_subdomains"`}},
		{"default domain without key", key + "[dkim_default]\ndomain = \"esp.example\"\n", 6, []string{"[dkim_default] domain", `no [[dkim]] key has domain "esp.example"`}},
		{"pool domain without key", "[[source]]\nname = \"s\"\nip = \"192.0.2.1\"\n[[pool]]\nname = \"p\"\nsources = [{source = \"s\"}]\ndkim_domain = \"esp.example\"\n", 7,
			[]string{`[[pool]] "p" dkim_domain`, `no [[dkim]] key has domain`}},
		{"keep_existing type", "[dkim_default]\nkeep_existing = \"yes\"\n", 2, []string{"keep_existing", "want true or false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("bad.toml", []byte(tc.doc))
			if err == nil || c != nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			prefix := "bad.toml:" + strconv.Itoa(tc.line) + ": "
			for _, line := range strings.Split(err.Error(), "\n") {
				ok := strings.HasPrefix(line, prefix)
				for _, w := range tc.want {
					ok = ok && strings.Contains(line, w)
				}
				if ok {
					return
				}
			}
			t.Errorf("no problem line starts with %q and contains %q; got:\n%v", prefix, tc.want, err)
		})
	}
}
