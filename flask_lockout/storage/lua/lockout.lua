-- Login lockout: one decision per call, on Redis server time.
-- KEYS[1] state hash (f failures, ws window start, n lock number,
--         lu locked until, lf last failure; times in ms)
-- KEYS[2] sorted set of reservations: token -> expiry (ms)
-- ARGV: op, max_failures, window_ms, reset_after_ms, base_ms, multiplier,
--       max_ms, schedule (comma-separated ms, or ""), token, reservation_ms
if redis.replicate_commands then redis.replicate_commands() end
local op = ARGV[1]
local max_failures = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local reset_after_ms = tonumber(ARGV[4])
local base_ms = tonumber(ARGV[5])
local multiplier = tonumber(ARGV[6])
local max_ms = tonumber(ARGV[7])
local token = ARGV[9]

-- Neither needs the clock or the state.
if op == 'release' or op == 'success' then
  if token ~= '' then redis.call('ZREM', KEYS[2], token) end
  if op == 'success' then redis.call('DEL', KEYS[1]) end
  return {0, 0, 0, 0}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local h = redis.call('HMGET', KEYS[1], 'f', 'ws', 'n', 'lu', 'lf')
local f = tonumber(h[1]) or 0
local ws = tonumber(h[2]) or 0
local n = tonumber(h[3]) or 0
local lu = tonumber(h[4]) or 0
local lf = tonumber(h[5]) or 0

local function state_expires()
  if n > 0 then return math.max(lf + reset_after_ms, lu) end
  if f > 0 then return ws + window_ms end
  return 0
end

if now >= state_expires() then
  f, n, lu = 0, 0, 0
end

local function retry_after()
  if lu > now then return math.ceil((lu - now) / 1000) end
  return 0
end

local function lock_ms(number)
  if ARGV[8] ~= '' then
    local schedule = {}
    for part in string.gmatch(ARGV[8], '[^,]+') do
      schedule[#schedule + 1] = tonumber(part)
    end
    return schedule[math.min(number, #schedule)]
  end
  return math.min(base_ms * multiplier ^ (number - 1), max_ms)
end

local function reply()
  local locked = 0
  if lu > now then locked = 1 end
  return {locked, retry_after(), f, n}
end

if op == 'status' then
  return reply()
end

if op == 'failure' then
  if token ~= '' then redis.call('ZREM', KEYS[2], token) end
  if lu <= now then
    lf = now
    if n > 0 then
      n = n + 1
      lu = now + math.floor(lock_ms(n) + 0.5)
    else
      if f == 0 then ws = now end
      f = f + 1
      if f >= max_failures then
        f = 0
        n = 1
        lu = now + math.floor(lock_ms(1) + 0.5)
      end
    end
    redis.call('HSET', KEYS[1], 'f', f, 'ws', ws, 'n', n, 'lu', lu, 'lf', lf)
    redis.call('PEXPIREAT', KEYS[1], state_expires())
  end
  return reply()
end

if op == 'reserve' then
  if lu > now then return {0, 1, retry_after()} end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  -- On probation the next failure locks, so one attempt at a time.
  local budget = max_failures - f
  if n > 0 then budget = 1 end
  if redis.call('ZCARD', KEYS[2]) >= budget then
    local soonest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    local wait = 1
    if soonest[2] then wait = math.max(1, math.ceil((tonumber(soonest[2]) - now) / 1000)) end
    return {0, 0, wait}
  end
  local expires = now + tonumber(ARGV[10])
  redis.call('ZADD', KEYS[2], expires, token)
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[2], math.max(expires, tonumber(last[2])))
  return {1, 0, 0}
end

return redis.error_reply('unknown lockout operation ' .. tostring(op))
