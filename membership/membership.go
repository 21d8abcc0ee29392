// Package membership is the one record in Redis of the nodes of a
// cluster: who is alive, what each node keeps alive with its heartbeat
// (its connection leases), and the cluster's epoch. Quota's degraded mode
// and `penstock cluster status` read the same record, with the same rule.
//
// The record is the hash <prefix>nodes: field = node name, value =
// "<Redis server ms> <ttl ms> <JSON Info>". A beat is one Lua script: it
// stamps the node's entry with Redis time (server time, not the nodes'
// clocks, decides liveness), gives each of the node's leases (members of
// sorted sets scored by their expiry) a new expiry of now + ttl, checks
// the epoch, drops entries silent for an hour (or ten TTLs if longer), and
// answers with every entry left. A node is live while its last beat is
// younger than its own TTL; a node that stops without leaving (a crash)
// is therefore gone within its TTL, and so are its leases.
//
// The epoch (<prefix>epoch) is a random value the first beat of a cluster
// creates. A beat that finds another epoch than the node's, or none,
// tells the node that Redis lost its data (a restart without
// persistence): quota then waits before trusting the shared counts.
//
// Leave removes the node's entry and leases at once (a clean stop).
package membership

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every Redis key and channel of Penstock.
const DefaultPrefix = "penstock:"

// dropAfter: entries silent for this long are removed from the record.
const dropAfter = time.Hour

// Info is what a node tells about itself with each beat.
type Info struct {
	Started time.Time `json:"started"`
	Sources []string  `json:"sources,omitempty"`
	Mode    string    `json:"mode,omitempty"` // quota mode: shared, degraded, rejoining
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid"`
}

// Member is one node as the record shows it.
type Member struct {
	Node     string        `json:"node"`
	Live     bool          `json:"live"`
	LastSeen time.Time     `json:"last_seen"`
	Age      string        `json:"age"` // since the last beat, by Redis time
	TTL      time.Duration `json:"-"`   // the node's own: live while Age <= TTL
	Started  time.Time     `json:"started"`
	Sources  []string      `json:"sources,omitempty"`
	Mode     string        `json:"quota_mode,omitempty"`
	Host     string        `json:"host,omitempty"`
	PID      int           `json:"pid,omitempty"`
}

// Options configure a Registry.
type Options struct {
	// Node names this node; unique per cluster.
	Node string
	// Prefix of the Redis keys (default DefaultPrefix).
	Prefix string
	// TTL: the node is gone, and its leases expire, this long after its
	// last beat.
	TTL time.Duration
	// Info is shown with the node (Host, PID and Started default to this
	// process's).
	Info Info
}

// Registry is this node's entry in the record.
type Registry struct {
	c      *redis.Client
	script *redis.Script
	opts   Options
}

