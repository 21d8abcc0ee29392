local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local drop = tonumber(ARGV[6])
local state = 0
local cur = redis.call('GET', KEYS[2])
if not cur then
  cur = ARGV[4]
  redis.call('SET', KEYS[2], cur)
  state = 2
elseif cur ~= ARGV[3] then
  state = 1
end
local found = {}
for i = 3, #KEYS do
  table.insert(found, 1 - redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 4]))
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
redis.call('HSET', KEYS[1], ARGV[1], now .. ' ' .. ttl .. ' ' .. ARGV[5])
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local ts, nt = string.match(all[i + 1], '^(%d+) (%d+) ')
  ts = tonumber(ts)
  nt = tonumber(nt)
  if ts == nil or nt == nil or now - ts > math.max(drop, 10 * nt) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
return {now, state, cur, out, found}
