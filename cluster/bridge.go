package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/redisbus"
)

// BridgeOptions configure a Bridge.
type BridgeOptions struct {
	// Node names this node; the same name as its quota store's.
	Node string
	// Prefix of the Redis keys and channels (default DefaultPrefix).
	Prefix string
	// Timeout bounds each round trip (default 2s).
	Timeout time.Duration
	// Adopt applies a flow-control change decided on another node
	// (flow.Controller.Adopt); nil: changes are not received.
	Adopt func(flow.Change)
	// Windows shares flow control's error windows through Redis
	// (flow.Controller, ShareWindows called); nil: not shared.
	Windows Windows
	// SyncInterval between two window syncs (default 1s).
	SyncInterval time.Duration
	Logger       *slog.Logger
}

func (o *BridgeOptions) defaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
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

// Bridge carries flow-control decisions between this node and the others.
type Bridge struct {
	c       *redis.Client
	bus     *redisbus.Bus
	opts    BridgeOptions
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	out     chan flowMsg
	closed  atomic.Bool
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
	// susp shares tenant and campaign suspensions (ShareSuspensions).
	susp *suspShare
}

// flowMsg is what goes on <prefix>flow and into <prefix>flow:state.
type flowMsg struct {
	Node   string      `json:"node"`
	Change flow.Change `json:"change"`
}

// StartBridge starts the flow publisher and, with opts.Adopt, subscribes
// to the other nodes' changes on bus. Close stops it.
func StartBridge(c *redis.Client, bus *redisbus.Bus, opts BridgeOptions) (*Bridge, error) {
	if opts.Node == "" {
		return nil, errors.New("cluster: a node needs a name")
	}
	opts.defaults()
	b := &Bridge{c: c, bus: bus, opts: opts, log: opts.Logger, out: make(chan flowMsg, 1024)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.run()
	if opts.Windows != nil {
		b.windowScript = redis.NewScript(windowScriptSrc)
		b.wg.Add(1)
		go b.windowSyncer()
	}
	if opts.Adopt != nil {
		err := bus.Subscribe(b.channel(), redisbus.Handler{Message: func(_, payload string) { b.receive(payload) }, Subscribed: b.loadStates})
		if err != nil {
			b.cancel()
			b.wg.Wait()
			return nil, err
		}
	}
	return b, nil
}

func (b *Bridge) channel() string { return b.opts.Prefix + "flow" }

// Close stops the publisher and the subscription.
func (b *Bridge) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if b.opts.Adopt != nil {
		b.bus.Unsubscribe(b.channel())
	}
	if b.susp != nil {
		b.bus.Unsubscribe(b.suspKey())
	}
	b.cancel()
	b.wg.Wait()
	return nil
}

// Adopted returns how many flow changes of other nodes this node applied.
func (b *Bridge) Adopted() int64 { return b.adopted.Load() }

// PublishFlow queues a local flow-control change for the other nodes. It
// never blocks: with the queue full (Redis stalled) the change is dropped
// and counted.
func (b *Bridge) PublishFlow(ch flow.Change) {
	if b.closed.Load() {
		return
	}
	select {
	case b.out <- flowMsg{Node: b.opts.Node, Change: ch}:
	default:
		if b.dropped.Add(1) == 1 {
			b.log.Error("cluster: flow-control changes not shared: the publish queue is full (Redis stalled?)", "node", b.opts.Node)
		}
	}
}

// run publishes the local changes.
func (b *Bridge) run() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case m := <-b.out:
			b.publish(m)
		}
	}
}

func (b *Bridge) publish(m flowMsg) {
	js, err := json.Marshal(m)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	state := b.opts.Prefix + "flow:state"
	_, err = b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if m.Change.To == flow.Normal {
			p.HDel(ctx, state, stateField(m.Change))
		} else {
			p.HSet(ctx, state, stateField(m.Change), js)
		}
		p.Publish(ctx, b.channel(), js)
		return nil
	})
	if err != nil && b.ctx.Err() == nil {
		b.log.Warn("cluster: flow-control change not shared", "site", m.Change.Site, "to", m.Change.To, "err", err)
	}
}

// staleState: saved states older than this are not adopted (flow control
// would have recovered from them long since).
const staleState = time.Hour

func (b *Bridge) receive(payload string) {
	var m flowMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.Node == b.opts.Node || m.Change.Site == "" {
		return
	}
	b.adopted.Add(1)
	b.opts.Adopt(m.Change)
}

// loadStates adopts the saved states after each (re)subscription, which
// covers changes published while disconnected. It runs on the bus's
// goroutine, so that no message received later is overtaken by an older
// saved state.
func (b *Bridge) loadStates() {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	all, err := b.c.HGetAll(ctx, b.opts.Prefix+"flow:state").Result()
	if err != nil {
		return
	}
	now := time.Now()
	for site, js := range all {
		var m flowMsg
		if json.Unmarshal([]byte(js), &m) != nil || m.Node == b.opts.Node {
			continue
		}
		c := m.Change
		if now.Sub(c.Time) > staleState || (c.To == flow.Suspended && !c.Until.IsZero() && now.After(c.Until)) {
			continue
		}
		if !strings.EqualFold(site, stateField(c)) {
			continue
		}
		b.adopted.Add(1)
		b.opts.Adopt(c)
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
