"""Write a batch's results to Redis in one round trip, counting every chunk exactly once.

A Lua script (EVALSHA) runs per batch. For each chunk it claims ``keys.chunk(id)`` with
``SET NX EX``; only a fresh claim applies the chunk's deltas, so a redelivered batch (acks
are late, workers can die) adds nothing but ``totals.duplicates`` (and no threshold hits).

Threshold rules keep a sliding window per (rule, key): the log times of the key's latest
matches, at most the rule's ``count`` of them, as a short string in the rule's hash of
windows (``HGET`` shows them). That many are enough to tell exactly whether the window holds
``count`` matches. The script replays a key's hits from all the batch's fresh chunks in
memory, and reads and writes all of a batch's windows of one rule with one ``HMGET`` (and one
of the previous generation's hash for the keys the current one lacks) and one ``HSET``: a
key of its own per window, with its own TTL, cost Redis three times as much per key, and
most keys (source addresses) are seen once. Hashes are replaced a generation (the rule's
window plus an hour) at a time instead of expiring key by key (see ``keys.windows``). The
same script trims each window, counts it and, when it crosses the rule's count, writes one
alert to ``keys.alerts``, so the count holds across any number of worker processes without a
race. The arguments travel as one msgpack blob, decoded in Lua by
``cmsgpack``. Every key name is computed here from :class:`logsig.keys.Keys` and passed in,
so the key schema stays defined in one place.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain, repeat
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

-- Threshold windows. A rule's windows are the fields of one hash, key value -> the log times
-- of the key's latest `count` matches (oldest first, as Lua prints numbers: 14 digits); only
-- they decide a crossing. A hash serves one generation (`gen`: the rule's window plus an
-- hour): its TTL counts down from two generations, and once half of that is gone it becomes
-- the rule's previous hash (the older previous one is unlinked, freed in the background)
-- and the next hit starts a new one. A key is read from the current hash, else from the
-- previous, and written to the current, so it lives one to two generations after its last
-- hit. A batch's keys cost an HMGET of each hash and one HSET per rule, not a key each.
--
-- The batch's hits come per rule, in columns (args[7]: four values per rule): its slot in
-- the rules' {id, severity, count, window, gen, hash, previous hash} (args[6]); its keys;
-- each key's first event, four values: chunk (its index in args[4]), log time, agent (an
-- index in args[8]), hits; and the later events of any key, five values: the key's index,
-- then as above. Events are in the order they were read. Only events of chunks claimed
-- fresh here count. Most keys (source addresses) come once, with no window yet: they cost
-- no Lua table. Each event trims the window to its own time's window and adds its hits; an
-- alert is raised when that crosses the count: below it before the event, at or above it
-- after. It stays quiet while the window stays up. The events are replayed in memory. A
-- batch's alerts are written after its chunks, rule by rule, key by key as first read.
local rules, names = args[6], args[8]
local is_fresh = {}  -- chunk index -> true once claimed here
local SLICE = 1000  -- fields per HMGET/HSET: unpack() is bounded by Lua's C stack
local function alert(key, m, n, first, last, agent)
  redis.call('XADD', alerts, 'MAXLEN', '~', maxlen, '*', 'rule', rules[m + 1],
             'severity', rules[m + 2], 'key', key, 'count', n, 'window', rules[m + 4],
             'first', string.format('%.3f', first), 'last', string.format('%.3f', last),
             'agent', names[agent])
  raised = raised + 1
end
local function hmget(hash, fields)  -- fields: at least one
  if #fields <= SLICE then return redis.call('HMGET', hash, unpack(fields)) end
  local out = {}
  for i = 1, #fields, SLICE do
    local got = redis.call('HMGET', hash, unpack(fields, i, math.min(i + SLICE - 1, #fields)))
    for j = 1, #got do out[i + j - 1] = got[j] end
  end
  return out
end
-- The windows of `keys` as stored (false where none), turning the rule's hash if it is due.
local function read_windows(m, keys)
  local hash, previous, gen = rules[m + 6], rules[m + 7], rules[m + 5]
  local ttl = redis.call('TTL', hash)
  if ttl >= 0 and ttl <= gen then
    redis.call('UNLINK', previous)
    redis.call('RENAME', hash, previous)
    redis.call('EXPIRE', previous, 2 * gen)  -- a safety net: the next turn unlinks it
    ttl = -2
  end
  local raws, missing, where = {}, keys, nil
  if ttl ~= -2 then
    raws = hmget(hash, keys)
    missing, where = {}, {}
    for i = 1, #keys do
      if not raws[i] then
        missing[#missing + 1] = keys[i]
        where[#missing] = i
      end
    end
  end
  if #missing > 0 then
    local old = hmget(previous, missing)
    for j = 1, #missing do raws[where and where[j] or j] = old[j] end
  end
  return raws
end
local function write_windows(m, fields)
  local hash = rules[m + 6]
  for i = 1, #fields, 2 * SLICE do
    redis.call('HSET', hash, unpack(fields, i, math.min(i + 2 * SLICE - 1, #fields)))
  end
  if redis.call('TTL', hash) == -1 then redis.call('EXPIRE', hash, 2 * rules[m + 5]) end
end
-- The window after a key's events (evs: time, agent, hits, ...) given the window read.
local function replay(key, m, raw, evs)
  local count, window = rules[m + 3], rules[m + 4]
  local times = {}  -- the window is times[lo..last]
  if raw then
    for t in string.gmatch(raw, '%S+') do times[#times + 1] = tonumber(t) end
  end
  local lo, last = 1, #times
  for e = 1, #evs, 3 do
    local ts, n = evs[e], evs[e + 2]
    local stale = ts - window
    local kept, before = {}, 0
    for j = lo, last do
      if times[j] >= stale then
        before = before + 1
        kept[before] = times[j]
      end
    end
    for j = before + 1, before + math.min(n, count) do kept[j] = ts end
    if before > 0 then table.sort(kept) end  -- log times may come out of order
    if before < count and before + n >= count then
      alert(key, m, before + n, kept[1], ts, evs[e + 1])
    end
    times, last = kept, #kept
    lo = math.max(1, last - count + 1)
    if e + 3 <= #evs then
      -- As the stored string holds them (14 digits), so the next event decides as it would
      -- after a read: batching the hits differently never changes an alert.
      for j = lo, last do times[j] = tonumber(tostring(times[j])) end
    end
  end
  return table.concat(times, ' ', lo, last)
end
-- Whether a rule has an event of a fresh chunk (always, unless a chunk was redelivered).
local function has_fresh(first, more)
  if dup == 0 or next(more) ~= nil then return true end
  for f = 1, #first, 4 do
    if is_fresh[first[f]] then return true end
  end
  return false
end
local function threshold_hits(slot, keys, first, later)
  local m = (slot - 1) * 7
  local count = rules[m + 3]
  local more = {}  -- key index -> its later fresh events (time, agent, hits, ...)
  for j = 1, #later, 5 do
    if is_fresh[later[j + 1]] then
      local i = later[j]
      local evs = more[i]
      if not evs then
        evs = {}
        more[i] = evs
      end
      evs[#evs + 1], evs[#evs + 2], evs[#evs + 3] = later[j + 2], later[j + 3], later[j + 4]
    end
  end
  if not has_fresh(first, more) then return end  -- all in redelivered chunks: no change
  local raws = read_windows(m, keys)
  local fields = {}
  for i = 1, #keys do
    local f = 4 * i - 3
    local first_fresh, evs = is_fresh[first[f]], more[i]
    local raw, value = raws[i], nil
    if first_fresh and not evs and not raw then
      -- One event and no window yet (most keys): nothing to trim or sort. Lua 5.1's
      -- string.rep has no separator; tostring formats as table.concat does.
      local ts, n = first[f + 1], first[f + 3]
      if n >= count then alert(keys[i], m, n, ts, ts, first[f + 2]) end
      value = tostring(ts)
      if n > 1 then  -- a count is at least 2
        value = string.rep(value .. ' ', math.min(n, count) - 1) .. value
      end
    elseif first_fresh or evs then
      local all = evs
      if first_fresh then
        all = {first[f + 1], first[f + 2], first[f + 3]}
        for j = 1, evs and #evs or 0 do all[3 + j] = evs[j] end
      end
      value = replay(keys[i], m, raw, all)
    end
    if value then
      fields[#fields + 1] = keys[i]
      fields[#fields + 1] = value
    end
  end
  if #fields > 0 then write_windows(m, fields) end
end

for ci, c in ipairs(args[4]) do
  if redis.call('SET', c[1], '1', 'NX', 'EX', chunk_ttl) then
    fresh = fresh + 1
    is_fresh[ci] = true
    redis.call('HINCRBY', totals, 'lines', c[2])
    redis.call('HINCRBY', totals, 'bytes', c[3])
    redis.call('HINCRBY', totals, 'matches', c[4])
    if c[10] > 0 then redis.call('HINCRBY', totals, 'truncated', c[10]) end
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
    for _, g in ipairs(c[8]) do
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'rule', g[1], 'severity', g[2],
                 'agent', g[3], 'source', g[4], 'time', g[5], 'count', g[6], 'lines', g[7])
    end
  else
    dup = dup + 1
    redis.call('HINCRBY', totals, 'duplicates', c[2])
  end
end
local thresholds = args[7]
for i = 1, #thresholds, 4 do
  threshold_hits(thresholds[i], thresholds[i + 1], thresholds[i + 2], thresholds[i + 3])
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
  for _, c in ipairs(args[4]) do redis.call('RPUSH', reply, c[9]) end
  redis.call('EXPIRE', reply, 3600)
end
-- The stored batch is done with: a redelivered task finds it gone and does nothing.
if args[5] ~= '' then redis.call('DEL', args[5]) end
return {fresh, dup, raised}
"""


