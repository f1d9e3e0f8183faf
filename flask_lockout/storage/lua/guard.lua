-- A rate limit and a lockout reservation in one call, for stacked
-- @throttled and @lockout_on_failure: the bodies of ratelimit.lua and
-- lockout.lua are pasted in below as the functions rate_limit and lockout
-- (see flask_lockout.storage.redis), each seeing its own KEYS and ARGV and
-- the server time read here once.
-- KEYS: the rate limit's keys, then the lockout's.
-- ARGV: number of rate-limit keys, number of rate-limit args, the rate
-- limit's args, then the lockout's.
-- Returns the rate limit's reply on a refusal (nothing is reserved), else
-- the rate limit's reply and the lockout's, in one string of integers.
local limit_keys, limit_argc = tonumber(ARGV[1]), tonumber(ARGV[2])
-- Sliced with unpack, not copied in a loop: about 2 µs a call.
local rk = {unpack(KEYS, 1, limit_keys)}
local lk = {unpack(KEYS, limit_keys + 1)}
local ra = {unpack(ARGV, 3, 2 + limit_argc)}
local la = {unpack(ARGV, 3 + limit_argc)}
-- One clock read for both.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = rate_limit(rk, ra, now)
if string.sub(limit, 1, 1) == '0' then return limit end
local replies = lockout(lk, la, now)
if type(replies) == 'table' then return replies end  -- an error reply
return limit .. ' ' .. replies
