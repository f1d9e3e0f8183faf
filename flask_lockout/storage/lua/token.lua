-- Take a single-use token: return its subject and delete it, atomically.
-- (GETDEL in one script, for servers older than Redis 6.2.)
local subject = redis.call('GET', KEYS[1])
if subject then redis.call('DEL', KEYS[1]) end
return subject
