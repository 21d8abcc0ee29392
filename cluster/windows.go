package cluster

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/flow"
)

// Windows is flow control's side of the shared error windows
// (flow.Controller): the counts this node added, the other nodes' counts
// to adopt, and the degraded mode.
type Windows interface {
	// ShareWindows starts keeping the counts to share (Join calls it).
	ShareWindows()
	PendingWindows(now time.Time) []flow.WindowCounts
	AdoptWindows(now time.Time, counts []flow.WindowCounts)
	WindowsDegraded()
	// Window is flow control's window: its 30 buckets are the slots.
	Window() time.Duration
}

// windowScriptSrc: KEYS: the window's hash. ARGV: node, the oldest slot
// still in the window, TTL (ms), then slot, attempts, errors for each
// bucket this node adds to. Fields are "slot:node:a" and "slot:node:e";
// fields of slots out of the window are deleted. Returns, for each slot
// the other nodes counted in, slot, attempts, errors.
const windowScriptSrc = `
local node = ARGV[1]
local minSlot = tonumber(ARGV[2])
for i = 4, #ARGV, 3 do
  redis.call('HINCRBY', KEYS[1], ARGV[i] .. ':' .. node .. ':a', ARGV[i + 1])
  if tonumber(ARGV[i + 2]) > 0 then
    redis.call('HINCRBY', KEYS[1], ARGV[i] .. ':' .. node .. ':e', ARGV[i + 2])
  end
end
local all = redis.call('HGETALL', KEYS[1])
local sums, order = {}, {}
for i = 1, #all, 2 do
  local slot, n, kind = string.match(all[i], '^(%d+):(.+):([ae])$')
  if slot == nil or tonumber(slot) < minSlot then
    redis.call('HDEL', KEYS[1], all[i])
  elseif n ~= node then
    if sums[slot] == nil then
      sums[slot] = {0, 0}
      table.insert(order, slot)
    end
    local k = 1
    if kind == 'e' then k = 2 end
    sums[slot][k] = sums[slot][k] + tonumber(all[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local out = {}
for _, s in ipairs(order) do
  table.insert(out, s)
  table.insert(out, sums[s][1])
  table.insert(out, sums[s][2])
end
return out
`

// windowKey is the hash of one window: a site's, or a (site, source)'s.
func (b *Bridge) windowKey(site, source string) string {
	return b.opts.Prefix + "flow:win:" + site + "|" + source
}

// windowSyncer runs syncWindows each SyncInterval until Close.
func (b *Bridge) windowSyncer() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			b.syncWindows(time.Now())
		}
	}
}

// syncWindows adds this node's new counts to the shared windows and
// hands the other nodes' counts to flow control, in one pipeline. When
// Redis fails, flow control drops the others' counts (each node judges by
// its own window, flagged) and this node keeps its counts for the next
// round, so that they are added once Redis is back.
func (b *Bridge) syncWindows(now time.Time) {
	w := b.opts.Windows
	pending := append(b.carry, w.PendingWindows(now)...)
	b.carry = nil
	if len(pending) == 0 {
		return
	}
	span := w.Window() / 30
	if span <= 0 {
		span = time.Second
	}
	minSlot := now.UnixNano()/int64(span) - 29
	ttl := (w.Window() + 2*span).Milliseconds()
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.Timeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(pending))
	send := func(p redis.Pipeliner) error {
		for i, wc := range pending {
			args := []any{b.opts.Node, minSlot, ttl}
			for _, s := range wc.Slots {
				args = append(args, s.Slot, s.Attempts, s.Errors)
			}
			cmds[i] = b.windowScript.EvalSha(ctx, p, []string{b.windowKey(wc.Site, wc.Source)}, args...)
		}
		return nil
	}
	_, err := b.c.Pipelined(ctx, send)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// First use on this server (or after a restart): load, retry once.
		if err = b.windowScript.Load(ctx, b.c).Err(); err == nil {
			_, err = b.c.Pipelined(ctx, send)
		}
	}
	if err != nil {
		if b.ctx.Err() != nil {
			return
		}
		w.WindowsDegraded()
		b.carry = keepCounts(pending)
		if !b.windowsDown.Swap(true) {
			b.log.Error("cluster: flow-control error windows not shared: each node judges by its own errors until Redis answers", "node", b.opts.Node, "err", err)
		}
		return
	}
	if b.windowsDown.Swap(false) {
		b.log.Warn("cluster: flow-control error windows shared again", "node", b.opts.Node)
	}
	others := make([]flow.WindowCounts, 0, len(pending))
	for i, wc := range pending {
		slots, err := parseSlots(cmds[i])
		if err != nil {
			continue
		}
		others = append(others, flow.WindowCounts{Site: wc.Site, Source: wc.Source, Slots: slots})
	}
	w.AdoptWindows(now, others)
}

// keepCounts keeps the entries that carry counts (to add them later).
func keepCounts(ws []flow.WindowCounts) []flow.WindowCounts {
	var out []flow.WindowCounts
	for _, wc := range ws {
		if len(wc.Slots) > 0 {
			out = append(out, wc)
		}
	}
	return out
}

func parseSlots(cmd *redis.Cmd) ([]flow.SlotCount, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return nil, err
	}
	out := make([]flow.SlotCount, 0, len(vals)/3)
	for i := 0; i+2 < len(vals); i += 3 {
		slot, err := strconv.ParseInt(fmt.Sprint(vals[i]), 10, 64)
		if err != nil {
			return nil, err
		}
		a, _ := vals[i+1].(int64)
		e, _ := vals[i+2].(int64)
		out = append(out, flow.SlotCount{Slot: slot, Attempts: int32(a), Errors: int32(e)})
	}
	return out, nil
}
