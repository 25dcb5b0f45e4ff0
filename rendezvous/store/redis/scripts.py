"""The Lua scripts that change the shared registry, each one atomic on the Redis server.

Every change to a namespace increments one fleet-wide sequence number and publishes
``SEQ:ORIGIN:CHANGE KEYLEN KEY ENTRY`` on the namespace's channel in the same script
(ORIGIN: the ``DAEMON/SESSION`` whose REGISTER or UNREGISTER made the change, empty for
disconnects, expiry and the reaper; that session is never pushed its own change), so the
sequence orders announcements and joins a snapshot (read with the current sequence) to
the pushes after it. Keys, under the prefix ``P``:

- ``P r:NS`` hash peer key -> ``TOKEN|ENTRY`` (TOKEN: ``DAEMON/SESSION``, the owner);
- ``P o:NS`` sorted set peer key -> sequence of its first registration (DISCOVER order);
- ``P s:TOKEN`` set of ``KEYLEN KEY NS`` the session holds;
- ``P d:DAEMON`` set of the daemon's session ids; ``P daemons`` set of daemon ids;
- ``P lease:DAEMON`` present while the daemon lives (expires unless renewed);
- ``P owner`` / ``P owncount`` hashes: which raw-stream session speaks for a peer id;
- ``P seq`` the sequence; ``P count`` registrations held; ``P reaper`` the reaper's lock;
- ``P c:NS`` / ``P c`` sorted sets peer key / ``KEYLEN KEY NS`` -> sequence of the latest
  (re)registration, and ``P cs:NS`` / ``P cs`` the same for those carrying a signed peer
  record (standard DISCOVER, cookies);
- TTL registrations (standard dialect) are held by nobody (TOKEN is empty): ``P x`` sorted
  set ``KEYLEN KEY NS`` -> expiry (ms on the daemons' clock), ``P ttlcount`` hash peer key ->
  TTL registrations held; ``P expirer`` the daemon elected to follow every expiry (a
  lock with expiry); ``P epoch`` names the registry's life in DISCOVER cookies.

A session that loses a registration to another (replaced by a TTL registration, or
removed by an UNREGISTER of a session authenticated as the id) is told on its daemon's
channel, ``CH`` + byte 0xFF + daemon id (never a namespace's: namespaces are UTF-8),
as ``SEQ:SESSION:KEYLEN KEY NS``, published before the change's announcement.

A REGISTER refused only because another daemon's session holds the id first asks
whether that daemon is still there: when nobody listens on its daemon channel (its
pub/sub connection closed: killed, or cut off), the daemon is dropped as the reaper
would drop it once its lease ran out, and the REGISTER goes on. A daemon cut off that
comes back re-asserts what is still its own, as after a lease lost.

Every script takes ``ARGV[1..3]`` = key prefix, publish command, channel prefix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_PRELUDE = """
local P, PUB, CH = ARGV[1], ARGV[2], ARGV[3]
local ORIGIN = '' -- the session (DAEMON/SESSION) whose request makes the change, if any
local function packkey(key)
  return string.char(math.floor(#key / 256), #key % 256) .. key
end
local function unmember(m)
  local n = string.byte(m, 1) * 256 + string.byte(m, 2)
  return string.sub(m, 3 + n), string.sub(m, 3, 2 + n)
end
local function split(v)
  local i = string.find(v, '|', 1, true)
  return string.sub(v, 1, i - 1), string.sub(v, i + 1)
end
local function announce(ns, change, key, entry)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call(PUB, CH .. ns, seq .. ':' .. ORIGIN .. ':' .. change .. packkey(key) .. entry)
  return seq
end
local function leased(daemon)
  return redis.call('EXISTS', P .. 'lease:' .. daemon) == 1
end
local function stamp(ns, key, seq, signed)
  local m = packkey(key) .. ns
  redis.call('ZADD', P .. 'c:' .. ns, seq, key)
  redis.call('ZADD', P .. 'c', seq, m)
  if signed then
    redis.call('ZADD', P .. 'cs:' .. ns, seq, key)
    redis.call('ZADD', P .. 'cs', seq, m)
  else
    redis.call('ZREM', P .. 'cs:' .. ns, key)
    redis.call('ZREM', P .. 'cs', m)
  end
end
local function add(ns, key, entry, token, daemon, session, raw, signed)
  redis.call('INCR', P .. 'count')
  if token == '' then
    redis.call('HINCRBY', P .. 'ttlcount', key, 1)
  else
    redis.call('SADD', P .. 's:' .. token, packkey(key) .. ns)
    redis.call('SADD', P .. 'd:' .. daemon, session)
  end
  if raw then
    redis.call('HSET', P .. 'owner', key, token)
    redis.call('HINCRBY', P .. 'owncount', key, 1)
  end
  redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
  local seq = announce(ns, 'R', key, entry)
  redis.call('ZADD', P .. 'o:' .. ns, 'NX', seq, key)
  stamp(ns, key, seq, signed)
  return seq
end
local function detach(ns, key, holder)
  local m = packkey(key) .. ns
  redis.call('HDEL', P .. 'r:' .. ns, key)
  redis.call('ZREM', P .. 'o:' .. ns, key)
  redis.call('ZREM', P .. 'c:' .. ns, key)
  redis.call('ZREM', P .. 'c', m)
  redis.call('ZREM', P .. 'cs:' .. ns, key)
  redis.call('ZREM', P .. 'cs', m)
  if holder == '' then
    redis.call('ZREM', P .. 'x', m)
    if redis.call('HINCRBY', P .. 'ttlcount', key, -1) <= 0 then
      redis.call('HDEL', P .. 'ttlcount', key)
    end
  else
    redis.call('SREM', P .. 's:' .. holder, m)
    if redis.call('HGET', P .. 'owner', key) == holder then
      if redis.call('HINCRBY', P .. 'owncount', key, -1) <= 0 then
        redis.call('HDEL', P .. 'owner', key)
        redis.call('HDEL', P .. 'owncount', key)
      end
    end
  end
  redis.call('DECR', P .. 'count')
end
local function remove(ns, key, token)
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  if not v then return false end
  local holder, entry = split(v)
  if holder ~= token then return false end
  detach(ns, key, holder)
  announce(ns, 'U', key, entry)
  return true
end
local function evict(ns, key, holder)
  -- tell the holder's daemon that its session lost the registration (before the
  -- announcement that follows, on the same connection)
  local cut = string.find(holder, '/[^/]*$')
  local daemon, session = string.sub(holder, 1, cut - 1), string.sub(holder, cut + 1)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call(PUB, CH .. '\\255' .. daemon, seq .. ':' .. session .. ':' .. packkey(key) .. ns)
end
local function next_expiry()
  local first = redis.call('ZRANGE', P .. 'x', 0, 0, 'WITHSCORES')
  return first[2] or ''
end
local function foreign_owner(key, token)
  local o = redis.call('HGET', P .. 'owner', key)
  return o and o ~= token
end
local function drop_session(daemon, session)
  local token = daemon .. '/' .. session
  local sk = P .. 's:' .. token
  for _, m in ipairs(redis.call('SMEMBERS', sk)) do
    local ns, key = unmember(m)
    remove(ns, key, token)
  end
  redis.call('DEL', sk)
  redis.call('SREM', P .. 'd:' .. daemon, session)
end
local function drop_daemon(daemon)
  for _, s in ipairs(redis.call('SMEMBERS', P .. 'd:' .. daemon)) do
    drop_session(daemon, s)
  end
  redis.call('DEL', P .. 'd:' .. daemon, P .. 'lease:' .. daemon)
  redis.call('SREM', P .. 'daemons', daemon)
  if redis.call('GET', P .. 'expirer') == daemon then redis.call('DEL', P .. 'expirer') end
end
local function listening(daemon)
  local channel = CH .. '\\255' .. daemon
  if PUB == 'SPUBLISH' then
    return redis.call('PUBSUB', 'SHARDNUMSUB', channel)[2] > 0
  end
  return redis.call('PUBSUB', 'NUMSUB', channel)[2] > 0
end
local function vacated(holder, daemon)
  -- The holder's daemon has stopped when its pub/sub connection is gone (killed, or
  -- cut off: it re-asserts what is still its own when it is back): its sessions'
  -- registrations end now, rather than when its lease runs out.
  local cut = string.find(holder, '/[^/]*$')
  local other = string.sub(holder, 1, cut - 1)
  if other == daemon or listening(other) then return false end
  drop_daemon(other)
  return true
