-- Login lockout on Redis server time; mirrors flask_lockout.policy.LockRecord.
-- KEYS: one state hash per key of the decision (all in one Cluster slot when
-- there is more than one): f failures in window, ws window start, n lock
-- number, lu locked until, lf last failure, t failures since clean, g until
-- when the no-verdict give-back is used up (times in ms), x the tokens of
-- the last APPLIED_TOKENS attempts given back (a command sent again after a
-- dropped connection must not give one back twice), after "@<ms>", until
-- when their receipts can come back (the hash lives that long), and
-- s:<spelling> failures per typed spelling.
-- ARGV: the nine slots named below (op, token, ttl_ms, max_spellings and
--       the lock schedule: reset_after_ms, base_ms, multiplier, max_ms and a
--       custom schedule as comma-separated ms, or ""), then five per key:
--       the spelling ("" for none), max_failures, window_ms, the window's
--       start ("first" failure, or "last": the window then ends window_ms
--       after the latest failure) and, for release, unknown and success,
--       the receipt ("" for none).
-- now: the server time in ms when guard.lua calls this body, else nil.
-- A reserved attempt counts as a failure at once; release and success give
-- it back, so a wrong password costs one call and writes nothing else. To
-- give it back, the caller hands in the receipt the reservation returned
-- (see issue_receipt).
-- Returns every key's reply in one string of integers: reserve "granted
-- locked retry_seconds" then ";" and the receipts, separated by ";"; the
-- others "locked retry_seconds failures lock_number". For guard.lua,
-- reserve also returns whether every key granted the attempt.
--
-- Written for Redis's time more than for brevity, as every wrong password
-- runs it: turning a number into text or back costs about as much as a
-- command (a Lua number handed to redis.call is printed with %.17g), and so
-- does each field written. A save writes only the fields that changed, as
-- text, keeping the text it read for the rest; the policy's numbers are read
-- where they are used; and the helpers below are made once per call, not
-- once per key, working on the key being decided.
if redis.replicate_commands then redis.replicate_commands() end
local op = ARGV[1]
if op == 'clear' then
  for i = 1, #KEYS do redis.call('DEL', KEYS[i]) end
  return ''
end
local token, ttl_ms, max_spellings = ARGV[2], ARGV[3], tonumber(ARGV[4])
local RESET_AFTER_MS, BASE_MS, MULTIPLIER, MAX_MS, SCHEDULE = 5, 6, 7, 8, 9
local PER_KEY, FIRST_KEY_ARG = 5, 10
-- The policy of the key being decided (keys of one call may differ).
local max_failures, window_ms, window_from_last

local APPLIED_TOKENS = 8

-- Called by guard.lua (which hands in the time), it may return more than
-- one value; alone, one (a client may read them all as a list).
local for_guard = now ~= nil
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local reset_after_ms = nil  -- read on first use
local issued_expiry = nil  -- the same for every key: formatted once

-- The key being decided: its hash, the typed spelling and the receipt; the
-- fields as read (h), their values now, and their values as read (nil once
-- the hash is deleted, so that a save writes them all).
local state_key, spelling, receipt, h
local f, ws, n, lu, lf, total, g, applied
local f0, ws0, n0, lu0, lf0, total0, g0, applied0
local had_expiry

-- A stored integer field: absent and '0' (the usual) need no conversion.
local function int(text)
  if not text or text == '0' then return 0 end
  return tonumber(text)
end

local function forget_stored()
  h = {}
  f0, ws0, n0, lu0, lf0, total0, g0, applied0 = nil, nil, nil, nil, nil, nil,
    nil, nil
end

-- Until when the tokens given back must be kept (0: none are).
local function applied_until()
  if applied == '' then return 0 end
  return tonumber(string.match(applied, '^@(%d+)')) or 0
end

local function state_expires()
  if n > 0 then
    reset_after_ms = reset_after_ms or tonumber(ARGV[RESET_AFTER_MS])
    return math.max(lf + reset_after_ms, lu)
  end
  if f > 0 or total > 0 then
    if window_from_last then return lf + window_ms end
    return ws + window_ms
  end
  return 0
