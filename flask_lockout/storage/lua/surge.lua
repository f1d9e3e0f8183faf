-- One scope's surge record on Redis server time; mirrors
-- flask_lockout.surge.SurgeRecord (which explains the rules), in ms.
-- KEYS[1]: the record hash: m the minute its counts belong to, f failures,
-- r attempts the allowance refused, n attempts it let through and s
-- successes from devices without a cookie in that minute; uf, df and us
-- the usual failures a minute, the day's and the usual such successes
-- (moving averages, as %.17g text); h until when the failures seen keep a
-- surge on, mu until when an operator's surge lasts, on 1 while a surge was
-- on at the last decision.
-- ARGV: op, min_failures, factor, cooldown_ms, then the op's own argument
-- (and, for check called from guard.lua, 'count' last: the reply then comes
-- with what guard.lua needs of it, see the check below):
--   check: 1 when the attempt is exempt from the allowance (a known device
--          or a passed challenge);
--   count, success: 1 for an attempt from a device without a cookie;
--   start: the operator's surge length in ms;
--   status, end: none.
-- now: the server time in ms when guard.lua calls this body, else nil.
-- Returns "active failures threshold event refused retry_ms left_ms" (left:
-- how long the surge lasts if nothing keeps it on), with
-- event 1 when this call saw the surge start, 2 when it saw it end, else 0.
if redis.replicate_commands then redis.replicate_commands() end
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local MINUTE_MS = 60000
local USUAL_WEIGHT, DAY_WEIGHT, DAY_BOUND = 1 / 60, 1 / 1440, 3
local MIN_ALLOWANCE, PER_SUCCESS = 10, 2
local KEEP_MINUTES = 360

local op = ARGV[1]
local min_failures, factor = tonumber(ARGV[2]), tonumber(ARGV[3])
local cooldown_ms, op_arg = tonumber(ARGV[4]), ARGV[5]
local record = KEYS[1]

local h = redis.call('HMGET', record, 'm', 'f', 'r', 'n', 's', 'uf', 'df', 'us',
  'h', 'mu', 'on')
local minute = tonumber(h[1]) or 0
local failures, refused = tonumber(h[2]) or 0, tonumber(h[3]) or 0
local new_devices, new_successes = tonumber(h[4]) or 0, tonumber(h[5]) or 0
local usual_failures, daily_failures = tonumber(h[6]) or 0, tonumber(h[7]) or 0
local usual_successes = tonumber(h[8]) or 0
local hot_until, manual_until = tonumber(h[9]) or 0, tonumber(h[10]) or 0
local on = h[11] == '1'
-- The values as read: a save writes only what changed (within a minute, a
-- count is one field or two).
local read = {minute, failures, refused, new_devices, new_successes,
  hot_until, manual_until, on}
local rolled = false

-- Move to this minute, folding the finished one into the usual rates
-- unless it was spent in a surge; minutes without an attempt are quiet.
local function roll()
  local this_minute = math.floor(now / MINUTE_MS)
  if this_minute == minute then return end
  if minute ~= 0 then
    if not on then
      usual_failures = usual_failures + (failures - usual_failures) * USUAL_WEIGHT
      daily_failures = daily_failures + (failures - daily_failures) * DAY_WEIGHT
      usual_successes = usual_successes
        + (new_successes - usual_successes) * USUAL_WEIGHT
    end
    local quiet = math.min(math.max(this_minute - minute - 1, 0), KEEP_MINUTES)
    usual_failures = usual_failures * (1 - USUAL_WEIGHT) ^ quiet
    daily_failures = daily_failures * (1 - DAY_WEIGHT) ^ quiet
    usual_successes = usual_successes * (1 - USUAL_WEIGHT) ^ quiet
  end
  minute = this_minute
  failures, refused, new_devices, new_successes = 0, 0, 0, 0
  rolled = true
end

local function threshold()
  local usual = math.min(usual_failures, DAY_BOUND * daily_failures)
  return math.max(min_failures, math.floor(factor * usual))
end

local function active()
  return now < hot_until or now < manual_until
end

-- Failures and refused attempts above the threshold keep the surge on.
local function heat()
  if failures + refused > threshold() then
    hot_until = math.max(hot_until, now + cooldown_ms)
    if cooldown_ms <= 0 then
      hot_until = math.max(hot_until, (minute + 1) * MINUTE_MS)
    end
  end