// New returns the registry of node opts.Node on c. It writes nothing:
// the first Beat does.
func New(c *redis.Client, opts Options) (*Registry, error) {
	if opts.Node == "" || strings.ContainsAny(opts.Node, " \t\r\n") {
		return nil, fmt.Errorf("membership: node name %q must be set and hold no white space", opts.Node)
	}
	if opts.TTL < time.Millisecond {
		return nil, fmt.Errorf("membership: TTL %s is too short", opts.TTL)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Info.Started.IsZero() {
		opts.Info.Started = time.Now()
	}
	if opts.Info.Host == "" {
		opts.Info.Host, _ = os.Hostname()
	}
	if opts.Info.PID == 0 {
		opts.Info.PID = os.Getpid()
	}
	return &Registry{c: c, script: redis.NewScript(beatScriptSrc), opts: opts}, nil
}

// Key is the record's hash.
func Key(prefix string) string { return prefixOr(prefix) + "nodes" }

// EpochKey is the key of the cluster's epoch.
func EpochKey(prefix string) string { return prefixOr(prefix) + "epoch" }

func prefixOr(p string) string {
	if p == "" {
		return DefaultPrefix
	}
	return p
}

// EpochKey is the key of the cluster's epoch, for scripts that check it.
func (r *Registry) EpochKey() string { return EpochKey(r.opts.Prefix) }

// Lease is one member of a sorted set that the node's beats keep alive.
type Lease struct{ Set, Member string }

// Epoch says what a beat found of the cluster's epoch.
type Epoch int

const (
	EpochSame    Epoch = iota // the one the node gave
	EpochOther                // another one: Redis lost its data, or the node gave none
	EpochCreated              // none: this beat created it
)

// Beat is what one beat saw.
type Beat struct {
	Now     int64 // Redis server time, ms
	Epoch   string
	State   Epoch
	Members []Member // sorted by name, this node included
	// Found[i]: leases[i] was still in its set (not expired or lost).
	Found []bool
}

// beatScriptSrc: KEYS: nodes, epoch, lease sets... ARGV: node, ttl ms,
// epoch, new epoch, info JSON, drop-after ms, lease members...
// Returns {server ms, epoch state, epoch, {node, value, ...}, {1 if the
// lease was there, 0 if it was added, ...}}.
//
//go:embed lua/beat.lua
var beatScriptSrc string

// Beat stamps the node's entry with mode in its info, renews leases and
// checks epoch (the node's last known, "" if none), in one round trip.
func (r *Registry) Beat(ctx context.Context, epoch, mode string, leases []Lease) (Beat, error) {
	info := r.opts.Info
	info.Mode = mode
	js, err := json.Marshal(info)
	if err != nil {
		return Beat{}, err
	}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	keys := make([]string, 0, 2+len(leases))
	keys = append(keys, Key(r.opts.Prefix), r.EpochKey())
	args := make([]any, 0, 6+len(leases))
	args = append(args, r.opts.Node, r.opts.TTL.Milliseconds(), epoch, hex.EncodeToString(nb[:]), string(js), dropAfter.Milliseconds())
	for _, l := range leases {
		keys = append(keys, l.Set)
		args = append(args, l.Member)
	}
	v, err := r.script.Run(ctx, r.c, keys, args...).Slice()
	if err != nil {
		return Beat{}, err
	}
	b, err := parseBeat(v)
	if err == nil && len(b.Found) != len(leases) {
		err = fmt.Errorf("membership: beat answered for %d of %d leases", len(b.Found), len(leases))
	}
	return b, err
}

func parseBeat(v []any) (Beat, error) {
	var b Beat
	if len(v) != 5 {
		return b, fmt.Errorf("membership: beat answered %d values", len(v))
	}
	now, ok1 := v[0].(int64)
	state, ok2 := v[1].(int64)
	epoch, ok3 := v[2].(string)
	list, ok4 := v[3].([]any)
	found, ok5 := v[4].([]any)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || len(list)%2 != 0 {
		return b, fmt.Errorf("membership: beat answered %v", v)
	}
	b.Now, b.State, b.Epoch = now, Epoch(state), epoch
	for i := 0; i+1 < len(list); i += 2 {
		name, _ := list[i].(string)
		val, _ := list[i+1].(string)
		if m, ok := parseMember(now, name, val); ok {
			b.Members = append(b.Members, m)
		}
	}
	sortMembers(b.Members)
	for _, f := range found {
		n, _ := f.(int64)
		b.Found = append(b.Found, n == 1)
	}
	return b, nil
}

// parseMember reads one entry of the record at Redis time now (ms): the
// one place that decides liveness.
func parseMember(now int64, name, val string) (Member, bool) {
	msStr, rest, ok1 := strings.Cut(val, " ")
	ttlStr, js, ok2 := strings.Cut(rest, " ")
	ms, err1 := strconv.ParseInt(msStr, 10, 64)
	ttl, err2 := strconv.ParseInt(ttlStr, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return Member{}, false
	}
	var info Info
	_ = json.Unmarshal([]byte(js), &info) // the info is for show: liveness does not need it
	age := time.Duration(now-ms) * time.Millisecond
	return Member{Node: name, Live: now-ms <= ttl, LastSeen: time.UnixMilli(ms), Age: age.Round(100 * time.Millisecond).String(),
		TTL: time.Duration(ttl) * time.Millisecond, Started: info.Started, Sources: info.Sources, Mode: info.Mode,
		Host: info.Host, PID: info.PID}, true
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Node < ms[j].Node })
}

// Leave removes the node's entry and its leases.
func (r *Registry) Leave(ctx context.Context, leases []Lease) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, l := range leases {
			p.ZRem(ctx, l.Set, l.Member)
		}
		p.HDel(ctx, Key(r.opts.Prefix), r.opts.Node)
		return nil
	})
	return err
}

// Read returns every node of the record, live or not, sorted by name:
// what an observer (cluster status) sees.
func Read(ctx context.Context, c *redis.Client, prefix string) ([]Member, error) {
	var tc *redis.TimeCmd
	var hc *redis.MapStringStringCmd
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		tc = p.Time(ctx)
		hc = p.HGetAll(ctx, Key(prefix))
		return nil
	}); err != nil {
		return nil, err
	}
	now := tc.Val().UnixMilli()
	var out []Member
	for name, v := range hc.Val() {
		if m, ok := parseMember(now, name, v); ok {
			out = append(out, m)
		}
	}
	sortMembers(out)
	return out, nil
}

// Live returns the names of the live members.
func Live(ms []Member) []string {
	var out []string
	for _, m := range ms {
		if m.Live {
			out = append(out, m.Node)
		}
	}
	return out
}
