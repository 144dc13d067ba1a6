"""Write a batch's results to Redis in one round trip, counting every chunk exactly once.

A Lua script (EVALSHA) runs per batch. For each chunk it claims ``keys.chunk(id)`` with
``SET NX EX``; only a fresh claim applies the chunk's deltas, so a redelivered batch (acks
are late, workers can die) adds nothing but ``totals.duplicates`` (and no threshold hits).

Threshold rules keep a sliding window per (rule, key) in a sorted set scored by log time; the
same script trims it, counts it and, on a crossing, writes one alert to ``keys.alerts``, so
the count holds across any number of worker processes without a race. The arguments travel as one
msgpack blob, decoded in Lua by ``cmsgpack``. Every key name is computed here from
:class:`logsig.keys.Keys` and passed in, so the key schema stays defined in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack
import redis

from logsig.keys import Keys
from logsig.settings import Settings
from workers.aggregate import ChunkDelta
from workers.rules import Rule

_RECORD = """
local totals, sigs, agents, minute, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local alerts = KEYS[6]
local args = cmsgpack.unpack(ARGV[1])
local chunk_ttl, minute_ttl, maxlen = args[1], args[2], args[3]
local fresh, dup, raised = 0, 0, 0

-- h = {window zset, alerted flag, rule, severity, key, time, agent, count, window, member}
local function threshold_hit(h)
  local z, flag, ts, count, window = h[1], h[2], h[6], h[8], h[9]
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. string.format('%.6f', ts - window))
  -- Below the count before this hit: the window has dropped, the next crossing may alert.
  if redis.call('ZCARD', z) < count then redis.call('DEL', flag) end
  redis.call('ZADD', z, string.format('%.6f', ts), h[10])
  local ttl = math.ceil(window) + 3600
  redis.call('EXPIRE', z, ttl)
  local n = redis.call('ZCARD', z)
  if n >= count and redis.call('SET', flag, '1', 'NX', 'EX', ttl) then
    local first = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')[2]
    redis.call('XADD', alerts, 'MAXLEN', '~', maxlen, '*', 'rule', h[3], 'severity', h[4],
               'key', h[5], 'count', n, 'window', h[9], 'first', first,
               'last', string.format('%.3f', ts), 'agent', h[7])
    raised = raised + 1
  elseif n >= count then
    redis.call('EXPIRE', flag, ttl)
  end
end

for _, c in ipairs(args[4]) do
  if redis.call('SET', c[1], '1', 'NX', 'EX', chunk_ttl) then
    fresh = fresh + 1
    redis.call('HINCRBY', totals, 'lines', c[2])
    redis.call('HINCRBY', totals, 'bytes', c[3])
    redis.call('HINCRBY', totals, 'matches', c[4])
    if c[11] > 0 then redis.call('HINCRBY', totals, 'truncated', c[11]) end
    redis.call('HINCRBY', minute, '_lines', c[2])
    local s = c[5]
    for i = 1, #s, 2 do
      redis.call('HINCRBY', sigs, s[i], s[i + 1])
      redis.call('HINCRBY', minute, s[i], s[i + 1])
    end
    local a = c[6]
    for i = 1, #a, 2 do redis.call('HINCRBY', agents, a[i], a[i + 1]) end
    local per = c[7]
    for i = 1, #per, 2 do
      local counts = per[i + 1]
      for j = 1, #counts, 2 do redis.call('HINCRBY', per[i], counts[j], counts[j + 1]) end
    end
    for _, e in ipairs(c[8]) do
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'rule', e[1], 'severity', e[2],
                 'agent', e[3], 'source', e[4], 'line', e[5], 'time', e[6])
    end
    for _, h in ipairs(c[9]) do threshold_hit(h) end
  else
    dup = dup + 1
    redis.call('HINCRBY', totals, 'duplicates', c[2])
  end
end
if fresh > 0 then
  redis.call('HINCRBY', totals, 'batches', 1)
  redis.call('HINCRBY', totals, 'chunks', fresh)
  redis.call('EXPIRE', minute, minute_ttl)
end
if raised > 0 then redis.call('HINCRBY', totals, 'alerts', raised) end
local reply = KEYS[7]
if reply then
  -- End-to-end acks: the gateway acks these chunks once it pops their ids from here.
  for _, c in ipairs(args[4]) do redis.call('RPUSH', reply, c[10]) end
  redis.call('EXPIRE', reply, 3600)
end
return {fresh, dup, raised}
"""


def _flat(counts: dict[str, int]) -> list[Any]:
    return [x for item in counts.items() for x in item]


class ResultStore:
    """The worker's only writer to Redis; one instance per worker process."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.keys = Keys(settings.key_prefix)
        self.settings = settings
        self._record = client.register_script(_RECORD)

    def record(self, deltas: Sequence[ChunkDelta], now: float | None = None,
               reply_to: str | None = None) -> tuple[int, int]:
        """Apply the deltas of new chunks; returns (new chunks, duplicate chunks).

        With ``reply_to`` (a gateway id), the ids of all the batch's chunks, new or not, are
        pushed to that gateway's ``keys.counted`` list in the same atomic script.
        """
        if not deltas:
            return 0, 0
        now = time.time() if now is None else now
        k, s = self.keys, self.settings
        chunks = [[k.chunk(d.chunk_id), d.lines, d.bytes, d.matches, _flat(d.signatures),
                   _flat(d.agent_lines),
                   [x for host, c in d.agent_signatures.items() for x in (k.agent(host), _flat(c))],
                   d.events, self._hits(d), d.chunk_id, d.truncated]
                  for d in deltas]
        blob = msgpack.packb([s.chunk_ttl, s.minute_ttl, s.match_stream_maxlen, chunks],
                             unicode_errors="replace")
        keys = [k.totals, k.signatures, k.agents, k.minute(now), k.matches, k.alerts]
        if reply_to is not None:
            keys.append(k.counted(reply_to))
        fresh, dup, _alerts = self._record(keys=keys, args=[blob])
        return int(fresh), int(dup)

    def _hits(self, delta: ChunkDelta) -> list[list[Any]]:
        out: list[list[Any]] = []
        for n, h in enumerate(delta.hits):
            t = h.rule.threshold
            assert t is not None
            out.append([self.keys.threshold(h.rule.id, h.key),
                        self.keys.threshold_alerted(h.rule.id, h.key), h.rule.id,
                        h.rule.severity, h.key, h.time, h.agent, t.count, t.window,
                        f"{delta.chunk_id}:{n}"])
        return out

    def publish_rules(self, rules: Iterable[Rule]) -> None:
        """Rule id -> {title, severity} in ``keys.rules``, for readers of the counters."""
        mapping: dict[Any, Any] = {r.id: json.dumps(r.metadata()) for r in rules}
        if mapping:
            self.client.hset(self.keys.rules, mapping=mapping)


def connect(settings: Settings) -> redis.Redis:
    """A client for ``REDIS_URL`` that returns str (the stored lines are UTF-8)."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                health_check_interval=30)
