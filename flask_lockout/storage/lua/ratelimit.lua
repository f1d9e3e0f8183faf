-- Sliding-window counters for one key and several limits, on server time.
-- Counts the hit against every limit only if every limit allows it.
-- KEYS[i] hash (w window index, c current count, p previous count), one per
-- window of every key; ARGV: how many leading windows report their allowance
-- (the client's own: ip keys come first), then count_1, period_ms_1,
-- count_2, period_ms_2, ...
-- Returns allowed, remaining, retry ms, limit, reset ms and the 0-based
-- position of the deciding window, as one string of integers; the limit is 0
-- when no reported window decided (an allowed hit on account keys only).
-- For guard.lua, a refusal also returns its retry ms as a number.
-- Mirrors flask_lockout.limits.sliding_window_decision, in milliseconds.
-- The reset reported is the time left in the current window, or on a
-- refusal the wait itself, so RateLimit-Reset agrees with Retry-After.
-- now: the server time in ms when guard.lua calls this body, else nil.
if redis.replicate_commands then redis.replicate_commands() end
-- Called by guard.lua (which hands in the time), it may return more than
-- one value; alone, one (a client may read them all as a list).
local for_guard = now ~= nil
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local reported = tonumber(ARGV[1])
local allowed = true
local best_remaining, best_limit, best_reset, best_i = nil, 0, 0, 1
local worst_wait, worst_limit, worst_i = -1, 0, 1
local plans = {}

for i = 1, #KEYS do
  local count = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local index = math.floor(now / period)
  local h = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local w, cur, prev = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
  -- The previous window's count as text, for a window that moved on.
  local prev_text = '0'
  if w == index - 1 then
    prev, cur, prev_text = cur, 0, h[2] or '0'
  elseif w ~= index then
    prev, cur = 0, 0
  end
  local elapsed = now - index * period
  local weighted = prev * (period - elapsed) / period + cur
  if weighted + 1 <= count then
    local remaining = math.max(0, math.floor(count - 1 - weighted + 1e-9))
    if i <= reported and (best_remaining == nil or remaining < best_remaining) then
      best_remaining, best_limit, best_i = remaining, count, i
      best_reset = period - elapsed
    end
  else
    allowed = false
    local wait
    if cur + 1 > count then
      wait = (period - elapsed) + period * (1 - (count - 1) / cur)
    else
      wait = period * (1 - (count - 1 - cur) / prev) - elapsed
    end
    wait = math.max(wait, 1)
    if wait > worst_wait then
      worst_wait, worst_limit, worst_i = wait, count, i
    end
  end
  plans[i] = {index, prev_text, period, w ~= index}
end

if not allowed then
  local retry_ms = math.ceil(worst_wait)
  local refused = string.format('0 0 %d %d %d %d', retry_ms, worst_limit,
    retry_ms, worst_i - 1)
  if for_guard then return refused, retry_ms end
  return refused
end
-- Numbers become text only for a new window: within one, a count of one
-- more is all that changes, and the expiry stays where it was set. A limit
-- named twice ("5/min;5/minute") is one window, counted once.
local counted = {}
for i = 1, #KEYS do
  local plan = plans[i]
  if not counted[KEYS[i]] then
    counted[KEYS[i]] = true
    if plan[4] then
      redis.call('HSET', KEYS[i], 'w', string.format('%d', plan[1]), 'c', '1',
        'p', plan[2])
      redis.call('PEXPIREAT', KEYS[i],
        string.format('%d', (plan[1] + 2) * plan[3]))
    else
      redis.call('HINCRBY', KEYS[i], 'c', '1')
    end
  end
end
return string.format('1 %d 0 %d %d %d', best_remaining or 0, best_limit,
  math.ceil(best_reset), best_i - 1)
