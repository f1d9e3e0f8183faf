-- Login lockout on Redis server time; mirrors flask_lockout.policy.LockRecord.
-- KEYS: one state hash per key of the decision (all in one Cluster slot when
-- there is more than one): f failures in window, ws window start, n lock
-- number, lu locked until, lf last failure, t failures since clean, g until
-- when the no-verdict give-back is used up (times in ms), x the tokens of
-- the last APPLIED_TOKENS attempts given back (a command sent again after a
-- dropped connection must not give one back twice), and s:<spelling>
-- failures per typed spelling.
-- ARGV: op, max_failures, window_ms, reset_after_ms, base_ms, multiplier,
--       max_ms, schedule (comma-separated ms, or ""), token, ttl_ms,
--       max_spellings, then one spelling per key ("" for none), then for
--       release, unknown and success one receipt per key.
-- A reserved attempt counts as a failure at once; release and success give
-- it back, so a wrong password costs one call and writes nothing else. To
-- give it back, the caller hands in the receipt the reservation returned:
-- "expires locked f ws n lu lf t f ws n lu lf t", whether it locked and the
-- state before and after it.
-- Returns every key's reply in one string of integers: reserve "granted
-- locked retry_seconds" then ";" and the receipts, separated by ";"; the
-- others "locked retry_seconds failures lock_number".
if redis.replicate_commands then redis.replicate_commands() end
local op = ARGV[1]
if op == 'clear' then
  for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
  return ''
end
local max_failures = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local reset_after_ms = tonumber(ARGV[4])
local base_ms = tonumber(ARGV[5])
local multiplier = tonumber(ARGV[6])
local max_ms = tonumber(ARGV[7])
local token = ARGV[9]
local ttl_ms = tonumber(ARGV[10])
local max_spellings = tonumber(ARGV[11])