end
"""

_REGISTER = """
local daemon, session, ns, key, entry = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local raw, token = ARGV[9] == '1', ARGV[4] .. '/' .. ARGV[5]
local signed = ARGV[12] == '1'
ORIGIN = token
if not leased(daemon) then return {'LEASE', 'lease lost'} end
if raw then
  local owner = redis.call('HGET', P .. 'owner', key)
  if owner and owner ~= token and not vacated(owner, daemon) then
    return {'AUTH', 'peer id is registered by another session'}
  end
end
local v = redis.call('HGET', P .. 'r:' .. ns, key)
local holder = v and split(v)
if v and holder ~= '' and holder ~= token and vacated(holder, daemon) then
  v = redis.call('HGET', P .. 'r:' .. ns, key)
  holder = v and split(v)
end
if v and holder == token then
  redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
  local seq = announce(ns, 'R', key, entry)
  stamp(ns, key, seq, signed)
  return {'OK', '0', seq}
end
if v and (holder ~= '' or raw) then
  -- another session's, or a TTL registration a raw session cannot vouch for
  return {'AUTH', 'peer id is registered by another session'}
end
if redis.call('SCARD', P .. 's:' .. token) >= tonumber(ARGV[10]) then
  return {'LIMIT', 'too many registrations in this session'}
