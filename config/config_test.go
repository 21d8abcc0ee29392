package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fullConfig = `# a complete penstock.toml
[server]
hostname = "mta.example.com"
spool_dir = "/var/spool/penstock"
log_dir = "/var/log/penstock"
tls = "required"
use_shipped_rules = false

[smtp]
listen = "0.0.0.0:25"
allowed_networks = ["10.0.0.0/8", "192.0.2.0/24"]
max_message_size = 10485760
max_recipients = 500
max_connections = 200
tls_cert = "cert.pem"
tls_key = "key.pem"

[smtp.users]
app = "s3cret"

[http]
listen = "0.0.0.0:8025"
token = "tok"

[dns]
nameservers = ["127.0.0.1", "127.0.0.1:5353", "[::1]:53"]
timeout = "2s"

[delivery]
port = 2525
retry = ["1m", "1h30m"]
validity = "2d"
default_pool = "main"
dsn = false

[[source]]
name = "ip1"
ip = "192.0.2.10"
ehlo = "out1.example.com"

[[source]]
name = "ip2"
ip = "2001:db8::10"

[[pool]]
name = "main"
sources = [{source = "ip1", weight = 3}, {source = "ip2"}]

[[pool]]
name = "second"
[[pool.sources]]
source = "ip2"

[[mx_rule]]
name = "google"
mx = "*.Google.com"
max_connections = 20
messages_per_hour = 36000

[[mx_rule]]
name = "yahoo"
mx = ["*.yahoodns.net", "mta?.am0.yahoodns.net"]
scope = "rule"
max_connections = 30
max_messages_per_connection = 5
messages_per_hour = 1200
connect_timeout = "10s"
command_timeout = "1m"
data_timeout = "4m"
tls = "verify"

[[mx_rule]]
name = "default"
mx = "*"
scope = "path"

[flow_control]
enabled = false
window = "10m"
min_attempts = 10
error_ratio = 0.25
suspend_ratio = 1
local_min_sites = 3

[[flow_control.pattern]]
match = "(?i)too many connections"
action = "backoff"

[[flow_control.pattern]]
match = "blocked"
action = "suspend"
duration = "1h"
threshold = "3/5m"

[[bounce_rule]]
name = "user unknown"
code = "550"
enhanced = "5.1.1"
class = "hard"

[[bounce_rule]]
name = "greylist"
code = "4*"
match = "(?i)greylist"
reason = "greylisted"
class = "ignored"
retry = "10m"

[quarantine]
max_errors = 3
significant_error_delay = "12h"
reset_after = "30d"
case_sensitive_local = false

[bounce]
listen = "127.0.0.1:2526"
domain = "bounces.example.com"

[cluster]
redis = "redis://127.0.0.1:6379/0"
node = "node-a"
lease_ttl = "10s"
`