-- Fields of the state hash besides the spellings.
local STATE_FIELDS = 8
local APPLIED_TOKENS = 8

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function decide(state_key, spelling, receipt)
  local h = redis.call('HMGET', state_key, 'f', 'ws', 'n', 'lu', 'lf', 't', 'g',
    'x')
  local f = tonumber(h[1]) or 0
  local ws = tonumber(h[2]) or 0
  local n = tonumber(h[3]) or 0
  local lu = tonumber(h[4]) or 0
  local lf = tonumber(h[5]) or 0
  local total = tonumber(h[6]) or 0
  local g = tonumber(h[7]) or 0
  local applied = h[8] or ''
  if g <= now then g = 0 end

  local function state_expires()
    if n > 0 then return math.max(lf + reset_after_ms, lu) end
    if f > 0 or total > 0 then return ws + window_ms end
    return 0
  end

  -- The state as stored, for a reservation's receipt (strings, not formatted).
  local stored = nil
  if h[1] then
    stored = table.concat({h[1], h[2] or '0', h[3] or '0', h[4] or '0',
      h[5] or '0', h[6] or '0'}, ' ')
  end
  if h[1] and now >= state_expires() and f + n + total > 0 then
    -- Clean again: drop the old spellings with the rest, not the give-back.
    redis.call('DEL', state_key)
    f, ws, n, lu, lf, total = 0, 0, 0, 0, 0, 0
    stored = nil
    if g > 0 then
      redis.call('HSET', state_key, 'g', g)
      redis.call('PEXPIREAT', state_key, g)
    end
  end

  -- The expiry the stored hash already has (nil when it must be set).
  local had_expiry = nil
  if h[1] then had_expiry = math.max(state_expires(), g) end

  local function retry_after()
    if lu > now then return math.ceil((lu - now) / 1000) end
    return 0
  end

  local function reply()
    local locked = 0
    if lu > now then locked = 1 end
    return string.format('%d %d %d %d', locked, retry_after(), f, n)
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

  local function save()
    local expires = math.max(state_expires(), g)
    if expires <= now then
      redis.call('DEL', state_key)
      return
    end
    redis.call('HSET', state_key, 'f', f, 'ws', ws, 'n', n, 'lu', lu, 'lf', lf,
      't', total, 'g', g, 'x', applied)
    -- The key keeps its TTL when its expiry did not move.
    if expires ~= had_expiry then
      redis.call('PEXPIREAT', state_key, expires)
    end
  end

  -- A spelling's count, in one command when it is known; a new spelling
  -- past the cap, or one counted with the others, goes to 's:~'.
  local function add_spelling(name, count)
    if name == '' or name == '-' then return end
    local field = 's:' .. name
    local value = redis.call('HINCRBY', state_key, field, count)
    if value == count and (count < 0
        or redis.call('HLEN', state_key) - STATE_FIELDS > max_spellings) then
      redis.call('HDEL', state_key, field)
      field = 's:~'
      value = redis.call('HINCRBY', state_key, field, count)
    end
    if value <= 0 then redis.call('HDEL', state_key, field) end
  end

  local function count_failure()
    if lu > now then return end
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
    total = total + 1
    add_spelling(spelling, 1)
  end

  -- Give a reserved attempt back: exactly, when nothing came after it; else
  -- one failure, unless a lock came since (then it stays counted).
  local function release(once)
    if not receipt or receipt == '' then return end
    if string.find(' ' .. applied .. ' ', ' ' .. token .. ' ', 1, true) then
      return  -- given back already: this is the same command sent again
    end
    local p = {}
    for word in string.gmatch(receipt, '%S+') do p[#p + 1] = word end
    if tonumber(p[1]) <= now then return end  -- it outlived its view
    if once then
      -- A view that ran and failed: one give-back per key and window, and
      -- never one that would undo the lock this attempt set.
      if g > now or p[2] == '1' then return end
      g = now + window_ms
    end
    -- Nothing came after it when the state is still as it left it (a
    -- comparison of what is stored: a deployment's older workers write
    -- this state too).
    if tonumber(p[9]) == f and tonumber(p[10]) == ws and tonumber(p[11]) == n
        and tonumber(p[12]) == lu and tonumber(p[13]) == lf
        and tonumber(p[14]) == total then
      f, ws, n = tonumber(p[3]), tonumber(p[4]), tonumber(p[5])
      lu, lf, total = tonumber(p[6]), tonumber(p[7]), tonumber(p[8])
    elseif n == tonumber(p[5]) and f > 0 then
      f, total = f - 1, total - 1
    else
      return
    end
    add_spelling(spelling, -1)
    local tokens = {token}
    for word in string.gmatch(applied, '%S+') do
      if #tokens >= APPLIED_TOKENS then break end
      tokens[#tokens + 1] = word
    end
    applied = table.concat(tokens, ' ')
  end

  if op == 'status' then
    return reply()
  end

  if op == 'failure' then
    count_failure()
    save()
    return reply()
  end

  if op == 'reserve' then
    if lu > now then return string.format('0 1 %d', retry_after()), '' end
    local lock_before = n
    count_failure()
    save()
    local locked = 0
    if n > lock_before then locked = 1 end
    local issued = string.format('%d %d ', now + ttl_ms, locked)
      .. (stored or '0 0 0 0 0 0')
      .. string.format(' %d %d %d %d %d %d', f, ws, n, lu, lf, total)
    if lu > now then return string.format('1 1 %d', retry_after()), issued end
    return '1 0 0', issued
  end

  if op == 'unlock' then
    -- End the current lock; probation stays, so backoff keeps growing.
    if lu > now then lu = now end
    f = 0
    save()
    return reply()
  end

  if op == 'release' or op == 'unknown' then
    release(op == 'unknown')
    save()
    return reply()
  end

  if op == 'success' then
    release(false)
    local mine = 0
    if spelling ~= '' then
      mine = tonumber(redis.call('HGET', state_key, 's:' .. spelling)) or 0
    end
    if mine > 0 and mine >= total then
      f, ws, n, lu, lf, total = 0, 0, 0, 0, 0, 0
      redis.call('DEL', state_key)
      had_expiry = nil
      save()
      return '0 0 0 0'
    end
    if mine > 0 then
      f, total = math.max(0, f - mine), total - mine
      redis.call('HDEL', state_key, 's:' .. spelling)
    end
    save()
    return reply()
  end

  return redis.error_reply('unknown lockout operation ' .. tostring(op))
end

local replies, receipts = {}, {}
for i = 1, #KEYS do
  local reply, issued = decide(KEYS[i], ARGV[11 + i], ARGV[11 + #KEYS + i])
  if type(reply) == 'table' then return reply end  -- an error reply
  replies[i], receipts[i] = reply, issued
end
if op == 'reserve' then
  return table.concat(replies, ' ') .. ';' .. table.concat(receipts, ';')
end
return table.concat(replies, ' ')
