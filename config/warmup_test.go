package config

import (
	"strconv"
	"strings"
	"testing"
)

const warmupSources = "[[source]]\nname = \"ip2\"\nip = \"127.0.0.2\"\n[[source]]\nname = \"ip3\"\nip = \"127.0.0.3\"\n" +
	"[[pool]]\nname = \"bulk\"\nsources = [{source = \"ip2\"}, {source = \"ip3\"}]\n" // 9 lines

func TestWarmupParses(t *testing.T) {
	c := mustParse(t, "w.toml", warmupSources+`[[warmup]]
source = "ip3"
rule = "yahoo"
schedule = [50, 100, 250]
hourly_spread = true
max_deferral_ratio = 0.2
[[warmup]]
pool = "bulk"
mx = ["*.outlook.com", "*.hotmail.com"]
schedule = [10]
`)
	if len(c.Warmups) != 2 {
		t.Fatalf("%+v", c.Warmups)
	}
	w := c.Warmups[0]
	if w.Source != "ip3" || w.Rule != "yahoo" || len(w.Schedule) != 3 || !w.HourlySpread || w.MaxDeferralRatio != 0.2 {
		t.Fatalf("%+v", w)
	}
	if m := c.Warmups[1].MX; len(m) != 2 || c.Warmups[1].Pool != "bulk" {
		t.Fatalf("%+v", c.Warmups[1])
	}
}

func TestWarmupBad(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		line      int // in the [[warmup]] table, 1 = its header
		want      string
	}{
		{"no source", "rule = \"yahoo\"\nschedule = [1]\n", 1, "exactly one of source"},
		{"both source and pool", "source = \"ip3\"\npool = \"bulk\"\nrule = \"yahoo\"\nschedule = [1]\n", 2, "exactly one of source"},
		{"unknown source", "source = \"ip9\"\nrule = \"yahoo\"\nschedule = [1]\n", 2, `no [[source]] is named "ip9"`},
		{"unknown pool", "pool = \"p9\"\nrule = \"yahoo\"\nschedule = [1]\n", 2, `no [[pool]] is named "p9"`},
		{"no group", "source = \"ip3\"\nschedule = [1]\n", 1, "exactly one of rule"},
		{"unknown rule", "source = \"ip3\"\nrule = \"yahooo\"\nschedule = [1]\n", 3, `named "yahooo"`},
		{"bad mx", "source = \"ip3\"\nmx = \"a b\"\nschedule = [1]\n", 3, "not an MX wildcard"},
		{"no schedule", "source = \"ip3\"\nrule = \"yahoo\"\n", 1, "schedule: missing"},
		{"zero step", "source = \"ip3\"\nrule = \"yahoo\"\nschedule = [\n  5,\n  0,\n]\n", 6, "at least 1"},
		{"ratio", "source = \"ip3\"\nrule = \"yahoo\"\nschedule = [1]\nmax_deferral_ratio = 1.5\n", 5, "outside (0, 1]"},
		{"throttles", "source = \"ip3\"\nrule = \"yahoo\"\nschedule = [1]\nmax_throttles = -1\n", 5, "negative"},
		{"unknown key", "source = \"ip3\"\nrule = \"yahoo\"\nschedule = [1]\nhourly = true\n", 5, `unknown key "hourly"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := warmupSources + "[[warmup]]\n" + tc.doc
			_, err := Parse("bad.toml", []byte(doc))
			if err == nil {
				t.Fatal("accepted")
			}
			prefix := "bad.toml:" + strconv.Itoa(9+tc.line) + ": "
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(l, prefix) && strings.Contains(l, tc.want) {
					return
				}
			}
			t.Fatalf("no line starts with %q and contains %q:\n%v", prefix, tc.want, err)
		})
	}
}
