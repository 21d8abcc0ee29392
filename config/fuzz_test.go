package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse decodes arbitrary TOML strictly: nothing may panic, an error
// names the file, and an accepted configuration survives the round trip
// through WriteEffective (what `penstock check` prints parses back to the
// same configuration).
func FuzzParse(f *testing.F) {
	for _, s := range []string{fullConfig, "", "[server]\nhostname = 1\n", "[smtp]\nallowed_networks = [\"0.0.0.0/0\"]\n",
		"[[mx_rule]]\nname = \"g\"\nmx = \"*.google.com\"\nmax_connections = 3\n", "[delivery]\nretry = [\"5m\", \"-1h\"]\n",
		"[flow_control]\nerror_ratio = 1e400\n", "[dns]\nnameservers = [\"[::1]:53\", \"x\"]\n", "a = 1\n[[a]]\n", "[server\n",
		"[quarantine]\nreset_after = \"30d\"\n", "[[bounce_rule]]\npattern = \"(\"\n", "[cluster]\nlease_ttl = \"0s\"\n",
		"[delivery]\nvalidity = \"99999999999999h\"\n", "[smtp]\nmax_message_size = -1\n", "\xef\xbb\xbf[server]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := c.WriteEffective(&buf); err != nil {
			t.Fatalf("WriteEffective: %v", err)
		}
		back, err := Parse("effective.toml", buf.Bytes())
		if err != nil {
			t.Fatalf("the effective configuration does not parse: %v\n%s", err, buf.String())
		}
		if !reflect.DeepEqual(comparable(back), comparable(c)) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v\n%s", comparable(back), comparable(c), buf.String())
		}
	})
}