end

-- 1 when the surge starts now, 2 when it ends, else 0.
local function transition()
  local is_active = active()
  if is_active == on then return 0 end
  on = is_active
  if is_active then return 1 end
  return 2
end

-- Queue a field for the next HSET when it changed (or the minute rolled).
local function changed(writes, name, value, before, format)
  if rolled or value ~= before then
    writes[#writes + 1] = name
    writes[#writes + 1] = string.format(format, value)
  end
end

local function save()
  local writes = {}
  changed(writes, 'm', minute, read[1], '%d')
  changed(writes, 'f', failures, read[2], '%d')
  changed(writes, 'r', refused, read[3], '%d')
  changed(writes, 'n', new_devices, read[4], '%d')
  changed(writes, 's', new_successes, read[5], '%d')
  changed(writes, 'h', hot_until, read[6], '%d')
  changed(writes, 'mu', manual_until, read[7], '%d')
  if rolled or on ~= read[8] then
    writes[#writes + 1] = 'on'
    writes[#writes + 1] = on and '1' or '0'
  end
  if rolled then
    -- The usual rates move once a minute, with the roll.
    writes[#writes + 1] = 'uf'
    writes[#writes + 1] = string.format('%.17g', usual_failures)
    writes[#writes + 1] = 'df'
    writes[#writes + 1] = string.format('%.17g', daily_failures)
    writes[#writes + 1] = 'us'
    writes[#writes + 1] = string.format('%.17g', usual_successes)
  end
  if #writes > 0 then redis.call('HSET', record, unpack(writes)) end
  if rolled or hot_until ~= read[6] or manual_until ~= read[7] then
    local keep = math.max(now + KEEP_MINUTES * MINUTE_MS, hot_until, manual_until)
    redis.call('PEXPIREAT', record, string.format('%d', keep))
  end
end

local function reply(event, is_refused, retry_ms, is_active)
  local active_flag = 0
  if is_active then active_flag = 1 end
  return string.format('%d %d %d %d %d %d %d', active_flag, failures, threshold(),
    event, is_refused, retry_ms, math.max(hot_until, manual_until, now) - now)
end

roll()

-- The allowance opens evenly over the minute, one attempt at a time.
if op == 'check' then
  local event = transition()
  if on and op_arg ~= '1' then
    local allowance = math.max(MIN_ALLOWANCE, math.ceil(PER_SUCCESS * usual_successes))
    local elapsed = now - minute * MINUTE_MS
    if new_devices >= math.floor(allowance * elapsed / MINUTE_MS) + 1 then
      refused = refused + 1
      heat()
      save()
      local next_slot = new_devices * MINUTE_MS / allowance - elapsed
      local wait = math.min(math.max(next_slot, 1), MINUTE_MS - elapsed)
      return reply(event, 1, math.ceil(wait), on)
    end
  end
  if event ~= 0 then save() end
  if ARGV[6] == 'count' then
    -- For guard.lua, on the record already read: whether a surge is on, a
    -- function that counts the attempt once it is reserved, and one that
    -- answers a refusal by the address's or the network's windows.
    local function count(new_device)
      failures = failures + 1
      if new_device then new_devices = new_devices + 1 end
      heat()
      local counted_event = transition()
      if counted_event == 0 then counted_event = event end
      save()
      return reply(counted_event, 0, 0, on)
    end
    local function refuse(retry_ms)
      return reply(event, 1, retry_ms, on)
    end
    return reply(event, 0, 0, on), on, count, refuse
  end
  return reply(event, 0, 0, on)
end

if op == 'count' then
  failures = failures + 1
  if op_arg == '1' then new_devices = new_devices + 1 end
  heat()
  local event = transition()
  save()
  return reply(event, 0, 0, on)
end

if op == 'success' then
  failures = math.max(0, failures - 1)
  if op_arg == '1' then new_successes = new_successes + 1 end
  save()
  return reply(0, 0, 0, on)
end

if op == 'start' or op == 'end' then
  if op == 'start' then
    manual_until = now + tonumber(op_arg)
  else
    manual_until, hot_until = 0, 0
  end
  local event = transition()
  save()
  return reply(event, 0, 0, on)
end

if op == 'status' then
  return reply(0, 0, 0, active())
end

return redis.error_reply('unknown surge operation ' .. tostring(op))
