-- Fixed-window failure counter. The first failure starts the window; a
-- counter found without a TTL gets one, so no key is ever left permanent.
-- KEYS[1] counter; ARGV: op ("hit" or "status"), window_ms
local op = ARGV[1]
if op == 'hit' then
  local count = redis.call('INCR', KEYS[1])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    ttl = tonumber(ARGV[2])
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  return {count, ttl}
end
local count = tonumber(redis.call('GET', KEYS[1])) or 0
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return {count, ttl}
