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
  -- The record is read once: the check hands back whether a surge is on
  -- (nil when it refused the attempt), the count to make after the
  -- reservation and the answer to a refusal by the windows below.
  local active, refuse
  state, active, count, refuse = surge({sk[1]},
    {'check', sa[1], sa[2], sa[3], exempt, 'count'}, now)
  if active == nil then return limit .. '|' .. state .. '|' end
  if active and exempt == '0' then
    -- The address's windows, then the network's: each a count of windows
    -- and ratelimit.lua's args for them (one, then a count/period pair each).
    local at, key_at = 6, 2
    for _ = 1, 2 do
      local windows = tonumber(sa[at])
      if windows > 0 then
        local window_keys = slice(sk, key_at, windows)
        local window_args = slice(sa, at + 1, 1 + 2 * windows)
        local _, retry_ms = rate_limit(window_keys, window_args, now)
        if retry_ms then
          -- Not counted toward keeping the surge on: one address must not
          -- hold it.
          return limit .. '|' .. refuse(retry_ms) .. '|'
        end
      end
      at, key_at = at + 2 + 2 * windows, key_at + windows
    end
  end
end

local replies, all_granted = lockout(lk, la, now)
if type(replies) == 'table' then return replies end  -- an error reply
-- The attempt counts once every key granted it; a device without a cookie
-- is a new one.
if count and all_granted then state = count(sa[4] ~= '1') end
return limit .. '|' .. state .. '|' .. replies
