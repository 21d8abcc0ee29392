package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/redisbus"
)

// Suspensions is the queue's side of shared tenant and campaign
// suspensions (queue.Queue). Keys are "tenant/NAME" or "delivery/ID".
type Suspensions interface {
	// ShareSuspensions hands every later local change to share, before
	// it applies locally.
	ShareSuspensions(share func(key, who string, on bool))
	// AdoptSuspension applies one change decided on another node.
	AdoptSuspension(key, who string, on bool)
	// AdoptSuspensions makes the whole set the cluster's.
	AdoptSuspensions(all map[string]string)
	// Suspensions returns the node's set.
	Suspensions() map[string]string
}

// suspRetry is how long an unshared suspension waits before it is sent
// again (a reconnection of the bus sends it at once).
const suspRetry = 5 * time.Second

// suspToken is the field of <prefix>suspended that tells a hash kept by
// Redis from a new one (it is no suspension key: those have a "/").
const suspToken = "token"

// suspVersion is the field of <prefix>suspended counted up by each
// change: Redis orders the changes of all nodes, and a node drops a
// message older than what it already has for that key.
const suspVersion = "version"

// suspScriptSrc: KEYS: the hash (also the channel). ARGV: node, then key,
// who, "1" (suspend) or "0" (resume) for each change. Each change counts
// the version up, is written, and is published with its version. Returns
// the versions.
const suspScriptSrc = `
local out = {}
for i = 2, #ARGV, 3 do
  local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
  local on = ARGV[i + 2] == '1'
  if on then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
  redis.call('PUBLISH', KEYS[1], cjson.encode({node = ARGV[1], key = ARGV[i], who = ARGV[i + 1], on = on, version = v}))
  table.insert(out, v)
end
return out
`

// suspMsg is what goes on <prefix>suspended.
type suspMsg struct {
	Node string `json:"node"`
	Key  string `json:"key"`
	Who  string `json:"who"`
	On   bool   `json:"on"`
	// Version orders the changes (suspVersion).
	Version int64 `json:"version"`
}

// suspShare shares the suspensions of one node. Lock order: flushMu, then
// pendMu, then the queue's own lock (AdoptSuspensions); the queue calls
// share (pendMu) before it takes its lock, never inside it.
type suspShare struct {
	b       *Bridge
	q       Suspensions
	kick    chan struct{}
	flushMu sync.Mutex // one round trip at a time, in order
	pendMu  sync.Mutex
	pending map[string]suspMsg // local changes not yet in Redis, latest per key
	seen    map[string]int64   // the version of each key's last change applied or sent (pendMu)
	floor   int64              // the version of the hash last adopted (pendMu)
	down    atomic.Bool
	token   string // the hash's token when last read (load; bus goroutine)
	script  *redis.Script
}

func (b *Bridge) suspKey() string { return b.opts.Prefix + "suspended" }

// ShareSuspensions shares q's tenant and campaign suspensions with the
// other nodes: each local change is written into <prefix>suspended (key ->
// who; deleted on resume) and published on the channel of that name; the
// other nodes' changes are applied to q; at each (re)subscription the
// node first sends what it could not send while Redis was away, then
// adopts the whole hash, which is the truth in a cluster. Call it once,
// before Close.
func (b *Bridge) ShareSuspensions(q Suspensions) error {
	if b.susp != nil {
		return errors.New("cluster: suspensions already shared")
	}
	s := &suspShare{b: b, q: q, kick: make(chan struct{}, 1), pending: map[string]suspMsg{}, seen: map[string]int64{},
		script: redis.NewScript(suspScriptSrc)}
	b.susp = s
	q.ShareSuspensions(s.share)
	b.wg.Add(1)
	go s.run()
	err := b.bus.Subscribe(b.suspKey(), redisbus.Handler{Message: func(_, payload string) { s.receive(payload) }, Subscribed: s.load})
	if err != nil {
		b.susp = nil
		return err
	}
	return nil
}

