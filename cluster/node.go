package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/flow"
)

// Options configure a Node.
type Options struct {
	// Node names this node; the same name as its quota store's.
	Node string
	// Prefix of the Redis keys and channels (default DefaultPrefix).
	Prefix string
	// Sources lists this node's sources for the status ("name ip").
	Sources []string
	// Started is when the node started (default: now).
	Started time.Time
	// Interval between heartbeats (default 1s); TTL after which a silent
	// node is gone (default 3 intervals, at least 3s).
	Interval time.Duration
	TTL      time.Duration
	// Timeout bounds each round trip (default 2s).
	Timeout time.Duration
	// Mode returns the quota store's mode ("shared", "degraded",
	// "rejoining") for the heartbeat; nil: not reported.
	Mode func() string
	// Adopt applies a flow-control change decided on another node
	// (flow.Controller.Adopt); nil: changes are not received.
	Adopt func(flow.Change)
	// Windows shares flow control's error windows through Redis
	// (flow.Controller, with ShareWindows on); nil: not shared.
	Windows Windows
	// SyncInterval between two window syncs (default 1s).
	SyncInterval time.Duration
	Logger       *slog.Logger
}

func (o *Options) defaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Started.IsZero() {
		o.Started = time.Now()
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.TTL <= 0 {
		o.TTL = max(3*o.Interval, 3*time.Second)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Node is this node's membership heartbeat and its flow-control bridge.
type Node struct {
	c          *redis.Client
	beatScript *redis.Script
	opts       Options
	log        *slog.Logger
	ctx        context.Context
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	out        chan flowMsg
	ps         *redis.PubSub
	closed     atomic.Bool
	// down: the last heartbeat failed (logged once per transition).
	down    atomic.Bool
	dropped atomic.Int64
	// adopted counts changes received from other nodes, for tests and
	// status.
	adopted atomic.Int64
	// Shared error windows: the script, the counts a failed sync keeps
	// for the next (owned by the syncer goroutine), and whether the last
	// sync failed.
	windowScript *redis.Script
	carry        []flow.WindowCounts
	windowsDown  atomic.Bool
}

// heartbeat is the JSON part of a <prefix>nodes value.
type heartbeat struct {
	Started time.Time `json:"started"`
	Sources []string  `json:"sources,omitempty"`
	Mode    string    `json:"mode,omitempty"`
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid"`
}

// flowMsg is what goes on <prefix>flow and into <prefix>flow:state.
type flowMsg struct {
	Node   string      `json:"node"`
	Change flow.Change `json:"change"`
}

// Start writes the first heartbeat (an error is logged, not returned:
// Redis may come later) and starts the heartbeat, the flow publisher and
// the flow subscriber. Close stops them.
func Start(c *redis.Client, opts Options) (*Node, error) {
	if opts.Node == "" {
		return nil, errors.New("cluster: a node needs a name")
	}
	opts.defaults()
	n := &Node{c: c, beatScript: redis.NewScript(beatScriptSrc), opts: opts, log: opts.Logger, out: make(chan flowMsg, 1024)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.beat()
	n.wg.Add(2)
	go n.heartbeats()
	go n.publisher()
	if opts.Adopt != nil {
		n.ps = c.Subscribe(n.ctx, opts.Prefix+"flow")
		n.wg.Add(1)
		go n.subscriber()
	}
	if opts.Windows != nil {
		n.windowScript = redis.NewScript(windowScriptSrc)
		n.wg.Add(1)
		go n.windowSyncer()
	}
	return n, nil
}

// Close stops the goroutines and removes this node's heartbeat (a node
// that stops cleanly is gone at once, not after the TTL).
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	if n.ps != nil {
		n.ps.Close()
	}
	n.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Timeout)
	defer cancel()
	return n.c.HDel(ctx, n.opts.Prefix+"nodes", n.opts.Node).Err()
}

// Adopted returns how many flow changes of other nodes this node applied.
func (n *Node) Adopted() int64 { return n.adopted.Load() }

// beatScriptSrc: KEYS: nodes. ARGV: node, JSON, ms after which an entry is
// dropped. Stamps the heartbeat with Redis time.
const beatScriptSrc = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], now .. ' ' .. ARGV[2])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ts = tonumber(string.match(all[i + 1], '^(%d+) '))
  if ts == nil or now - ts > tonumber(ARGV[3]) then redis.call('HDEL', KEYS[1], all[i]) end