func mustParse(t *testing.T, name, doc string) *Config {
	t.Helper()
	c, err := Parse(name, []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

// comparable clears what depends on where a config came from.
func comparable(c *Config) Config {
	cc := *c
	cc.File, cc.lines = "", nil
	cc.MXRules = append([]MXRule(nil), c.MXRules...)
	for i := range cc.MXRules {
		cc.MXRules[i].Line = 0
	}
	return cc
}

func TestDefault(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	for _, doc := range []string{"", "# nothing\n\n", "[server]\n[flow_control]\n"} {
		c := mustParse(t, "empty.toml", doc)
		if !reflect.DeepEqual(comparable(c), comparable(d)) {
			t.Errorf("%q: parsed %+v, want the defaults %+v", doc, comparable(c), comparable(d))
		}
	}
	if d.SMTP.Listen != "127.0.0.1:2525" || d.HTTP.Listen != "127.0.0.1:8025" || d.Server.SpoolDir != "./penstock-data" {
		t.Errorf("listen/spool defaults: %+v %+v %+v", d.SMTP, d.HTTP, d.Server)
	}
	if d.SMTP.MaxMessageSize != 25<<20 || d.Delivery.Validity != Duration(5*24*time.Hour) || len(d.Delivery.Retry) != 5 {
		t.Errorf("size/validity/retry defaults: %+v %+v", d.SMTP, d.Delivery)
	}
	if !d.FlowControl.Enabled || !d.Server.UseShippedRules || !d.Quarantine.CaseSensitiveLocal {
		t.Errorf("boolean defaults should be true")
	}
}

func TestFullConfig(t *testing.T) {
	c := mustParse(t, "penstock.toml", fullConfig)
	if c.File != "penstock.toml" || c.Server.TLS != TLSRequired || c.Server.UseShippedRules {
		t.Errorf("server: %+v", c.Server)
	}
	if got := c.SMTP.Users["app"]; got != "s3cret" {
		t.Errorf("users: %v", c.SMTP.Users)
	}
	if want := []Duration{Duration(time.Minute), Duration(90 * time.Minute)}; !reflect.DeepEqual(c.Delivery.Retry, want) {
		t.Errorf("retry %v, want %v (a list replaces the default list)", c.Delivery.Retry, want)
	}
	if c.Sources[1].EHLO != "mta.example.com" {
		t.Errorf("source ehlo default: %q", c.Sources[1].EHLO)
	}
	if want := []PoolSource{{"ip1", 3}, {"ip2", 1}}; !reflect.DeepEqual(c.Pools[0].Sources, want) {
		t.Errorf("pool main %v, want %v", c.Pools[0].Sources, want)
	}
	if want := []PoolSource{{"ip2", 1}}; !reflect.DeepEqual(c.Pools[1].Sources, want) {
		t.Errorf("pool second %v, want %v", c.Pools[1].Sources, want)
	}
	g := c.MXRules[0]
	if !reflect.DeepEqual(g.MX, Patterns{"*.google.com"}) || g.Scope != ScopeSource || g.TLS != TLSDefault ||
		g.ConnectTimeout != Duration(30*time.Second) || g.CommandTimeout != Duration(5*time.Minute) ||
		g.DataTimeout != Duration(10*time.Minute) || g.Line != 54 {
		t.Errorf("google rule (string mx, lower-cased, rule defaults, line 54): %+v", g)
	}
	y := c.MXRules[1]
	if !reflect.DeepEqual(y.MX, Patterns{"*.yahoodns.net", "mta?.am0.yahoodns.net"}) || y.Scope != ScopeRule ||
		y.MaxMessagesPerConnection != 5 || y.DataTimeout != Duration(4*time.Minute) || y.TLS != TLSVerify || y.Line != 60 {
		t.Errorf("yahoo rule (list mx, line 60): %+v", y)
	}
	f := c.FlowControl
	if f.Enabled || f.ErrorRatio != 0.25 || f.SuspendRatio != 1 || f.RateFactor != 0.5 || f.LocalMinSites != 3 {
		t.Errorf("flow control (set keys and kept defaults): %+v", f)
	}
	if f.Patterns[0].Duration != f.SuspendFor || f.Patterns[1].Duration != Duration(time.Hour) {
		t.Errorf("pattern durations: %+v", f.Patterns)
	}
	if c.BounceRules[0].Reason != "user unknown" || c.BounceRules[1].Reason != "greylisted" {
		t.Errorf("bounce rule reasons: %+v", c.BounceRules)
	}
	if c.Quarantine.ResetAfter != Duration(30*24*time.Hour) || c.Quarantine.CaseSensitiveLocal {
		t.Errorf("quarantine: %+v", c.Quarantine)
	}
	if c.Cluster.Node != "node-a" || c.Cluster.LeaseTTL != Duration(10*time.Second) {
		t.Errorf("cluster: %+v", c.Cluster)
	}
}

func TestSMTPDefences(t *testing.T) {
	d := mustParse(t, "d.toml", "")
	if s := d.SMTP; s.MaxConnectionsPerClient != 50 || s.ReservedConnectionsRatio != 0.1 || s.IdleTimeout != Duration(5*time.Minute) ||
		s.StressIdleTimeout != Duration(10*time.Second) || s.MaxErrors != 20 {
		t.Errorf("defaults: %+v", s)
	}
	c := mustParse(t, "s.toml", "[smtp]\nmax_connections_per_client = 5\nreserved_connections_ratio = 0\n"+
		"idle_timeout = \"2m\"\nstress_idle_timeout = \"5s\"\nmax_errors = 7\n")
	if s := c.SMTP; s.MaxConnectionsPerClient != 5 || s.ReservedConnectionsRatio != 0 || s.IdleTimeout != Duration(2*time.Minute) ||
		s.StressIdleTimeout != Duration(5*time.Second) || s.MaxErrors != 7 {
		t.Errorf("set: %+v", s)
	}
}

func TestEffectiveRoundTrip(t *testing.T) {
	for name, c := range map[string]*Config{
		"defaults": Default(),
		"full":     mustParse(t, "penstock.toml", fullConfig),
	} {
		var buf bytes.Buffer
		if err := c.WriteEffective(&buf); err != nil {
			t.Fatalf("%s: WriteEffective: %v", name, err)
		}
		back, err := Parse("effective.toml", buf.Bytes())
		if err != nil {
			t.Fatalf("%s: effective output does not parse: %v\n%s", name, err, buf.String())
		}
		if !reflect.DeepEqual(comparable(back), comparable(c)) {
			t.Errorf("%s: round trip differs:\n got %+v\nwant %+v\n%s", name, comparable(back), comparable(c), buf.String())
		}
		out := buf.String()
		for _, want := range []string{"validity = '", "suspend_for = '5m'", "[quarantine]", "lease_ttl = "} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: effective output lacks %q:\n%s", name, want, out)
			}
		}
	}
}

