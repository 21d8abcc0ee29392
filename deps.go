//go:build tools

package tools

import (
	_ "github.com/emersion/go-smtp"
	_ "github.com/emersion/go-message"
	_ "github.com/miekg/dns"
	_ "go.etcd.io/bbolt"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/redis/go-redis/v9"
	_ "golang.org/x/time/rate"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/cockroachdb/pebble"
)
