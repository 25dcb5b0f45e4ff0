"""The Lua scripts that change the shared registry, each one atomic on the Redis server.

Every change to a namespace increments one fleet-wide sequence number and publishes
``SEQ:CHANGE KEYLEN KEY ENTRY`` on the namespace's channel in the same script, so the
sequence orders announcements and joins a snapshot (read with the current sequence) to
the pushes after it. Keys, under the prefix ``P``:

- ``P r:NS`` hash peer key -> ``TOKEN|ENTRY`` (TOKEN: ``DAEMON/SESSION``, the owner);
- ``P o:NS`` sorted set peer key -> sequence of its first registration (DISCOVER order);
- ``P s:TOKEN`` set of ``KEYLEN KEY NS`` the session holds;
- ``P d:DAEMON`` set of the daemon's session ids; ``P daemons`` set of daemon ids;
- ``P lease:DAEMON`` present while the daemon lives (expires unless renewed);
- ``P owner`` / ``P owncount`` hashes: which raw-stream session speaks for a peer id;
- ``P seq`` the sequence; ``P count`` registrations held; ``P reaper`` the reaper's lock.

Every script takes ``ARGV[1..3]`` = key prefix, publish command, channel prefix.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_PRELUDE = """
local P, PUB, CH = ARGV[1], ARGV[2], ARGV[3]
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
  redis.call(PUB, CH .. ns, seq .. ':' .. change .. packkey(key) .. entry)
  return seq
end
local function leased(daemon)
  return redis.call('EXISTS', P .. 'lease:' .. daemon) == 1
end
local function add(ns, key, entry, token, daemon, session, raw)
  redis.call('INCR', P .. 'count')
  redis.call('SADD', P .. 's:' .. token, packkey(key) .. ns)
  redis.call('SADD', P .. 'd:' .. daemon, session)
  if raw then
    redis.call('HSET', P .. 'owner', key, token)
    redis.call('HINCRBY', P .. 'owncount', key, 1)
  end
  redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
  local seq = announce(ns, 'R', key, entry)
  redis.call('ZADD', P .. 'o:' .. ns, 'NX', seq, key)
end
local function remove(ns, key, token)
  local regs = P .. 'r:' .. ns
  local v = redis.call('HGET', regs, key)
  if not v then return false end
  local holder, entry = split(v)
  if holder ~= token then return false end
  redis.call('HDEL', regs, key)
  redis.call('ZREM', P .. 'o:' .. ns, key)
  redis.call('SREM', P .. 's:' .. token, packkey(key) .. ns)
  if redis.call('HGET', P .. 'owner', key) == token then
    if redis.call('HINCRBY', P .. 'owncount', key, -1) <= 0 then
      redis.call('HDEL', P .. 'owner', key)
      redis.call('HDEL', P .. 'owncount', key)
    end
  end
  redis.call('DECR', P .. 'count')
  announce(ns, 'U', key, entry)
  return true
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
end
"""

_REGISTER = """
local daemon, session, ns, key, entry = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local raw, token = ARGV[9] == '1', ARGV[4] .. '/' .. ARGV[5]
if not leased(daemon) then return {'LEASE', 'lease lost'} end
if raw and foreign_owner(key, token) then
  return {'AUTH', 'peer id is registered by another session'}
end
local v = redis.call('HGET', P .. 'r:' .. ns, key)
if v then
  local holder = split(v)
  if holder ~= token then return {'AUTH', 'peer id is registered by another session'} end
  redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
  announce(ns, 'R', key, entry)
  return {'OK', '0'}
end
if redis.call('SCARD', P .. 's:' .. token) >= tonumber(ARGV[10]) then
  return {'LIMIT', 'too many registrations in this session'}
end
if tonumber(redis.call('GET', P .. 'count') or '0') >= tonumber(ARGV[11]) then
  return {'FULL', 'registry is full'}
end
add(ns, key, entry, token, daemon, session, raw)
return {'OK', '1'}
"""

_UNREGISTER = """
local daemon, session, ns, key = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local raw, token = ARGV[8] == '1', ARGV[4] .. '/' .. ARGV[5]
if not leased(daemon) then return {'LEASE', 'lease lost'} end
if remove(ns, key, token) then return {'OK', '1'} end
if raw and foreign_owner(key, token) then
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
return 1
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
for i = 7, #ARGV, 3 do want[packkey(ARGV[i + 1]) .. ARGV[i]] = true end
for _, m in ipairs(redis.call('SMEMBERS', P .. 's:' .. token)) do
  if not want[m] then
    local ns, key = unmember(m)
    remove(ns, key, token)
  end
end
local out = {'OK'}
for i = 7, #ARGV, 3 do
  local ns, key, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  if v then
    local holder, old = split(v)
    if holder ~= token then
      out[#out + 1] = packkey(key) .. ns
    elseif old ~= entry then
      redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
      announce(ns, 'R', key, entry)
    end
  elseif raw and foreign_owner(key, token) then
    out[#out + 1] = packkey(key) .. ns
  else
    add(ns, key, entry, token, daemon, session, raw)
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
ALL = (REGISTER, UNREGISTER, SNAPSHOT, DROP_SESSION, DROP_DAEMON, LEASE, REAP, PRUNE, SYNC_SESSION)