// share queues a local change; it never blocks on Redis.
func (s *suspShare) share(key, who string, on bool) {
	s.pendMu.Lock()
	s.pending[key] = suspMsg{Node: s.b.opts.Node, Key: key, Who: who, On: on}
	s.pendMu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run sends the local changes, again every suspRetry while Redis fails.
func (s *suspShare) run() {
	defer s.b.wg.Done()
	var retry <-chan time.Time
	for {
		loud := true
		select {
		case <-s.b.ctx.Done():
			return
		case <-s.kick:
		case <-retry:
			loud = false
		}
		s.flushMu.Lock()
		ok := s.flush(loud)
		s.flushMu.Unlock()
		retry = nil
		if !ok {
			retry = time.After(suspRetry)
		}
	}
}

// flush sends the pending changes, with flushMu held. They stay pending
// until Redis has them, so that an older message of another node met
// meanwhile is not applied over them; loud logs a failure.
func (s *suspShare) flush(loud bool) bool {
	s.pendMu.Lock()
	batch := maps.Clone(s.pending)
	s.pendMu.Unlock()
	if len(batch) == 0 {
		return true
	}
	b := s.b
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	if err := s.send(ctx, batch); err != nil {
		if b.ctx.Err() != nil {
			return true
		}
		s.down.Store(true)
		if loud {
			b.log.Error("cluster: suspension not shared: it applies on this node only, and is sent when Redis answers",
				"node", b.opts.Node, "keys", keysOf(batch), "err", err)
		}
		return false
	}
	s.pendMu.Lock()
	for k, m := range batch {
		if s.pending[k] == m {
			delete(s.pending, k)
		}
	}
	s.pendMu.Unlock()
	if s.down.Swap(false) {
		b.log.Warn("cluster: suspensions shared again", "node", b.opts.Node, "keys", keysOf(batch))
	}
	return true
}

// load runs on the bus's goroutine after each (re)subscription: what is
// pending is sent first (adopting the hash without it would undo it
// here), then the hash, with the changes made meanwhile on top, becomes
// the node's set. If Redis fails, the node keeps its own set.
//
// A Redis that lost its data (restarted empty) must not read as "every
// suspension resumed": the hash carries a token, set by whoever finds it
// missing. A node that creates it, or finds another token than the one it
// last saw, adds its own suspensions to the hash (and publishes them)
// instead of dropping them.
func (s *suspShare) load() {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if !s.flush(false) {
		return
	}
	b := s.b
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	var created *redis.BoolCmd
	var get *redis.MapStringStringCmd
	_, err := b.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		created = p.HSetNX(ctx, b.suspKey(), suspToken, newToken())
		get = p.HGetAll(ctx, b.suspKey())
		return nil
	})
	if err != nil {
		if b.ctx.Err() == nil {
			b.log.Warn("cluster: shared suspensions not read; this node keeps its own", "node", b.opts.Node, "err", err)
		}
		return
	}
	all := get.Val()
	token := all[suspToken]
	version, _ := strconv.ParseInt(all[suspVersion], 10, 64)
	delete(all, suspToken)
	delete(all, suspVersion)
	if created.Val() || (s.token != "" && token != s.token) {
		if !s.seed(ctx, all) {
			return
		}
	}
	s.token = token
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	s.floor = version
	clear(s.seen)
	for k, m := range s.pending {
		if m.On {
			all[k] = m.Who
		} else {
			delete(all, k)
		}
	}
	s.q.AdoptSuspensions(all)
}

// seed adds this node's suspensions missing from a new hash all to it
// and to all, and tells the other nodes.
func (s *suspShare) seed(ctx context.Context, all map[string]string) bool {
	b := s.b
	add := map[string]suspMsg{}
	for k, who := range s.q.Suspensions() {
		if _, ok := all[k]; !ok {
			add[k] = suspMsg{Node: b.opts.Node, Key: k, Who: who, On: true}
		}
	}
	if len(add) == 0 {
		return true
	}
	if err := s.send(ctx, add); err != nil {
		if b.ctx.Err() == nil {
			b.log.Warn("cluster: suspensions not given to a Redis that lost them; this node keeps its own", "node", b.opts.Node, "err", err)
		}
		return false
	}
	b.log.Warn("cluster: Redis had lost the shared suspensions; this node's given back", "node", b.opts.Node, "keys", keysOf(add))
	for k, m := range add {
		all[k] = m.Who
	}
	return true
}

// send writes the changes into the hash and publishes them (one script
// run), and notes their versions.
func (s *suspShare) send(ctx context.Context, batch map[string]suspMsg) error {
	keys := keysOf(batch)
	args := []any{s.b.opts.Node}
	for _, k := range keys {
		on := "0"
		if batch[k].On {
			on = "1"
		}
		args = append(args, k, batch[k].Who, on)
	}
	vs, err := s.script.Run(ctx, s.b.c, []string{s.b.suspKey()}, args...).Int64Slice()
	if err != nil {
		return err
	}
	s.pendMu.Lock()
	for i, k := range keys {
		if i < len(vs) {
			s.seen[k] = max(s.seen[k], vs[i])
		}
	}
	s.pendMu.Unlock()
	return nil
}

func newToken() string {
	var r [8]byte
	rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

func (s *suspShare) receive(payload string) {
	var m suspMsg
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.Node == s.b.opts.Node || m.Key == "" {
		return
	}
	// A local change of the same key not yet sent is newer: it will
	// overwrite this one everywhere.
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	if _, mine := s.pending[m.Key]; mine || m.Version <= s.floor || m.Version <= s.seen[m.Key] {
		return
	}
	s.seen[m.Key] = m.Version
	s.q.AdoptSuspension(m.Key, m.Who, m.On)
}

func keysOf(m map[string]suspMsg) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