end
if not v and tonumber(redis.call('GET', P .. 'count') or '0') >= tonumber(ARGV[11]) then
  return {'FULL', 'registry is full'}
end
if v then detach(ns, key, '') end -- the id's own TTL registration, replaced
return {'OK', '1', add(ns, key, entry, token, daemon, session, raw, signed)}
"""

_REGISTER_TTL = """
local ns, key, entry, signed = ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1'
local expires, per_peer, most = ARGV[8], tonumber(ARGV[9]), tonumber(ARGV[10])
local v = redis.call('HGET', P .. 'r:' .. ns, key)
local holder = v and split(v)
if (not v or holder ~= '') and
    tonumber(redis.call('HGET', P .. 'ttlcount', key) or '0') >= per_peer then
  return {'LIMIT', 'too many registrations for this peer'}
end
if not v and tonumber(redis.call('GET', P .. 'count') or '0') >= most then
  return {'FULL', 'registry is full'}
end
if v then -- replaced, announced by the REGISTER that follows
  detach(ns, key, holder)
  if holder ~= '' then evict(ns, key, holder) end
end
local seq = add(ns, key, entry, '', '', '', false, signed)
redis.call('ZADD', P .. 'x', expires, packkey(key) .. ns)
return {'OK', seq}
"""

_EXPIRE = """
local now, batch, daemon, lock = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local holder = redis.call('GET', P .. 'expirer')
local elected = not holder or holder == daemon
if elected then redis.call('SET', P .. 'expirer', daemon, 'PX', lock) end
local n = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'x', '-inf', now, 'LIMIT', 0, batch)) do
  local ns, key = unmember(m)
  if remove(ns, key, '') then n = n + 1 else redis.call('ZREM', P .. 'x', m) end
