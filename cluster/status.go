package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/membership"
	"github.com/penstock-mta/penstock/quota"
)

// Member is one node as the membership record shows it.
type Member = membership.Member

// Members reads the membership record: every node seen within the last
// hour, live or not (a beat within its own lease TTL, by Redis time),
// sorted by name.
func Members(ctx context.Context, c *redis.Client, prefix string) ([]Member, error) {
	return membership.Read(ctx, c, prefix)
}

// Holding is the live leases one node holds under one quota key.
type Holding struct {
	Node  string `json:"node"`
	Rule  string `json:"rule"`
	Key   string `json:"key"`
	Conns int    `json:"connections"`
}

// maxLeaseKeys bounds the scan of lease sets.
const maxLeaseKeys = 100000

// Leases counts the unexpired leases per node and quota key, sorted by
// rule, key and node.
func Leases(ctx context.Context, c *redis.Client, prefix string) ([]Holding, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	now, err := c.Time(ctx).Result()
	if err != nil {
		return nil, err
	}
	var keys []string
	var cursor uint64
	for i := 0; i < maxLeaseKeys/100; i++ {
		ks, next, err := c.Scan(ctx, cursor, quota.LeasePattern(prefix), 100).Result()
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
		cursor = next
		if cursor == 0 || len(keys) >= maxLeaseKeys {
			break
		}
	}
	cmds := make([]*redis.StringSliceCmd, len(keys))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.ZRangeByScore(ctx, k, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf"})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	type keyNode struct {
		key  quota.Key
		node string
	}
	count := map[keyNode]int{}
	for i, k := range keys {
		qk, err := quota.LeaseKey(prefix, k)
		if err != nil {
			continue // not a lease set of ours
		}
		for _, m := range cmds[i].Val() {
			count[keyNode{qk, quota.LeaseNode(m)}]++
		}
	}
	var out []Holding
	for kn, n := range count {
		out = append(out, Holding{Node: kn.node, Rule: kn.key.Rule(), Key: kn.key.String(), Conns: n})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Node < b.Node
	})
	return out, nil
}

// Status is what `penstock cluster status` shows.
type Status struct {
	Redis   string    `json:"redis"`
	Members []Member  `json:"nodes"`
	Leases  []Holding `json:"leases"`
}

// ReadStatus reads the membership and the leases.
func ReadStatus(ctx context.Context, c *redis.Client, prefix string) (Status, error) {
	st := Status{Redis: c.Options().Addr}
	var err error
	if st.Members, err = Members(ctx, c, prefix); err != nil {
		return st, err
	}
	if st.Leases, err = Leases(ctx, c, prefix); err != nil {
		return st, err
	}
	return st, nil
}

// PerRule sums the leases of each node per MX rule.
func (s Status) PerRule() map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, h := range s.Leases {
		if out[h.Rule] == nil {
			out[h.Rule] = map[string]int{}
		}
		out[h.Rule][h.Node] += h.Conns
	}
	return out
}

// WriteText prints the status as tables: nodes, then connections held
// per rule and node.
func (s Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Redis %s\n\n", s.Redis)
	fmt.Fprintln(tw, "NODE\tSTATE\tQUOTAS\tLAST SEEN\tSTARTED\tSOURCES")
	live := 0
	for _, m := range s.Members {
		state := "gone"
		if m.Live {
			state = "live"
			live++
		}
		mode := m.Mode
		if mode == "" {
			mode = "-"
		} else if mode != "shared" {
			mode = strings.ToUpper(mode)
		}
		src := strings.Join(m.Sources, ", ")
		if src == "" {
			src = "(system default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\t%s\n", m.Node, state, mode, m.Age, m.Started.UTC().Format(time.RFC3339), src)
	}
	fmt.Fprintf(tw, "\n%d live node(s)\n\n", live)
	per := s.PerRule()
	if len(per) == 0 {
		fmt.Fprintln(tw, "No connection leases held.")
		return tw.Flush()
	}
	nodes := map[string]bool{}
	for _, m := range s.Members {
		nodes[m.Node] = true
	}
	for _, byNode := range per {
		for n := range byNode {
			nodes[n] = true
		}
	}
	names := make([]string, 0, len(nodes))
	for n := range nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	rules := make([]string, 0, len(per))
	for r := range per {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	fmt.Fprintf(tw, "CONNECTIONS HELD (live leases)\nRULE\t%s\tTOTAL\n", strings.Join(names, "\t"))
	for _, r := range rules {
		total := 0
		cells := make([]string, len(names))
		for i, n := range names {
			cells[i] = strconv.Itoa(per[r][n])
			total += per[r][n]
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", r, strings.Join(cells, "\t"), total)
	}
	return tw.Flush()
}

// CLI is `penstock cluster status [-config F] [-json]`: it reads
// [cluster] from the configuration and prints the status.
func CLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, "usage: penstock cluster status [-config penstock.toml] [-json]")
		return 2
	}
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file with the [cluster] section")
	asJSON := fs.Bool("json", false, "print JSON")
	if fs.Parse(args[1:]) != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "penstock cluster status: -config is needed: the [cluster] redis URL is in the configuration file")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if cfg.Cluster.Redis == "" {
		fmt.Fprintf(stderr, "%s: [cluster] redis is not set: this node runs alone\n", *cfgPath)
		return 1
	}
	c, err := Dial(cfg.Cluster.Redis)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ReadStatus(ctx, c, "")
	if err != nil {
		fmt.Fprintf(stderr, "cluster status: Redis at %s: %v\n", c.Options().Addr, err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(st)
	} else {
		err = st.WriteText(stdout)
	}
	if err != nil && !errors.Is(err, io.ErrShortWrite) {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
