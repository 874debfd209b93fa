"""What the bus runs and keeps inside Redis: its Lua scripts, and the shard streams' entry format.

Each script is one round trip that reads and writes atomically on the server; ``RedisBus``
registers them (EVALSHA, loaded again if Redis lost them) and calls them by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from candlewick.schema import Tick

# Claims for a batch of keys. ARGV[1]: TTL seconds; ARGV[2]: key prefix; ARGV[3]: one line per
# tick, "SYMBOL<tab>KEY" (symbols hold no tab; keys with a newline go the slow way, CLAIM_KEYS).
# KEYS[1] only routes the call on Cluster (the symbol's slot: every key made here has its hash tag).
# Returns one character per tick: "1" new (now claimed), "0" seen before. One argument and one
# string reply instead of one per key: the client's packing and parsing cost stops growing per key.
CLAIM = r"""
local out, n, p, ttl = {}, 0, ARGV[2], ARGV[1]
for sym, key in string.gmatch(ARGV[3], '([^\t\n]*)\t([^\n]*)') do
  n = n + 1
  if redis.call('SET', p .. '{' .. sym .. '}:' .. key, '1', 'NX', 'EX', ttl) then out[n] = '1' else out[n] = '0' end
end
return table.concat(out)
"""
# The same with every key spelled out in KEYS (for keys that contain a newline).
CLAIM_KEYS = """
local out = {}
for i, k in ipairs(KEYS) do
  if redis.call('SET', k, '1', 'NX', 'EX', ARGV[1]) then out[i] = '1' else out[i] = '0' end
end
return table.concat(out)
"""
# KEYS[1]: id counter; KEYS[2]: outbox rows published (sorted set, score = when);
# ARGV: n, channel, payload, now (s), keep (s), then the outbox row ids the payload holds.
# All or nothing: if any of those rows was published already (by another process's sweep),
# nothing is published and the reply is a string, the 1-based positions of those rows joined
# by ","; else the rows are marked and the reply is the first id of the n.
PUBLISH = """
local done = {}
for i = 6, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then done[#done + 1] = tostring(i - 5) end
end
if #done > 0 then return table.concat(done, ',') end
local now = tonumber(ARGV[4])
if #ARGV >= 6 then
  for i = 6, #ARGV do redis.call('ZADD', KEYS[2], now, ARGV[i]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
end
local last = redis.call('INCRBY', KEYS[1], ARGV[1])
local first = last - tonumber(ARGV[1]) + 1
redis.call('PUBLISH', ARGV[2], string.format('%.0f', first) .. ' ' .. ARGV[3])
return first
"""
# KEYS[1]: lease; ARGV: owner, ttl ms. Take a free lease or renew our own: 1, else 0.
LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# KEYS[1]: lease; ARGV[1]: owner. Give it up only if it is still ours.
UNLEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def encode_entry(ticks: Sequence[Tick]) -> dict[bytes, bytes]:
    """A shard stream entry holding ``ticks``: one field, ``t``, a JSON array of tick tuples."""
    return {b"t": orjson.dumps([(_key_text(t[0]), *t[1:]) for t in ticks])}


def decode_entry(fields: dict) -> list[Tick]:
    """The ticks of a shard stream entry, as ``encode_entry`` wrote them (field names bytes or str)."""
    raw = fields.get(b"t") or fields.get("t")
    return [Tick(_key_of(row[0]), *row[1:]) for row in orjson.loads(raw)]


def _key_text(key: bytes | str) -> str:
    """A key in a stream entry: a digest (the decoder's 16 bytes) as ``#`` and its 32 hex digits."""
    return "#" + key.hex() if type(key) is bytes else key


def _key_of(text: str) -> bytes | str:
    return bytes.fromhex(text[1:]) if len(text) == 33 and text[0] == "#" else text
