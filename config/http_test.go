package config

import (
	"strings"
	"testing"
	"time"
)

func TestHTTPKeys(t *testing.T) {
	c, err := Parse("ok.toml", []byte("[http]\ntoken = \"t\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.MaxConnections != 512 || c.HTTP.IdleTimeout.Std() != time.Minute || c.HTTP.MetricsOpen || c.HTTP.MetricsToken != "" {
		t.Errorf("[http] defaults: %+v", c.HTTP)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[http]\nmetrics_open = true\nmetrics_token = \"m\"\n", "ok.toml:2: [http] metrics_open"},
		{"[http]\nmax_connections = 0\n", "ok.toml:2: [http] max_connections"},
		{"[http]\nidle_timeout = \"0s\"\n", "ok.toml:2: [http] idle_timeout"},
	} {
		_, err := Parse("ok.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %s", tc.doc, err, tc.want)
		}
	}
}