// TestBad: every class of problem is refused with file:line and the key.
func TestBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		line int
		want []string // substrings of the message
	}{
		{"unknown key in array table", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmax_conection = 3\n", 4,
			[]string{`unknown key "max_conection" in [[mx_rule]]`, `did you mean "max_connections"`}},
		{"unknown key in table", "[smtp]\nlisten = \"127.0.0.1:25\"\n\nlistne = \"x\"\n", 4, []string{`unknown key "listne" in [smtp]`}},
		{"unknown table", "[smpt]\nlisten = \"x\"\n", 1, []string{`unknown table [smpt]`, `did you mean "smtp"`}},
		{"unknown top-level key", "hostname = \"x\"\n", 1, []string{`unknown key "hostname" at top level`}},
		{"unknown key in nested array table", "[[source]]\nname=\"s\"\nip=\"127.0.0.2\"\n[[pool]]\nname=\"p\"\n[[pool.sources]]\nsource=\"s\"\nwieght=2\n", 8,
			[]string{`unknown key "wieght" in [[pool.sources]]`}},
		{"unknown key in inline table", "[[source]]\nname=\"s\"\nip=\"127.0.0.2\"\n[[pool]]\nname=\"p\"\nsources = [{source = \"s\", wieght = 2}]\n", 6,
			[]string{`unknown key "wieght" in [[pool.sources]]`, `did you mean "weight"`}},
		{"wrong case", "[smtp]\nMax_Connections = 3\n", 2, []string{`"Max_Connections"`, `case-sensitive`, `max_connections`}},
		{"wrong type int", "[smtp]\nmax_connections = \"ten\"\n", 2, []string{"[smtp] max_connections", "want a whole number, got a string"}},
		{"wrong type string", "[http]\nlisten = 8025\n", 2, []string{"[http] listen", "want a string"}},
		{"wrong type bool", "[server]\nuse_shipped_rules = \"yes\"\n", 2, []string{"use_shipped_rules", "want true or false"}},
		{"wrong type list", "[smtp]\nallowed_networks = \"10.0.0.0/8\"\n", 2, []string{"allowed_networks", "want a list of strings"}},
		{"wrong type list element", "[dns]\nnameservers = [\n  \"127.0.0.1\",\n  53,\n]\n", 4, []string{"[dns] nameservers #2", "want a string"}},
		{"wrong type table", "smtp = 3\n", 1, []string{"smtp", "want a table"}},
		{"list of tables as table", "[mx_rule]\nname = \"a\"\n", 1, []string{"mx_rule is a list of tables", "[[mx_rule]]"}},
		{"table as list of tables", "[[smtp]]\nlisten = \"a\"\n", 1, []string{"smtp is not a list of tables"}},
		{"duration bare number", "[dns]\ntimeout = 5\n", 2, []string{"[dns] timeout", `want a duration string like "5m"`}},
		{"duration bad unit", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\ndata_timeout = \"4x\"\n", 4,
			[]string{"[[mx_rule]] #1 data_timeout", `invalid duration "4x"`}},
		{"duration missing unit", "[delivery]\nvalidity = \"5\"\n", 2, []string{"[delivery] validity", "missing unit"}},
		{"patterns wrong type", "[[mx_rule]]\nname = \"a\"\nmx = 3\n", 3, []string{"mx", "want a string or a list of strings"}},
		{"syntax", "[smtp]\nlisten = \n", 2, []string{"bad.toml:2:"}},
		{"duplicate key", "[smtp]\nlisten = \"a:1\"\nlisten = \"b:1\"\n", 3, []string{"listen", "already defined"}},

		{"bad scope", "[[mx_rule]]\nname = \"yahoo\"\nmx = \"*\"\nscope = \"site\"\n", 4,
			[]string{`[[mx_rule]] "yahoo" scope`, `"site" is not one of path, source, rule`}},
		{"negative max_connections", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\n\nmax_connections = -1\n", 5,
			[]string{`[[mx_rule]] "a" max_connections`, "negative"}},
		{"zero max_connections_per_client", "[smtp]\nmax_connections_per_client = 0\n", 2,
			[]string{"[smtp] max_connections_per_client", "below the minimum of 1"}},
		{"reserved ratio too high", "[smtp]\nreserved_connections_ratio = 0.95\n", 2,
			[]string{"[smtp] reserved_connections_ratio", "outside [0, 0.9]"}},
		{"stress timeout over idle timeout", "[smtp]\nidle_timeout = \"1m\"\nstress_idle_timeout = \"2m\"\n", 3,
			[]string{"[smtp] stress_idle_timeout", "longer than idle_timeout"}},
		{"zero idle timeout", "[smtp]\nidle_timeout = \"0s\"\n", 2, []string{"[smtp] idle_timeout", "positive"}},
		{"zero max_errors", "[smtp]\nmax_errors = 0\n", 2, []string{"[smtp] max_errors", "below the minimum of 1"}},
		{"negative messages_per_hour", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmessages_per_hour = -5\n", 4, []string{"messages_per_hour", "negative"}},
		{"limit pattern without limits", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"limit\"\n", 3,
			[]string{"[[flow_control.pattern]] #1 action", "at least one of max_connections"}},
		{"limits on a backoff pattern", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"backoff\"\nmax_connections = 2\n", 4,
			[]string{"[[flow_control.pattern]] #1 max_connections", `action = "limit"`}},
		{"bad limit pattern rate", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"limit\"\nmax_connection_rate = \"fast\"\n", 4,
			[]string{"[[flow_control.pattern]] #1 max_connection_rate", "not N/period"}},
		{"negative limit pattern cap", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"limit\"\nmessages_per_hour = -1\n", 4,
			[]string{"[[flow_control.pattern]] #1 messages_per_hour", "negative"}},
		{"cap unknown rule", "[[cap]]\nname = \"g\"\nrule = [\"yahoo\", \"yahooo\"]\nmax_connections = 5\n", 3,
			[]string{`[[cap]] "g" rule #2`, `no [[mx_rule]] (nor shipped rule) is named "yahooo"`}},
		{"cap unknown source", "[[cap]]\nname = \"ip1\"\nsource = \"ip1\"\nmax_connections = 300\n", 3,
			[]string{`[[cap]] "ip1" source`, `no [[source]] is named "ip1"`}},
		{"cap without limit", "[[cap]]\nname = \"g\"\nrule = \"yahoo\"\n", 1,
			[]string{`[[cap]] "g" max_connections`, "at least one of max_connections"}},
		{"cap without selector", "[[cap]]\nname = \"g\"\nmax_connections = 5\n", 2,
			[]string{`[[cap]] "g" name`, "needs a selector"}},
		{"cap bad rate", "[[cap]]\nname = \"g\"\nmx = \"*.yahoodns.net\"\nmax_connection_rate = \"10\"\n", 4,
			[]string{`[[cap]] "g" max_connection_rate`, "not N/period"}},
		{"cap bad wildcard", "[[cap]]\nname = \"g\"\nmx = \"*.yahoo dns\"\nmessages_per_hour = 10\n", 3,
			[]string{`[[cap]] "g" mx`, "not an MX wildcard"}},
		{"cap negative", "[[cap]]\nname = \"g\"\nrule = \"yahoo\"\nmessages_per_hour = -1\n", 4,
			[]string{`[[cap]] "g" messages_per_hour`, "negative"}},
		{"cap duplicate", "[[cap]]\nname = \"g\"\nrule = \"yahoo\"\nmax_connections = 1\n[[cap]]\nname = \"g\"\nrule = \"yahoo\"\nmax_connections = 2\n", 6,
			[]string{`[[cap]] "g" name`, `duplicate name "g"`}},
		{"tenant weight", "[[tenant]]\nname = \"acme\"\nweight = -2\n", 3, []string{`[[tenant]] "acme" weight`, "outside 1 to 1000"}},
		{"tenant name", "[[tenant]]\nname = \"ac me\"\nmessages_per_hour = 5\n", 2, []string{`[[tenant]] "ac me" name`, "bad tenant name"}},
		{"tenant negative", "[[tenant]]\nname = \"acme\"\nmessages_per_hour = -5\n", 3, []string{`[[tenant]] "acme" messages_per_hour`, "negative"}},
		{"tenant duplicate", "[[tenant]]\nname = \"acme\"\n[[tenant]]\nname = \"acme\"\n", 4, []string{`[[tenant]] "acme" name`, `duplicate name`}},
		{"negative messages_per_day", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmessages_per_day = -5\n", 4, []string{`[[mx_rule]] "a" messages_per_day`, "negative"}},
		{"connection rate without period", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\n\nmax_connection_rate = \"30\"\n", 5,
			[]string{`[[mx_rule]] "a" max_connection_rate`, `not N/period`}},
		{"connection rate zero count", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmax_connection_rate = \"0/1m\"\n", 4,
			[]string{"max_connection_rate", "at least 1"}},
		{"connection rate period too short", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmax_connection_rate = \"5/100ms\"\n", 4,
			[]string{"max_connection_rate", "at least 1s"}},
		{"negative rule timeout", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nconnect_timeout = \"-1s\"\n", 4, []string{"connect_timeout", "positive"}},
		{"bad wildcard", "[[mx_rule]]\nname = \"a\"\nmx = \"*.gmail_com\"\n", 3, []string{`[[mx_rule]] "a" mx`, `"*.gmail_com" is not an MX wildcard`}},
		{"bad wildcard in list", "[[mx_rule]]\nname = \"a\"\nmx = [\n  \"a.com\",\n  \"b com\",\n]\n", 5, []string{`mx #2`, `"b com"`}},
		{"empty wildcard", "[[mx_rule]]\nname = \"a\"\nmx = \"\"\n", 3, []string{`mx`, `"" is not an MX wildcard`}},
		{"missing mx", "[[mx_rule]]\nname = \"a\"\n", 1, []string{`[[mx_rule]] "a" mx`, "missing"}},
		{"missing rule name", "[[mx_rule]]\nmx = \"*\"\n", 1, []string{`[[mx_rule]] #1 name`, "needs a name"}},
		{"duplicate rule name", "[[mx_rule]]\nname = \"a\"\nmx = \"a.*\"\n[[mx_rule]]\nname = \"a\"\nmx = \"b.*\"\n", 5,
			[]string{`[[mx_rule]] "a" name`, `duplicate name "a"`}},
		{"rule after catch-all", "[[mx_rule]]\nname = \"all\"\nmx = \"*\"\n[[mx_rule]]\nname = \"late\"\nmx = \"*.x.com\"\n", 6,
			[]string{`[[mx_rule]] "late" mx`, "never match"}},
		{"rule tls", "[[mx_rule]]\nname = \"a\"\nmx = \"*\"\ntls = \"always\"\n", 4, []string{`tls`, `"always" is not one of default`}},
		{"server tls", "[server]\ntls = \"default\"\n", 2, []string{"[server] tls", `"default" is not one of disabled`}},
		{"bad hostname", "[server]\nhostname = \"mta example\"\n", 2, []string{"[server] hostname"}},
		{"bad cidr", "[smtp]\nallowed_networks = [\"10.0.0.0/8\", \"10.0.0/8\"]\n", 2, []string{"[smtp] allowed_networks #2", "not a network"}},
		{"address not cidr", "[smtp]\nallowed_networks = [\"10.1.2.3\"]\n", 2, []string{"allowed_networks #1", `write "10.1.2.3/32"`}},
		{"open relay", "[smtp]\nallowed_networks = [\"0.0.0.0/0\"]\n", 2, []string{"allowed_networks #1", "open relay"}},
		{"bad listen", "[smtp]\nlisten = \"2525\"\n", 2, []string{"[smtp] listen", "not host:port"}},
		{"tls cert without key", "[smtp]\ntls_cert = \"c.pem\"\n", 2, []string{"[smtp] tls_cert", "tls_key is missing"}},
		{"empty password", "[smtp.users]\nbob = \"\"\n", 2, []string{"users", `"bob" has an empty password`}},
		{"max message size", "[smtp]\nmax_message_size = 0\n", 2, []string{"[smtp] max_message_size"}},
		{"http without token off loopback", "[http]\nlisten = \"0.0.0.0:8025\"\n", 1, []string{"[http] token", "must be set"}},
		{"bad nameserver", "[dns]\nnameservers = [\"ns1.example.com\"]\n", 2, []string{"[dns] nameservers #1"}},
		{"zero dns timeout", "[dns]\ntimeout = \"0s\"\n", 2, []string{"[dns] timeout", "positive"}},
		{"bad port", "[delivery]\nport = 70000\n", 2, []string{"[delivery] port"}},
		{"empty retry", "[delivery]\nretry = []\n", 2, []string{"[delivery] retry", "empty"}},
		{"negative retry", "[delivery]\nretry = [\"5m\", \"-5m\"]\n", 2, []string{"[delivery] retry #2", "positive"}},
		{"unknown default pool", "[delivery]\ndefault_pool = \"nope\"\n", 2, []string{"[delivery] default_pool", `"nope"`}},
		{"source ip", "[[source]]\nname = \"s\"\nip = \"300.1.1.1\"\n", 3, []string{`[[source]] "s" ip`, "not an IP"}},
		{"source ehlo", "[[source]]\nname = \"s\"\nip = \"127.0.0.2\"\nehlo = \"bad_name\"\n", 4, []string{`[[source]] "s" ehlo`}},
		{"duplicate source", "[[source]]\nname = \"s\"\nip = \"127.0.0.2\"\n[[source]]\nname = \"s\"\nip = \"127.0.0.3\"\n", 5,
			[]string{`[[source]] "s" name`, "duplicate"}},
		{"pool unknown source", "[[pool]]\nname = \"p\"\nsources = [{source = \"ghost\"}]\n", 3,
			[]string{`[[pool]] "p" sources #1 source`, `no [[source]] is named "ghost"`}},
		{"pool negative weight", "[[source]]\nname=\"s\"\nip=\"127.0.0.2\"\n[[pool]]\nname = \"p\"\n[[pool.sources]]\nsource = \"s\"\nweight = -2\n", 8,
			[]string{`sources #1 weight`, "at least 1"}},
		{"empty pool", "[[pool]]\nname = \"p\"\n", 1, []string{`[[pool]] "p" sources`}},
		{"flow bad regexp", "[[flow_control.pattern]]\nmatch = \"([a-z\"\naction = \"backoff\"\n", 2,
			[]string{"[[flow_control.pattern]] #1 match", "bad regular expression"}},
		{"flow bad action", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"pause\"\n", 3, []string{"action", `"pause"`}},
		{"flow bad threshold", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"suspend\"\nthreshold = \"3 per 5m\"\n", 4,
			[]string{"threshold", "N/duration"}},
		{"flow threshold duration", "[[flow_control.pattern]]\nmatch = \"x\"\naction = \"suspend\"\nthreshold = \"3/5q\"\n", 4, []string{"threshold"}},
		{"error ratio zero", "[flow_control]\nerror_ratio = 0\n", 2, []string{"[flow_control] error_ratio", "(0, 1]"}},
		{"error ratio above one", "[flow_control]\nerror_ratio = 1.5\nsuspend_ratio = 1\n", 2, []string{"[flow_control] error_ratio", "(0, 1]"}},
		{"suspend below error ratio", "[flow_control]\nsuspend_ratio = 0.2\n", 2, []string{"[flow_control] suspend_ratio", "below error_ratio"}},
		{"min attempts", "[flow_control]\nmin_attempts = 0\n", 2, []string{"[flow_control] min_attempts"}},
		{"bounce bad regexp", "[[bounce_rule]]\nname = \"b\"\nmatch = \"*x\"\nclass = \"soft\"\n", 3, []string{`[[bounce_rule]] "b" match`, "bad regular expression"}},
		{"bounce bad code", "[[bounce_rule]]\nname = \"b\"\ncode = \"55\"\nclass = \"soft\"\n", 3, []string{`[[bounce_rule]] "b" code`}},
		{"bounce bad enhanced", "[[bounce_rule]]\nname = \"b\"\nenhanced = \"5.1\"\nclass = \"soft\"\n", 3, []string{`enhanced`, `"5.1"`}},
		{"bounce bad class", "[[bounce_rule]]\nname = \"b\"\ncode = \"550\"\nclass = \"permanent\"\n", 4, []string{`class`, `"permanent"`}},
		{"bounce matches all", "[[bounce_rule]]\nname = \"b\"\nclass = \"soft\"\n", 1, []string{"matches every reply"}},
		{"bounce hard retry", "[[bounce_rule]]\nname = \"b\"\ncode = \"550\"\nclass = \"hard\"\nretry = \"1h\"\n", 5, []string{"retry", "never retried"}},
		{"quarantine max errors", "[quarantine]\nmax_errors = 0\n", 2, []string{"[quarantine] max_errors"}},
		{"bounce listener without domain", "[bounce]\nlisten = \"127.0.0.1:2526\"\n", 1, []string{"[bounce] domain"}},
		{"trusted reporters all IPv4", "[bounce]\ntrusted_reporters = [\"0.0.0.0/0\"]\n", 2, []string{"[bounce] trusted_reporters #1", "every IPv4"}},
		{"trusted reporters all IPv6", "[bounce]\ntrusted_reporters = [\"192.0.2.0/24\", \"::/0\"]\n", 2, []string{"trusted_reporters #2", "every IPv6"}},
		{"trusted reporters mapped all IPv4", "[bounce]\ntrusted_reporters = [\"::ffff:0.0.0.0/96\"]\n", 2, []string{"trusted_reporters #1", "every IPv4"}},
		{"trusted reporters address", "[bounce]\ntrusted_reporters = [\"192.0.2.7\"]\n", 2, []string{"trusted_reporters #1", `"192.0.2.7/32"`}},
		{"trusted reporters junk", "[bounce]\ntrusted_reporters = [\"fbl_example\"]\n", 2, []string{"trusted_reporters #1", "neither"}},
		{"max report size", "[bounce]\nmax_report_size = 100\n", 2, []string{"[bounce] max_report_size", "between"}},
		{"reports per minute", "[bounce]\nreports_per_minute = 0\n", 2, []string{"[bounce] reports_per_minute"}},
		{"unparsed max bytes", "[bounce]\nunparsed_max_bytes = -1\n", 2, []string{"[bounce] unparsed_max_bytes"}},
		{"bad redis", "[cluster]\nredis = \"http://x:1\"\n", 2, []string{"[cluster] redis", "scheme"}},
		{"lease ttl", "[cluster]\nlease_ttl = \"0s\"\n", 2, []string{"[cluster] lease_ttl"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("bad.toml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if c != nil {
				t.Errorf("returned a config with the error")
			}
			prefix := "bad.toml:" + strconv.Itoa(tc.line) + ": "
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, prefix) {
					continue
				}
				ok := true
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

func TestAllProblemsReported(t *testing.T) {
	doc := `[smtp]
max_connections = 0
allowed_networks = ["nope"]
[[mx_rule]]
name = "a"
mx = "*"
scope = "x"
max_connections = -1
bogus = 1
[[mx_rule]]
name = "a"
mx = "a b"
[[bounce_rule]]
name = "b"
match = "("
class = "hard"
`
	_, err := Parse("multi.toml", []byte(doc))
	if err == nil {
		t.Fatal("accepted")
	}
	var probs []*Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("%T is not *Error: %v", e, e)
		}
		probs = append(probs, pe)
	}
	wantLines := []int{2, 3, 7, 8, 9, 11, 12, 12, 15}
	var got []int
	for _, p := range probs {
		got = append(got, p.Line)
		if p.File != "multi.toml" || p.Key == "" {
			t.Errorf("problem without file or key: %+v", p)
		}
	}
	if !reflect.DeepEqual(got, wantLines) {
		t.Errorf("problem lines %v, want %v:\n%v", got, wantLines, err)
	}
	if probs[2].Key != "mx_rule[0].scope" {
		t.Errorf("key path %q, want mx_rule[0].scope", probs[2].Key)
	}
}

// TestTypeErrorKeepsUnknownKeys: go-toml stops at a type error before its
// strict check; unknown keys elsewhere are still reported.
func TestTypeErrorKeepsUnknownKeys(t *testing.T) {
	doc := "[smtp]\nmax_connections = \"x\"\n[dns]\ntimeout = 5\n[[mx_rule]]\nname = \"a\"\nmx = \"*\"\nmax_conection = 3\n"
	_, err := Parse("t.toml", []byte(doc))
	want := []string{
		"t.toml:2: [smtp] max_connections: want a whole number",
		"t.toml:4: [dns] timeout: want a duration",
		`t.toml:8: unknown key "max_conection" in [[mx_rule]]`,
	}
	if err == nil {
		t.Fatal("accepted")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := Default()
	c.MXRules = append(c.MXRules, MXRule{Name: "x", MX: Patterns{"*.X.com"}, MaxConnections: 2})
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid rule refused: %v", err)
	}
	if c.MXRules[0].MX[0] != "*.x.com" || c.MXRules[0].Scope != ScopeSource {
		t.Errorf("ApplyDefaults: %+v", c.MXRules[0])
	}
	c.MXRules[0].Scope = "bad"
	err := c.Validate()
	if err == nil || !strings.HasPrefix(err.Error(), `config: [[mx_rule]] "x" scope:`) {
		t.Errorf("want a problem without file line, got %v", err)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"5m", 5 * time.Minute, "5m"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"90m", 90 * time.Minute, "1h30m"},
		{"5d", 5 * 24 * time.Hour, "5d"},
		{"1d12h", 36 * time.Hour, "1d12h"},
		{"1.5d", 36 * time.Hour, "1d12h"},
		{"36h", 36 * time.Hour, "1d12h"},
		{"10s", 10 * time.Second, "10s"},
		{"1500ms", 1500 * time.Millisecond, "1.5s"},
		{"1m0.25s", time.Minute + 250*time.Millisecond, "1m250ms"},
		{"0s", 0, "0s"},
		{"0", 0, "0s"},
		{"-5m", -5 * time.Minute, "-5m"},
		{"2d3h4m5s", 2*24*time.Hour + 3*time.Hour + 4*time.Minute + 5*time.Second, "2d3h4m5s"},
	} {
		d, err := ParseDuration(tc.in)
		if err != nil || d.Std() != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tc.in, time.Duration(d), err, tc.want)
			continue
		}
		if d.String() != tc.out {
			t.Errorf("%q formats as %q, want %q", tc.in, d.String(), tc.out)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%q does not round-trip: %v %v", d.String(), back, err)
		}
		var u Duration
		if err := u.UnmarshalText([]byte(tc.in)); err != nil || u != d {
			t.Errorf("UnmarshalText(%q) = %v, %v", tc.in, u, err)
		}
	}
	for _, bad := range []string{"", "5", "30 s", "5x", "d", "5dd", "1d-5h", "-", "1e3d", "d5h", "5d5", "++5m", "999999999999d"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, d)
		}
	}
	// The reason names the real fault: "10 seconds" used to be a
	// "malformed day count" (the d of "seconds").
	for in, want := range map[string]string{
		"10 seconds": "spaces are not allowed",
		"10seconds":  `unknown unit "seconds"`,
		"5 m":        "spaces are not allowed",
		"3 days":     "spaces are not allowed",
		"2weeks":     `unknown unit "weeks"`,
	} {
		_, err := ParseDuration(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "day count") {
			t.Errorf("ParseDuration(%q) = %v, want %q", in, err, want)
		}
	}
	for _, d := range []Duration{1<<63 - 1, -(1<<63 - 1)} {
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%d formats as %q which parses to %d, %v", int64(d), d.String(), int64(back), err)
		}
	}
	if s := Duration(-1 << 63).String(); s != "-106751d23h47m16.854775808s" {
		t.Errorf("MinInt64 formats as %q", s)
	}
}

