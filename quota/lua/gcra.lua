if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {-1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local room = tau - (tat - now)
if room < 0 then return {0, tat - tau - now} end
local n = math.min(math.floor(room / T) + 1, tonumber(ARGV[3]))
tat = tat + n * T
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
return {n, 0}