def _flat(counts: dict[str, int]) -> list[Any]:
    return [x for item in counts.items() for x in item]


WINDOW_TTL_EXTRA = 3600
"""Seconds a threshold window outlives its rule's window at least (log times may lag the
clock): a generation of the rule's window hashes lasts the window plus this."""


class ResultStore:
    """The worker's only writer to Redis; one instance per worker process."""

    def __init__(self, client: redis.Redis, settings: Settings, rules: Sequence[Rule] = ()) -> None:
        """``rules`` are the engine's, in its order: threshold hits name them by index."""
        self.client = client
        self.rules = tuple(rules)
        # Stored batches are msgpack bytes: a second client that does not decode replies.
        self._raw = redis.Redis.from_url(settings.redis_url)
        self.keys = Keys(settings.key_prefix)
        self.settings = settings
        self._record = client.register_script(_RECORD)
        self._batch_prefix = self.keys.batch("")
        # Threshold rules by slot (1-based, as Lua counts): {id, severity, count, window,
        # generation (the rule's window plus an hour), hash, previous hash}.
        self._slots: dict[int, int] = {}
        self._threshold_rules: list[Any] = []
        for r, rule in enumerate(self.rules):
            if rule.threshold is not None:
                self._slots[r] = len(self._slots) + 1
                t = rule.threshold
                self._threshold_rules += (rule.id, rule.severity, t.count, t.window,
                                          math.ceil(t.window) + WINDOW_TTL_EXTRA,
                                          self.keys.windows(rule.id),
                                          self.keys.previous_windows(rule.id))

    def is_batch_key(self, key: object) -> bool:
        """Whether a task argument names a stored batch (and nothing else in Redis)."""
        return isinstance(key, str) and key.startswith(self._batch_prefix) and len(key) > len(
            self._batch_prefix)

    def fetch(self, key: str) -> bytes | None:
        """The packed batch stored under ``key`` (bytes, not decoded text), or None."""
        return self._raw.get(key)  # type: ignore[return-value]

    def discard(self, key: str) -> None:
        """Drop a stored batch that cannot be processed (it was logged by the caller)."""
        self._raw.delete(key)

    def record(self, deltas: Sequence[ChunkDelta], now: float | None = None,
               reply_to: str | None = None, stored_as: str | None = None) -> tuple[int, int]:
        """Apply the deltas of new chunks; returns (new chunks, duplicate chunks).

        With ``reply_to`` (a gateway id), the ids of all the batch's chunks, new or not, are
        pushed to that gateway's ``keys.counted`` list in the same atomic script; with
        ``stored_as``, the stored batch is deleted there too.
        """
        if not deltas:
            if stored_as is not None:
                self.discard(stored_as)
            return 0, 0
        now = time.time() if now is None else now
        k, s = self.keys, self.settings
        chunks = [[k.chunk(d.chunk_id), d.lines, d.bytes, d.matches, _flat(d.signatures),
                   _flat(d.agent_lines),
                   [x for host, c in d.agent_signatures.items() for x in (k.agent(host), _flat(c))],
                   [[g.rule.id, g.rule.severity, g.host, g.source, f"{g.time:.3f}", g.count,
                     "\n".join(g.samples)] for g in d.groups],
                   d.chunk_id, d.truncated]
                  for d in deltas]
        thresholds, agents = self._thresholds(deltas)
        blob = msgpack.packb([s.chunk_ttl, s.minute_ttl, s.match_stream_maxlen, chunks,
                              stored_as or "", self._threshold_rules, thresholds, agents],
                             unicode_errors="replace")
        keys = [k.totals, k.signatures, k.agents, k.minute(now), k.matches, k.alerts]
        if reply_to is not None:
            keys.append(k.counted(reply_to))
        fresh, dup, _alerts = self._record(keys=keys, args=[blob])
        return int(fresh), int(dup)

    def _thresholds(self, deltas: Sequence[ChunkDelta]) -> tuple[list[Any], list[str]]:
        """The batch's threshold hits in the script's columns (see :class:`_Columns`), per
        rule with its slot in the script's rule table, and the agents they name."""
        slots = self._slots
        agents: dict[str, int] = {}
        by_slot: dict[int, _Columns] = {}
        for c, delta in enumerate(deltas, 1):
            for r, ts, agent, counts in delta.hits:
                a = agents.setdefault(agent, len(agents) + 1)
                columns = by_slot.get(slots[r])
                if columns is None:
                    columns = by_slot[slots[r]] = _Columns()
                columns.add(c, ts, a, counts)
        out = [x for slot, columns in by_slot.items()
               for x in (slot, columns.keys, columns.first, columns.later)]
        return out, list(agents)

    def publish_rules(self, rules: Iterable[Rule]) -> None:
        """Rule id -> {title, severity} in ``keys.rules``, for readers of the counters."""
        mapping: dict[Any, Any] = {r.id: json.dumps(r.metadata()) for r in rules}
        if mapping:
            self.client.hset(self.keys.rules, mapping=mapping)