func TestPatterns(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want Patterns
	}{
		{`mx = "*.example.com"`, Patterns{"*.example.com"}},
		{`mx = ["a.example.com", "mx?.b.example.com"]`, Patterns{"a.example.com", "mx?.b.example.com"}},
		{`mx = 'MX.Example.COM'`, Patterns{"mx.example.com"}},
	} {
		rules, err := DecodeMXRules("rules.toml", []byte("[[mx_rule]]\nname = \"r\"\n"+tc.doc+"\n"))
		if err != nil {
			t.Errorf("%s: %v", tc.doc, err)
			continue
		}
		if !reflect.DeepEqual(rules[0].MX, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.doc, rules[0].MX, tc.want)
		}
	}
}

func TestThreshold(t *testing.T) {
	n, per, err := ParseThreshold("3/5m")
	if err != nil || n != 3 || per != 5*time.Minute {
		t.Errorf("ParseThreshold(3/5m) = %d, %v, %v", n, per, err)
	}
	for _, bad := range []string{"", "3", "0/5m", "x/5m", "3/", "3/0s", "3/-1m", "3/5"} {
		if _, _, err := ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q) accepted", bad)
		}
	}
}

func TestDecodeMXRules(t *testing.T) {
	good := "# providers\n[[mx_rule]]\nname = \"g\"\nmx = \"*.google.com\"\nmax_connections = 10\n\n[[mx_rule]]\nname = \"all\"\nmx = \"*\"\n"
	rules, err := DecodeMXRules("shipped.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Line != 2 || rules[1].Line != 7 || rules[1].Scope != ScopeSource || rules[1].TLS != TLSDefault {
		t.Errorf("rules: %+v", rules)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[[mx_rule]]\nname = \"g\"\nmx = \"*\"\nmax_conections = 3\n", `shipped.toml:4: unknown key "max_conections" in [[mx_rule]]`},
		{"[server]\nhostname = \"x\"\n", `shipped.toml:1: unknown table [server]`},
		{"[[mx_rule]]\nname = \"g\"\nmx = \"*\"\nscope = \"x\"\n", `shipped.toml:4: [[mx_rule]] "g" scope`},
		{"[[mx_rule]]\nname = \"g\"\nmx = \"*\"\ncommand_timeout = 60\n", `shipped.toml:4: [[mx_rule]] #1 command_timeout: want a duration`},
	} {
		_, err := DecodeMXRules("shipped.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "penstock.toml")
	if err := os.WriteFile(p, []byte(fullConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil || c.File != p {
		t.Fatalf("Load: %v, %+v", err, c)
	}
	if err := os.WriteFile(p, []byte("[smtp]\nmax_connections = -3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.HasPrefix(err.Error(), p+":2: [smtp] max_connections") {
		t.Errorf("Load bad file: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// Trusted reporters: networks normalised (v4-mapped to IPv4, host bits
// cleared), domains lowercased.
func TestBounceTrustedReporters(t *testing.T) {
	c, err := Parse("t.toml", []byte("[bounce]\ntrusted_reporters = [\"::ffff:192.0.2.9/120\", \"2001:db8::/48\", \"FBL.Example.com.\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	nets, domains := c.Bounce.Trusted()
	if len(nets) != 2 || nets[0].String() != "192.0.2.0/24" || nets[1].String() != "2001:db8::/48" {
		t.Errorf("networks %v", nets)
	}
	if len(domains) != 1 || domains[0] != "fbl.example.com" {
		t.Errorf("domains %v", domains)
	}
	if d := Default().Bounce; d.MaxReportSize != 1<<20 || d.UnparsedMaxFiles != 1000 || d.ReportsPerMinute != 120 {
		t.Errorf("defaults %+v", d)
	}
}

// chunking is on unless a rule says false; the rule set carries it to the
// queue as NoChunking.
func TestMXRuleChunking(t *testing.T) {
	c, err := Parse("t.toml", []byte("[[mx_rule]]\nname = \"old\"\nmx = \"*.old.test\"\nchunking = false\n\n"+
		"[[mx_rule]]\nname = \"on\"\nmx = \"*.on.test\"\nchunking = true\n\n[[mx_rule]]\nname = \"unset\"\nmx = \"*.unset.test\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := c.RuleSet()
	if err != nil {
		t.Fatal(err)
	}
	for host, off := range map[string]bool{"mx.old.test": true, "mx.on.test": false, "mx.unset.test": false, "mx.other.test": false} {
		if got := set.Match([]string{host}).Rule.NoChunking; got != off {
			t.Errorf("%s: NoChunking %v, want %v", host, got, off)
		}
	}
	if _, err := Parse("t.toml", []byte("[[mx_rule]]\nname = \"x\"\nmx = \"*\"\nchunking = \"no\"\n")); err == nil || !strings.Contains(err.Error(), "chunking") {
		t.Errorf("chunking = \"no\": %v", err)
	}
}