end
return now
`

// pruneAfter drops heartbeats of nodes gone for this long.
const pruneAfter = time.Hour

func (n *Node) beat() {
	hb := heartbeat{Started: n.opts.Started, Sources: n.opts.Sources, PID: os.Getpid()}
	hb.Host, _ = os.Hostname()
	if n.opts.Mode != nil {
		hb.Mode = n.opts.Mode()
	}
	js, _ := json.Marshal(hb)
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	err := n.beatScript.Run(ctx, n.c, []string{n.opts.Prefix + "nodes"}, n.opts.Node, string(js), pruneAfter.Milliseconds()).Err()
	switch {
	case err != nil && n.ctx.Err() == nil && !n.down.Swap(true):
		n.log.Error("cluster: heartbeat failed: this node drops out of the membership until Redis answers", "node", n.opts.Node, "err", err)
	case err == nil && n.down.Swap(false):
		n.log.Warn("cluster: heartbeat restored", "node", n.opts.Node)
	}
}

func (n *Node) heartbeats() {
	defer n.wg.Done()
	t := time.NewTicker(n.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.beat()
		}
	}
}

// PublishFlow queues a local flow-control change for the other nodes. It
// never blocks: with the queue full (Redis stalled) the change is dropped
// and counted.
func (n *Node) PublishFlow(ch flow.Change) {
	if n.closed.Load() {
		return
	}
	select {
	case n.out <- flowMsg{Node: n.opts.Node, Change: ch}:
	default:
		if n.dropped.Add(1) == 1 {
			n.log.Error("cluster: flow-control changes not shared: the publish queue is full (Redis stalled?)", "node", n.opts.Node)
		}
	}
}

func (n *Node) publisher() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case m := <-n.out:
			n.publish(m)
		}
	}
}

func (n *Node) publish(m flowMsg) {
	js, err := json.Marshal(m)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	state := n.opts.Prefix + "flow:state"
	_, err = n.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if m.Change.To == flow.Normal {
			p.HDel(ctx, state, stateField(m.Change))
		} else {
			p.HSet(ctx, state, stateField(m.Change), js)
		}
		p.Publish(ctx, n.opts.Prefix+"flow", js)
		return nil
	})
	if err != nil && n.ctx.Err() == nil {
		n.log.Warn("cluster: flow-control change not shared", "site", m.Change.Site, "to", m.Change.To, "err", err)
	}
}

// subscriber applies the other nodes' flow changes. go-redis reconnects
// and subscribes again after an error; each (re)subscription loads the
// saved states, which covers changes published while disconnected.
func (n *Node) subscriber() {
	defer n.wg.Done()
	backoff := 50 * time.Millisecond
	for n.ctx.Err() == nil {
		msg, err := n.ps.Receive(n.ctx)
		if n.ctx.Err() != nil {
			return
		}
		if err != nil {
			t := time.NewTimer(backoff)
			select {
			case <-n.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			n.receive(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				n.loadStates()
			}
		}
	}
}

// stateField is a change's field in <prefix>flow:state: the site, or
// "site source" for a source's state.
func stateField(ch flow.Change) string {
	if ch.Source == "" {
		return ch.Site
	}
	return ch.Site + " " + ch.Source
}

// staleState: saved states older than this are not adopted (flow control
// would have recovered from them long since).
const staleState = time.Hour

func (n *Node) receive(payload string) {
	var m flowMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.Node == n.opts.Node || m.Change.Site == "" {
		return
	}
	n.adopted.Add(1)
	n.opts.Adopt(m.Change)
}

func (n *Node) loadStates() {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Timeout)
	defer cancel()
	all, err := n.c.HGetAll(ctx, n.opts.Prefix+"flow:state").Result()
	if err != nil {
		return
	}
	now := time.Now()
	for site, js := range all {
		var m flowMsg
		if json.Unmarshal([]byte(js), &m) != nil || m.Node == n.opts.Node {
			continue
		}
		c := m.Change
		if now.Sub(c.Time) > staleState || (c.To == flow.Suspended && !c.Until.IsZero() && now.After(c.Until)) {
			continue
		}
		if !strings.EqualFold(site, stateField(c)) {
			continue
		}
		n.adopted.Add(1)
		n.opts.Adopt(c)
	}
}