end

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
  if ARGV[SCHEDULE] ~= '' then
    local schedule = {}
    for part in string.gmatch(ARGV[SCHEDULE], '[^,]+') do
      schedule[#schedule + 1] = tonumber(part)
    end
    return schedule[math.min(number, #schedule)]
  end
  local base_ms, multiplier = tonumber(ARGV[BASE_MS]), tonumber(ARGV[MULTIPLIER])
  return math.min(base_ms * multiplier ^ (number - 1), tonumber(ARGV[MAX_MS]))
end

-- The fields the next HSET writes, name then text.
local writes, written = {}, 0

-- A field's text: as read when its value did not change, else formatted
-- and queued for writing.
local function field(name, value, before, stored)
  if value == before and stored then return stored end
  local text = string.format('%d', value)
  writes[written + 1], writes[written + 2] = name, text
  written = written + 2
  return text
end

-- A clean key keeps only what outlives its state, until ``kept``: the
-- give-back's window and the tokens given back (its spellings, at 0 by
-- now, go with the state).
local function keep_give_backs(kept)
  redis.call('DEL', state_key)
  if kept > now then
    redis.call('HSET', state_key, 'g', string.format('%d', g), 'x', applied)
    redis.call('PEXPIREAT', state_key, string.format('%d', kept))
  end
end

-- Store the state; returns its text "f ws n lu lf t" for a receipt.
local function save()
  written = 0
  local saved = field('f', f, f0, h[1]) .. ' ' .. field('ws', ws, ws0, h[2])
    .. ' ' .. field('n', n, n0, h[3]) .. ' ' .. field('lu', lu, lu0, h[4])
    .. ' ' .. field('lf', lf, lf0, h[5]) .. ' ' .. field('t', total, total0, h[6])
  field('g', g, g0, h[7])
  if applied ~= applied0 then
    writes[written + 1], writes[written + 2] = 'x', applied
    written = written + 2
  end
  local expires = math.max(state_expires(), g, applied_until())
  if expires <= now then
    redis.call('DEL', state_key)
    return saved
  end
  if f + n + total == 0 then
    keep_give_backs(expires)
    return saved
  end
  if written > 0 then
    redis.call('HSET', state_key, unpack(writes, 1, written))
  end
  -- The key keeps its TTL when its expiry did not move.
  if expires ~= had_expiry then
    redis.call('PEXPIREAT', state_key, string.format('%d', expires))
  end
  return saved
end

-- How many spellings the hash holds: its fields but the state's.
local function spellings_held()
  local held = redis.call('HLEN', state_key)
  for i = 1, 8 do
    if h[i] then held = held - 1 end
  end
  return held
end

-- Count a failure on the typed spelling, in one command when it is known;
-- a new spelling past the cap goes to 's:~'.
local function add_spelling()
  if spelling == '' or spelling == '-' then return end
  local name = 's:' .. spelling
  local value = redis.call('HINCRBY', state_key, name, 1)
  if value == 1 and spellings_held() > max_spellings then
    redis.call('HDEL', state_key, name)
    redis.call('HINCRBY', state_key, 's:~', 1)
  end
end

-- The failures counted on the typed spelling's own field. A give-back
-- takes only from there: a count a success forgave stays at 0 until the
-- key is clean, a clean key has none, and 's:~' (spellings past the cap)
-- is never given back, so no attempt takes a failure typed with another
-- spelling.
local function spelling_count()
  return tonumber(redis.call('HGET', state_key, 's:' .. spelling)) or 0
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
  add_spelling()
end

-- A receipt: "expires locked f ws n lu lf t f ws n lu lf t", until when it
-- can come back, whether its attempt locked the key, and the state before
-- and after the attempt. Written by issue_receipt, read by read_receipt.
local function issue_receipt(locked, before, after)
  issued_expiry = issued_expiry or string.format('%d', now + tonumber(ttl_ms))
  local flag = ' 0 '
  if locked then flag = ' 1 ' end
  return issued_expiry .. flag .. (before or '0 0 0 0 0 0') .. ' ' .. after
end

-- The receipt's fields: expires, locked (true or false), and the states
-- before and after as lists {f, ws, n, lu, lf, t}.
local function read_receipt(text)
  local p = {}
  for word in string.gmatch(text, '%S+') do p[#p + 1] = tonumber(word) end
  return p[1], p[2] == 1, {p[3], p[4], p[5], p[6], p[7], p[8]},
    {p[9], p[10], p[11], p[12], p[13], p[14]}
end

-- Give a reserved attempt back: exactly, when nothing came after it; else
-- one failure, unless a lock came since (then it stays counted).
local function release(once)
  if not receipt or receipt == '' then return end
  if string.find(' ' .. applied .. ' ', ' ' .. token .. ' ', 1, true) then
    return  -- given back already: this is the same command sent again
  end
  local expires, locked, before, after = read_receipt(receipt)
  if expires <= now then return end  -- it outlived its view
  local typed = spelling ~= '' and spelling ~= '-'
  if typed and spelling_count() <= 0 then
    return  -- forgiven since, or counted with the other spellings
  end
  if once then
    -- A view that ran and failed: one give-back per key and window, and
    -- never one that would undo the lock this attempt set.
    if g > now or locked then return end
    g = now + window_ms
  end
  -- Nothing came after it when the state is still as it left it (a
  -- comparison of what is stored: a deployment's older workers write
  -- this state too).
  if after[1] == f and after[2] == ws and after[3] == n and after[4] == lu
      and after[5] == lf and after[6] == total then
    f, ws, n, lu, lf, total = unpack(before)
  elseif n == before[3] and f > 0 then
    f, total = f - 1, total - 1
  else
    return
  end
  if typed then redis.call('HINCRBY', state_key, 's:' .. spelling, -1) end
  local kept = math.max(applied_until(), expires)
  local tokens = {'@' .. string.format('%d', kept), token}
  for word in string.gmatch(applied, '%S+') do
    if #tokens > APPLIED_TOKENS then break end
    if string.sub(word, 1, 1) ~= '@' then tokens[#tokens + 1] = word end
  end
  applied = table.concat(tokens, ' ')
end

-- Read the key's state (h, the fields as read, and their values), and
-- forget it when it has expired; returns the state as stored, as text, for
-- a reservation's receipt (nil when there is none).
local function load()
  h = redis.call('HMGET', state_key, 'f', 'ws', 'n', 'lu', 'lf', 't', 'g', 'x')
  f, ws, n = int(h[1]), int(h[2]), int(h[3])
  lu, lf, total, g = int(h[4]), int(h[5]), int(h[6]), int(h[7])
  applied = h[8] or ''
  f0, ws0, n0, lu0, lf0, total0, g0, applied0 = f, ws, n, lu, lf, total, g,
    applied
  if g <= now then g = 0 end

  local stored = nil
  if h[1] then
    stored = h[1] .. ' ' .. (h[2] or '0') .. ' ' .. (h[3] or '0') .. ' '
      .. (h[4] or '0') .. ' ' .. (h[5] or '0') .. ' ' .. (h[6] or '0')
  end
  had_expiry = nil
  if h[1] and now >= state_expires() and f + n + total > 0 then
    -- Clean again: drop the old spellings with the rest, not the give-back.
    f, ws, n, lu, lf, total = 0, 0, 0, 0, 0, 0
    stored = nil
    forget_stored()
    keep_give_backs(math.max(g, applied_until()))
  end
  -- The expiry the stored hash already has (nil when it must be set).
  if h[1] then had_expiry = math.max(state_expires(), g, applied_until()) end
  return stored
end

-- One function per operation, on the key loaded; each returns its reply
-- (and reserve the receipt). Only the one asked for is made: Lua makes a
-- function anew on every call of a script.
local operation
if op == 'status' then
  operation = function()
    return reply()
  end
elseif op == 'failure' then
  operation = function()
    count_failure()
    save()
    return reply()
  end
elseif op == 'reserve' then
  operation = function(stored)
    if lu > now then return string.format('0 1 %d', retry_after()), '' end
    local lock_before = n
    count_failure()
    local issued = issue_receipt(n > lock_before, stored, save())
    if lu > now then return string.format('1 1 %d', retry_after()), issued end
    return '1 0 0', issued
  end
elseif op == 'unlock' then
  -- End the current lock; probation stays, so backoff keeps growing.
  operation = function()
    if lu > now then lu = now end
    f = 0
    save()
    return reply()
  end
elseif op == 'release' or op == 'unknown' then
  operation = function()
    release(op == 'unknown')
    save()
    return reply()
  end
elseif op == 'success' then
  -- Give the attempt back and forgive the failures typed with this
  -- spelling; when they are all of them, forget the key.
  operation = function()
    release(false)
    local mine = 0
    if spelling ~= '' then
      mine = tonumber(redis.call('HGET', state_key, 's:' .. spelling)) or 0
    end
    if mine > 0 and mine >= total then
      f, ws, n, lu, lf, total = 0, 0, 0, 0, 0, 0
      redis.call('DEL', state_key)
      forget_stored()
      had_expiry = nil
      save()
      return '0 0 0 0'
    end
    if mine > 0 then
      f, total = math.max(0, f - mine), total - mine
      redis.call('HSET', state_key, 's:' .. spelling, '0')  -- see spelling_count
    end
    save()
    return reply()
  end
else
  return redis.error_reply('unknown lockout operation ' .. tostring(op))
end

local replies, receipts = {}, {}
local all_granted = true
for i = 1, #KEYS do
  local at = FIRST_KEY_ARG + (i - 1) * PER_KEY
  state_key, spelling, receipt = KEYS[i], ARGV[at], ARGV[at + 4]
  max_failures, window_ms = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  window_from_last = ARGV[at + 3] == 'last'
  local answer, issued = operation(load())
  replies[i], receipts[i] = answer, issued
  if issued == '' then all_granted = false end
end
if op == 'reserve' then
  local answer = table.concat(replies, ' ') .. ';' .. table.concat(receipts, ';')
  if for_guard then return answer, all_granted end
  return answer
end
return table.concat(replies, ' ')
