-- A guarded attempt's whole decision in one call: a stacked @throttled's
-- rate limit, the scope's surge record and its windows, and the lockout
-- reservation. A script cannot call another, so the bodies of
-- ratelimit.lua, surge.lua and lockout.lua are pasted in above this one as
-- the functions rate_limit, surge and lockout (see
-- flask_lockout.storage.redis), each seeing its own KEYS and ARGV and the
-- server time read here once. It mirrors
-- flask_lockout.storage.base.attempt_in_steps.
-- KEYS: the rate limit's keys, then the surge's (its record, the address's
-- windows, the network's windows), then the lockout's.
-- ARGV: the four counts below (rate-limit keys and args, surge keys and
-- args), the rate limit's args, the surge's args (min_failures, factor,
-- cooldown_ms, known_device, challenge_passed, the address's windows and
-- the network's windows, each as its count then ratelimit.lua's args),
-- then the lockout's.
-- Returns "rate|surge|lockout": each part that script's reply, empty when
-- it did not run; whatever refuses first ends the call.
local RATE_KEYS, RATE_ARGS, SURGE_KEYS, SURGE_ARGS = 1, 2, 3, 4
local HEADER = 4
local rate_keys, rate_argc = tonumber(ARGV[RATE_KEYS]), tonumber(ARGV[RATE_ARGS])
local surge_keys, surge_argc = tonumber(ARGV[SURGE_KEYS]), tonumber(ARGV[SURGE_ARGS])

local function slice(list, first, count)
  return {unpack(list, first, first + count - 1)}
end

local rk = slice(KEYS, 1, rate_keys)
local sk = slice(KEYS, rate_keys + 1, surge_keys)
local lk = {unpack(KEYS, rate_keys + surge_keys + 1)}
local ra = slice(ARGV, HEADER + 1, rate_argc)
local sa = slice(ARGV, HEADER + rate_argc + 1, surge_argc)
local la = {unpack(ARGV, HEADER + rate_argc + surge_argc + 1)}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local limit = ''
if rate_keys > 0 then
  limit = rate_limit(rk, ra, now)
  if string.sub(limit, 1, 1) == '0' then return limit .. '||' end
end

local state, count = '', nil
if surge_keys > 0 then
  local known_device, challenge_passed = sa[4], sa[5]
  local exempt = '0'
  if known_device == '1' or challenge_passed == '1' then exempt = '1' end
  -- The record is read once: the check hands back the count to make after
  -- the reservation.
  state, count = surge({sk[1]}, {'check', sa[1], sa[2], sa[3], exempt, 'count'},
    now)
  -- "active failures threshold event refused retry_ms left_ms"
  local words = {}
  for word in string.gmatch(state, '%S+') do words[#words + 1] = word end
  if words[5] == '1' then return limit .. '|' .. state .. '|' end
  if words[1] == '1' and exempt == '0' then
    -- The address's windows, then the network's: each a count of windows
    -- and ratelimit.lua's args for them (one, then a count/period pair each).
    local at, key_at = 6, 2
    for _ = 1, 2 do
      local windows = tonumber(sa[at])
      local answer = '1'
      if windows > 0 then
        local window_keys = slice(sk, key_at, windows)
        local window_args = slice(sa, at + 1, 1 + 2 * windows)
        answer = rate_limit(window_keys, window_args, now)
      end
      if string.sub(answer, 1, 1) == '0' then
        -- Refused, with the window's wait ("0 0 retry_ms ..."); not counted
        -- toward keeping the surge on: one address must not hold it.
        local retry_ms = string.match(answer, '^0 0 (%d+)')
        local refused = string.format('%s %s %s %s 1 %s %s', words[1], words[2],
          words[3], words[4], retry_ms, words[7])
        return limit .. '|' .. refused .. '|'
      end
      at, key_at = at + 2 + 2 * windows, key_at + windows
    end
  end
end

local replies = lockout(lk, la, now)
if type(replies) == 'table' then return replies end  -- an error reply
if count then
  -- "granted locked retry" for each key, then the receipts after ";": the
  -- attempt counts once every key granted it.
  local all_granted, position = true, 0
  for word in string.gmatch(string.match(replies, '^[^;]*'), '%S+') do
    if position % 3 == 0 and word ~= '1' then all_granted = false end
    position = position + 1
  end
  if all_granted then
    state = count(sa[4] ~= '1')  -- a device without a cookie is a new one
  end
end
return limit .. '|' .. state .. '|' .. replies
