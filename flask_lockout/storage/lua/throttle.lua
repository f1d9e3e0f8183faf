-- Fixed-window failure counter. The first failure starts the window; a
-- counter found without a TTL gets one, so no key is ever left permanent.
-- KEYS[1] counter; ARGV: op ("hit" or "status"), window_ms
-- The window is [first failure, first failure + window): Redis keeps a key
-- through its last millisecond, so a counter with 0 ms left is over.
local op = ARGV[1]
local ttl = redis.call('PTTL', KEYS[1])
if ttl == 0 then
  redis.call('DEL', KEYS[1])
  ttl = -2
end
if op == 'hit' then
  local count = redis.call('INCR', KEYS[1])
  if ttl < 0 then
    ttl = tonumber(ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return {count, ttl}
end
if ttl == -2 then return {0, 0} end
return {tonumber(redis.call('GET', KEYS[1])) or 0, math.max(ttl, 0)}
