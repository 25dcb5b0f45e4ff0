"""The Lua scripts that change the shared registry, each one atomic on the Redis server.

Every change to a namespace increments one fleet-wide sequence number and publishes
``SEQ:ORIGIN:CHANGE KEYLEN KEY ENTRYLEN ENTRY`` (lengths: 2 and 4 bytes, big-endian) on
the namespace's channel in the same script (ORIGIN: the ``DAEMON/SESSION`` whose REGISTER
or UNREGISTER made the change, empty for disconnects, expiry and the reaper; that session
is never pushed its own change), so the sequence orders announcements and joins a
snapshot (read with the current sequence) to the pushes after it. A message carries one
or more announcements in sequence order: the REGISTERs of one batch (`REGISTER_MANY`, the
REGISTERs a daemon received in one reactor turn) publish one message per namespace at
the batch's end. Keys, under the prefix ``P``:

- ``P r:NS`` hash peer key -> ``TOKEN|ENTRY`` (TOKEN: ``DAEMON/SESSION``, the owner);
- ``P o:NS`` sorted set peer key -> sequence of its first registration (DISCOVER order);
- ``P s:TOKEN`` set of ``KEYLEN KEY NS`` the session holds;
- ``P d:DAEMON`` set of the daemon's session ids; ``P daemons`` set of daemon ids;
- ``P lease:DAEMON`` present while the daemon lives (expires unless renewed);
- ``P owner`` / ``P owncount`` hashes: which raw-stream session speaks for a peer id;
- ``P seq`` the sequence; ``P count`` registrations held; ``P reaper`` the reaper's lock;
- ``P v:NS`` the namespace's version: the sequence of its latest change (kept an hour
  after it, then set again to the current sequence when asked), which lets a daemon
  answer a DISCOVER from what it read before while the namespace has not changed;
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

Every script takes ``ARGV[1..3]`` = key prefix, publish command, channel prefix, and on
a Redis Cluster ``KEYS[1]`` = ``P seq`` (which routes it to its partition's slot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_PRELUDE = """
local P, PUB, CH = ARGV[1], ARGV[2], ARGV[3]
if #KEYS > 0 then
  -- On a cluster (KEYS[1]: the partition's sequence): a key that never exists, read
  -- before anything is changed, stops the script at once, with nothing done, while its
  -- slot is migrating (the cluster sends it elsewhere); the daemon tries again.
  redis.call('EXISTS', P .. 'moving')
end
local ORIGIN = '' -- the session (DAEMON/SESSION) whose request makes the change, if any
local OWNER = nil -- on a cluster: the id's claimant read by the daemon ('' none)
local function packkey(key)
  return struct.pack('>I2', #key) .. key
end
local function unmember(m)
  local n = string.byte(m, 1) * 256 + string.byte(m, 2)
  return string.sub(m, 3 + n), string.sub(m, 3, 2 + n)
end
local function split(v)
  local i = string.find(v, '|', 1, true)
  return string.sub(v, 1, i - 1), string.sub(v, i + 1)
end
-- While a batch runs, the sequence and the count of registrations are kept here and
-- written back at its end, and what is known of its sessions is remembered.
-- Its announcements (one message per channel), namespace versions and sorted-set
-- additions (one ZADD per set) are made at its end too, or before anything is removed.
local SEQ, COUNT, HELD, KNOWN, PUBS, ZADDS, VERSIONS = nil, nil, nil, nil, nil, nil, nil
local VERSION_TTL = 3600 -- s: a namespace unchanged that long is given a new version
local function later(pending, name, first)
  local items = pending[name]
  if not items then
    items = {first}
    pending[name] = items
    pending[#pending + 1] = name
  end
  return items
end
local function zadd(set, seq, member, nx)
  if not ZADDS then return redis.call('ZADD', set, nx and 'NX' or 'CH', seq, member) end
  local items = later(ZADDS, set, nx and 'NX' or 'CH')
  items[#items + 1] = seq
  items[#items + 1] = member
end
local function flush_later()
  if ZADDS and #ZADDS > 0 then
    for _, set in ipairs(ZADDS) do redis.call('ZADD', set, unpack(ZADDS[set])) end
    ZADDS = {}
  end
end
local function nextseq()
  if SEQ then
    SEQ = SEQ + 1
    return SEQ
  end
  return redis.call('INCR', P .. 'seq')
end
local function counted(delta)
  if COUNT then
    COUNT = COUNT + delta
    return COUNT
  end
  return redis.call('INCRBY', P .. 'count', delta)
end
local function announce(ns, change, key, entry)
  local seq = tostring(nextseq()) -- formatted once, not at every use
  local record = seq .. ':' .. ORIGIN .. ':' .. change .. packkey(key) ..
    struct.pack('>I4', #entry) .. entry
  if PUBS then
    local records = later(PUBS, CH .. ns, '')
    records[#records + 1] = record
    VERSIONS[ns] = seq
  else
    redis.call(PUB, CH .. ns, record)
    redis.call('SET', P .. 'v:' .. ns, seq, 'EX', VERSION_TTL)
  end
  return seq
end
local function leased(daemon)
  return redis.call('EXISTS', P .. 'lease:' .. daemon) == 1
end
local function stamp(ns, key, seq, signed, unsigned_before)
  -- unsigned_before: the registration replaced had no signed record, or there was none
  local m = packkey(key) .. ns
  zadd(P .. 'c:' .. ns, seq, key)
  zadd(P .. 'c', seq, m)
  if signed then
    zadd(P .. 'cs:' .. ns, seq, key)
    zadd(P .. 'cs', seq, m)
  elseif not unsigned_before then
    redis.call('ZREM', P .. 'cs:' .. ns, key)
    redis.call('ZREM', P .. 'cs', m)
  end
end
local function add(ns, key, entry, token, daemon, session, raw, signed)
  -- the key holds nothing in ns (any registration it had is detached)
  counted(1)
  if token == '' then
    redis.call('HINCRBY', P .. 'ttlcount', key, 1)
  else
    redis.call('SADD', P .. 's:' .. token, packkey(key) .. ns)
    if not (KNOWN and KNOWN[token]) then
      redis.call('SADD', P .. 'd:' .. daemon, session)
      if KNOWN then KNOWN[token] = true end
    end
  end
  if raw then
    redis.call('HSET', P .. 'owner', key, token)
    redis.call('HINCRBY', P .. 'owncount', key, 1)
  end
  redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry)
  local seq = announce(ns, 'R', key, entry)
  zadd(P .. 'o:' .. ns, seq, key, true)
  stamp(ns, key, seq, signed, true)
  return seq
end
local function detach(ns, key, holder)
  flush_later()
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
  counted(-1)
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
  local seq = nextseq()
  redis.call(PUB, CH .. '\\255' .. daemon, seq .. ':' .. session .. ':' .. packkey(key) .. ns)
end
local function next_expiry()
  local first = redis.call('ZRANGE', P .. 'x', 0, 0, 'WITHSCORES')
  return first[2] or ''
end
local function owner_of(key)
  if OWNER ~= nil then return OWNER ~= '' and OWNER end
  return redis.call('HGET', P .. 'owner', key)
end
local function foreign_owner(key, token)
  local o = owner_of(key)
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
  local ck = P .. 'cl:' .. token -- the ids it claimed (a cluster's keys' home)
  for _, key in ipairs(redis.call('SMEMBERS', ck)) do
    if redis.call('HGET', P .. 'claim', key) == token then
      redis.call('HDEL', P .. 'claim', key)
    end
  end
  redis.call('DEL', ck)
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
  local origin = ORIGIN -- what the daemon held ends: nobody's request (all are told)
  ORIGIN = ''
  drop_daemon(other)
  ORIGIN = origin
  return true
end
local function register(daemon, session, ns, key, entry, raw, signed, per_session, most,
                        claimed)
  -- One REGISTER of a live session: its sequence number, or why it is refused.
  -- claimed: a raw session's id claimed in its home partition (a cluster), not here
  local token = daemon .. '/' .. session
  ORIGIN = token
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  local holder = v and split(v)
  if v and holder == token then
    -- its own, replaced (a raw session that holds a key also owns it: no owner check)
    local same = string.sub(v, #token + 2) == entry
    if not same then redis.call('HSET', P .. 'r:' .. ns, key, token .. '|' .. entry) end
    local seq = announce(ns, 'R', key, entry)
    stamp(ns, key, seq, signed, same and not signed)
    return seq
  end
  if raw and not claimed then
    local owner = redis.call('HGET', P .. 'owner', key)
    if owner and owner ~= token then
      if not vacated(owner, daemon) then return 'AUTH' end
      v = redis.call('HGET', P .. 'r:' .. ns, key)
      holder = v and split(v)
    end
  end
  if v and holder ~= '' and holder ~= token and vacated(holder, daemon) then
    v = redis.call('HGET', P .. 'r:' .. ns, key)
    holder = v and split(v)
  end
  if v and (holder ~= '' or raw) then
    return 'AUTH' -- another session's, or a TTL registration a raw session cannot vouch for
  end
  local held = HELD and HELD[token] or redis.call('SCARD', P .. 's:' .. token)
  if held >= per_session then return 'LIMIT' end
  if not v and (COUNT or tonumber(redis.call('GET', P .. 'count') or '0')) >= most then
    return 'FULL'
  end
  if v then detach(ns, key, '') end -- the id's own TTL registration, replaced
  local seq = add(ns, key, entry, token, daemon, session, raw and not claimed, signed)
  if HELD then HELD[token] = held + 1 end
  return seq
end
"""

_REGISTER_MANY = """
-- ARGV[4..6]: daemon, registrations per session, registrations in all; then five per
-- REGISTER: session, namespace, peer key, entry, flags (the sum of 1: raw stream,
-- 2: signed, 4: the raw session's id claimed in its home partition, on a cluster).
-- The answer is one string, an item per REGISTER separated by commas: its sequence
-- number, AUTH, LIMIT, FULL, LEASE, or E and the error that stopped it.
local daemon, per_session, most = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local out = {}
if not leased(daemon) then
  for i = 7, #ARGV, 5 do out[#out + 1] = 'LEASE' end
  return table.concat(out, ',')
end
local seq0 = tonumber(redis.call('GET', P .. 'seq') or '0')
local count0 = tonumber(redis.call('GET', P .. 'count') or '0')
SEQ, COUNT, HELD, KNOWN, PUBS, ZADDS, VERSIONS = seq0, count0, {}, {}, {}, {}, {}
for i = 7, #ARGV, 5 do
  local f = tonumber(ARGV[i + 4])
  local ok, r = pcall(register, daemon, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
                      f % 2 == 1, f % 4 >= 2, per_session, most, f >= 4)
  if not ok then
    if type(r) == 'table' then r = r.err end
    r = 'E' .. string.gsub(tostring(r), ',', ';')
  end
  out[#out + 1] = r
end
-- the sequence and the versions first: nothing may ever be numbered twice
if SEQ ~= seq0 then redis.call('SET', P .. 'seq', SEQ) end
if COUNT ~= count0 then redis.call('SET', P .. 'count', COUNT) end
for ns, seq in pairs(VERSIONS) do redis.call('SET', P .. 'v:' .. ns, seq, 'EX', VERSION_TTL) end
flush_later()
for _, channel in ipairs(PUBS) do redis.call(PUB, channel, table.concat(PUBS[channel])) end
return table.concat(out, ',')
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
-- ARGV[9], on a cluster: the id's claimant ('' none), read from its home partition
local daemon, session, ns, key = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local raw, token = ARGV[8] == '1', ARGV[4] .. '/' .. ARGV[5]
OWNER = ARGV[9]
ORIGIN = token
if not leased(daemon) then return {'LEASE', 'lease lost'} end
if remove(ns, key, token) then return {'OK', '1'} end
if not raw then
  -- authenticated as the id: its TTL registration, or another such session's
  local v = redis.call('HGET', P .. 'r:' .. ns, key)
  local holder = v and split(v)
  if v and (holder == '' or owner_of(key) ~= holder) then
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

_DISCOVER = """
-- A live DISCOVER: the namespace's version (the sequence number of its latest change),
-- then, unless it is ARGV[6] (what the daemon holds already), its first ARGV[5]
-- registrations (0: all) as one string: for each, a 4-byte length and TOKEN|ENTRY.
local ns, limit, known = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local vkey = P .. 'v:' .. ns
local version = redis.call('GET', vkey)
if not version then -- unchanged for long: any later change has a greater number
  version = redis.call('GET', P .. 'seq') or '0'
  redis.call('SET', vkey, version, 'EX', VERSION_TTL)
end
if version == known then return {version} end
local keys = redis.call('ZRANGE', P .. 'o:' .. ns, 0, limit - 1)
local parts, n = {}, 0
for first = 1, #keys, 500 do
  local last = math.min(#keys, first + 499)
  local values = redis.call('HMGET', P .. 'r:' .. ns, unpack(keys, first, last))
  for i = 1, #values do
    local v = values[i]
    if v then
      parts[n + 1] = struct.pack('>I4', #v)
      parts[n + 2] = v
      n = n + 2
    end
  end
end
return {version, table.concat(parts)}
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
redis.call('SET', P .. 'seq', '0', 'NX') -- on a cluster, the key its scripts name
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
-- ARGV[6]: 0 an authenticated session, 1 a raw one, 2 a raw one whose ids are claimed
-- in their home partitions (a cluster)
local daemon, session, raw, claimed = ARGV[4], ARGV[5], ARGV[6] ~= '0', ARGV[6] == '2'
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
  elseif raw and not claimed and foreign_owner(key, token) then
    out[#out + 1] = packkey(key) .. ns
  else
    add(ns, key, entry, token, daemon, session, raw and not claimed, signed)
  end
end
return out
"""


_CLAIM = """
-- On a cluster, raw sessions' ids are claimed in their home partition (ARGV[5..]: a
-- session and an id, for each claim): each is the session's if nobody else's claim
-- stands (the claimant's daemon gone counts as nobody's). The answer: '1' (its own) or
-- '0' for each.
local daemon = ARGV[4]
if not leased(daemon) then return 'LEASE' end
local out = {}
for i = 5, #ARGV, 2 do
  local session, key = ARGV[i], ARGV[i + 1]
  local token = daemon .. '/' .. session
  local c = redis.call('HGET', P .. 'claim', key)
  local mine = not c or c == token
  if not mine then
    local cut = string.find(c, '/[^/]*$')
    local other = string.sub(c, 1, cut - 1)
    mine = other ~= daemon and not (leased(other) and listening(other))
  end
  if mine then
    redis.call('HSET', P .. 'claim', key, token)
    redis.call('SADD', P .. 'cl:' .. token, key)
    redis.call('SADD', P .. 'd:' .. daemon, session)
  end
  out[#out + 1] = mine and '1' or '0'
end
return table.concat(out)
"""

_RELEASE = """
-- A raw session holds no registration of these ids (ARGV[6..]) any more: its claims end.
local token = ARGV[4] .. '/' .. ARGV[5]
for i = 6, #ARGV do
  if redis.call('HGET', P .. 'claim', ARGV[i]) == token then
    redis.call('HDEL', P .. 'claim', ARGV[i])
  end
  redis.call('SREM', P .. 'cl:' .. token, ARGV[i])
end
return 1
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


REGISTER_MANY = _script("register_many", _REGISTER_MANY)
UNREGISTER = _script("unregister", _UNREGISTER)
SNAPSHOT = _script("snapshot", _SNAPSHOT)
DISCOVER = _script("discover", _DISCOVER)
DROP_SESSION = _script("drop_session", _DROP_SESSION)
DROP_DAEMON = _script("drop_daemon", _DROP_DAEMON)
LEASE = _script("lease", _LEASE)
REAP = _script("reap", _REAP)
PRUNE = _script("prune", _PRUNE)
SYNC_SESSION = _script("sync_session", _SYNC_SESSION)
REGISTER_TTL = _script("register_ttl", _REGISTER_TTL)
EXPIRE = _script("expire", _EXPIRE)
DISCOVER_SINCE = _script("discover_since", _DISCOVER_SINCE)
CLAIM = _script("claim", _CLAIM)
RELEASE = _script("release", _RELEASE)
ALL = (
    REGISTER_MANY,
    UNREGISTER,
    SNAPSHOT,
    DISCOVER,
    DROP_SESSION,
    DROP_DAEMON,
    LEASE,
    REAP,
    PRUNE,
    SYNC_SESSION,
    REGISTER_TTL,
    EXPIRE,
    DISCOVER_SINCE,
    CLAIM,
    RELEASE,
)
