package caps

import (
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/quota"
)

func names(cs []*Cap) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, ",")
}

// Every selector a cap sets must match; unset ones match everything.
func TestMatch(t *testing.T) {
	s, err := New([]Cap{
		{Name: "ip1", Sources: []string{"ip1"}, MaxConnections: 300},
		{Name: "yahoo group", Rules: []string{"yahoo", "aol"}, MessagesPerHour: 1000},
		{Name: "yahoodns", MX: []string{"*.yahoodns.net"}, MaxConnectionRate: quota.Rate{N: 30, Per: time.Minute}},
		{Name: "ip2 at aol", Sources: []string{"ip2"}, Rules: []string{"aol"}, MaxConnections: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	yahooMX := []string{"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"}
	for _, tc := range []struct {
		rule   string
		mx     []string
		source string
		want   string
	}{
		{"yahoo", yahooMX, "ip1", "ip1,yahoo group,yahoodns"},
		{"yahoo", yahooMX, "ip2", "yahoo group,yahoodns"},
		{"aol", []string{"mx-aol.mail.gm0.yahoodns.net"}, "ip2", "yahoo group,yahoodns,ip2 at aol"},
		{"gmail", []string{"gmail-smtp-in.l.google.com"}, "ip1", "ip1"},
		{"gmail", []string{"gmail-smtp-in.l.google.com"}, "", ""},
		{"default", []string{"MX.YAHOODNS.NET."}, "ip3", "yahoodns"},
	} {
		if got := names(s.ForSite(tc.rule, tc.mx).ForSource(tc.source)); got != tc.want {
			t.Errorf("rule %s, mx %v, source %q: caps %q, want %q", tc.rule, tc.mx, tc.source, got, tc.want)
		}
	}
	var none *Set
	if got := none.ForSite("yahoo", yahooMX).ForSource("ip1"); len(got) != 0 || len(none.All()) != 0 {
		t.Errorf("a nil Set has caps: %v", got)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []Cap
		want string
	}{
		{"no name", []Cap{{Rules: []string{"a"}, MaxConnections: 1}}, "no name"},
		{"duplicate", []Cap{{Name: "a", Rules: []string{"a"}, MaxConnections: 1}, {Name: "a", Rules: []string{"b"}, MaxConnections: 1}}, "duplicate"},
		{"no selector", []Cap{{Name: "a", MaxConnections: 1}}, "selects nothing"},
		{"no limit", []Cap{{Name: "a", Rules: []string{"a"}}}, "no limit"},
		{"negative", []Cap{{Name: "a", Rules: []string{"a"}, MessagesPerHour: -1}}, "negative"},
		{"bad wildcard", []Cap{{Name: "a", MX: []string{"a b"}, MaxConnections: 1}}, "a b"},
	} {
		if _, err := New(tc.caps); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// FromConfig carries every key over, the rate parsed.
func TestFromConfig(t *testing.T) {
	c, err := config.Parse("p.toml", []byte(`
[[source]]
name = "ip1"
ip = "192.0.2.10"

[[cap]]
name = "ip1 total"
source = "ip1"
rule = ["yahoo", "google"]
mx = "*.yahoodns.net"
max_connections = 300
messages_per_hour = 5000
max_connection_rate = "30/1m"
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	all := s.All()
	if len(all) != 1 {
		t.Fatalf("%d caps, want 1", len(all))
	}
	got := all[0]
	if got.Name != "ip1 total" || strings.Join(got.Sources, ",") != "ip1" || strings.Join(got.Rules, ",") != "yahoo,google" ||
		strings.Join(got.MX, ",") != "*.yahoodns.net" || got.MaxConnections != 300 || got.MessagesPerHour != 5000 ||
		got.MaxConnectionRate != (quota.Rate{N: 30, Per: time.Minute}) {
		t.Errorf("cap %+v", got)
	}
	if l := got.Limits(); l != "max_connections 300, messages_per_hour 5000, max_connection_rate 30/1m0s" {
		t.Errorf("Limits() = %q", l)
	}
	if got.ConnKey() != "conn|cap|ip1 total" || got.RateKey() != "rate|cap|ip1 total" || got.OpenKey() != "open|cap|ip1 total" {
		t.Errorf("keys %s %s %s", got.ConnKey(), got.RateKey(), got.OpenKey())
	}
}