end
if elected then return {n, next_expiry()} end
return {n, ''}
"""

_DISCOVER_SINCE = """
local all, ns, after, limit = ARGV[4] == '1', ARGV[5], ARGV[6], tonumber(ARGV[7])
local signed, now = ARGV[8] == '1', tonumber(ARGV[9])
local set = P .. (signed and 'cs' or 'c') .. (all and '' or (':' .. ns))
local out = {redis.call('GET', P .. 'epoch') or ''}
local found, from = 0, '(' .. after
while found < limit do
  local items = redis.call('ZRANGEBYSCORE', set, from, '+inf', 'WITHSCORES',
                           'LIMIT', 0, limit - found)
  if #items == 0 then break end
  for i = 1, #items, 2 do
    local name, key = ns, items[i]
    if all then name, key = unmember(items[i]) end
    from = '(' .. items[i + 1]
    local v = redis.call('HGET', P .. 'r:' .. name, key)
    local expires = redis.call('ZSCORE', P .. 'x', packkey(key) .. name) or ''
    if v and (expires == '' or tonumber(expires) > now) then
      local _, entry = split(v)
      out[#out + 1] = items[i + 1]
      out[#out + 1] = expires
      out[#out + 1] = entry
      found = found + 1
    end
  end
end
return out
"""

_UNREGISTER = """
local daemon, session, ns, key = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local raw, token = ARGV[8] == '1', ARGV[4] .. '/' .. ARGV[5]
ORIGIN = token
if not leased(daemon) then return {'LEASE', 'lease lost'} end
if remove(ns, key, token) then return {'OK', '1'} end
if not raw then
  -- authenticated as the id: its TTL registration, or another such session's
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  local holder = v and split(v)
  if v and (holder == '' or redis.call('HGET', P .. 'owner', key) ~= holder) then
    if holder ~= '' then evict(ns, key, holder) end
    remove(ns, key, holder)
    return {'OK', '1'}
  end
end
if foreign_owner(key, token) then
  return {'AUTH', 'peer id is registered by another session'}
end
return {'OK', '0'}
"""

_SNAPSHOT = """
local ns, limit = ARGV[4], tonumber(ARGV[5])
local out = {redis.call('GET', P .. 'seq') or '0'}
local regs = P .. 'r:' .. ns
for _, key in ipairs(redis.call('ZRANGE', P .. 'o:' .. ns, 0, limit - 1)) do
  local v = redis.call('HGET', regs, key)
  if v then
    local _, entry = split(v)
    out[#out + 1] = key
    out[#out + 1] = entry
  end
end
return out
"""

_DROP_SESSION = """
drop_session(ARGV[4], ARGV[5])
return 1
"""

_DROP_DAEMON = """
drop_daemon(ARGV[4])
return 1
"""

_LEASE = """
local daemon, ms, renew = ARGV[4], ARGV[5], ARGV[6] == '1'
local key = P .. 'lease:' .. daemon
if renew then
  if redis.call('SET', key, '1', 'PX', ms, 'XX') then return 1 end
  return 0
end
redis.call('SET', key, '1', 'PX', ms)
redis.call('SADD', P .. 'daemons', daemon)
redis.call('SET', P .. 'epoch', ARGV[7], 'NX')
return redis.call('GET', P .. 'epoch')
"""

_REAP = """
if not redis.call('SET', P .. 'reaper', ARGV[4], 'NX', 'PX', ARGV[5]) then return -1 end
local n = 0
for _, d in ipairs(redis.call('SMEMBERS', P .. 'daemons')) do
  if not leased(d) then
    drop_daemon(d)
    n = n + 1
  end
end
return n
"""

_PRUNE = """
local daemon, live = ARGV[4], {}
for i = 5, #ARGV do live[ARGV[i]] = true end
for _, s in ipairs(redis.call('SMEMBERS', P .. 'd:' .. daemon)) do
  if not live[s] then drop_session(daemon, s) end
end
return 1
"""

_SYNC_SESSION = """
local daemon, session, raw = ARGV[4], ARGV[5], ARGV[6] == '1'
local token = daemon .. '/' .. session
if not leased(daemon) then return {'LEASE'} end
local want = {}
for i = 7, #ARGV, 4 do want[packkey(ARGV[i + 1]) .. ARGV[i]] = true end
for _, m in ipairs(redis.call('SMEMBERS', P .. 's:' .. token)) do
  if not want[m] then
    local ns, key = unmember(m)
    remove(ns, key, token)
  end
end
local out = {'OK'}
for i = 7, #ARGV, 4 do
  local ns, key, entry, signed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == '1'
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  if v then
    local holder, old = split(v)
    if holder ~= token then
      out[#out + 1] = packkey(key) .. ns
    elseif old ~= entry then
      redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
      stamp(ns, key, announce(ns, 'R', key, entry), signed)
    end
  elseif raw and foreign_owner(key, token) then
    out[#out + 1] = packkey(key) .. ns
  else
    add(ns, key, entry, token, daemon, session, raw, signed)
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


def _script(name: str, body: str) -> Script:
    return Script(name, _PRELUDE + body)


REGISTER = _script("register", _REGISTER)
UNREGISTER = _script("unregister", _UNREGISTER)
SNAPSHOT = _script("snapshot", _SNAPSHOT)
DROP_SESSION = _script("drop_session", _DROP_SESSION)
DROP_DAEMON = _script("drop_daemon", _DROP_DAEMON)
LEASE = _script("lease", _LEASE)
REAP = _script("reap", _REAP)
PRUNE = _script("prune", _PRUNE)
SYNC_SESSION = _script("sync_session", _SYNC_SESSION)
REGISTER_TTL = _script("register_ttl", _REGISTER_TTL)
EXPIRE = _script("expire", _EXPIRE)
DISCOVER_SINCE = _script("discover_since", _DISCOVER_SINCE)
ALL = (
    REGISTER,
    UNREGISTER,
    SNAPSHOT,
    DROP_SESSION,
    DROP_DAEMON,
    LEASE,
    REAP,
    PRUNE,
    SYNC_SESSION,
    REGISTER_TTL,
    EXPIRE,
    DISCOVER_SINCE,
)