class _Columns:
    """One threshold rule's hits in a batch, as the result script reads them.

    ``keys``: each key once, in the order first read. ``first``: each key's first event,
    four values: chunk number (from 1), log time, agent number (from 1), hits. ``later``: the
    keys' other events, five values: key number (from 1), then the same four, in the order
    read. Within a chunk, a key's hits at one time from one agent are one event (summed where
    first read), as the result script has always replayed them.
    """

    __slots__ = ("first", "index", "keys", "later", "later_at")

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self.first: list[Any] = []
        self.later: list[Any] = []
        self.later_at: dict[tuple[int, int, float, int], int] = {}  # event -> its hits' index

    def add(self, chunk: int, ts: float, agent: int, counts: Counter[str]) -> None:
        """One segment's hits per key. When none of its keys was read before in the batch
        (the usual case) they are added with C-level calls, not a step per key."""
        if not self.index.keys().isdisjoint(counts):
            self._merge(chunk, ts, agent, counts)
            return
        size, known = len(counts), len(self.keys)
        self.index.update(zip(counts, range(known + 1, known + size + 1), strict=True))
        self.keys += counts
        self.first += chain.from_iterable(zip(repeat(chunk, size), repeat(ts, size),
                                              repeat(agent, size), counts.values(), strict=True))

    def _merge(self, chunk: int, ts: float, agent: int, counts: Counter[str]) -> None:
        first, later = self.first, self.later
        for key, n in counts.items():
            i = self.index.get(key)
            if i is None:
                self.keys.append(key)
                self.index[key] = len(self.keys)
                first += (chunk, ts, agent, n)
            elif first[4 * i - 4:4 * i - 1] == [chunk, ts, agent]:
                first[4 * i - 1] += n
            else:
                event = (i, chunk, ts, agent)
                at = self.later_at.get(event)
                if at is None:
                    self.later_at[event] = len(later) + 4
                    later += (*event, n)
                else:
                    later[at] += n


def connect(settings: Settings) -> redis.Redis:
    """A client for ``REDIS_URL`` that returns str (the stored lines are UTF-8)."""
    return redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                health_check_interval=30)
