"""The result store on a real redis-server: exactly-once per chunk, every key as documented."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from logsig.batch import Batch, Chunk, Segment
from logsig.errors import ProtocolError
from logsig.keys import Keys
from logsig.settings import Settings
from workers.aggregate import MATCH_SAMPLES, Span, _groups, aggregate, flatten, lines_at
from workers.engine import ReferenceEngine
from workers.rules import load_rules
from workers.tasks import WorkerState, build_state, process_batch, process_stored, scan_flat

# Threshold rules add matches (and alerts) of their own; tests/test_thresholds.py covers them.
PLAIN_RULES = [r for r in load_rules() if r.threshold is None]
NOW = 1_700_000_000.0  # 2023-11-14 22:13 UTC
KEYS = Keys("logsig")

SSH_FAIL = "sshd[7]: Failed password for root from 203.0.113.9 port 22 ssh2"
SSH_INVALID = "sshd[8]: Invalid user bob from 203.0.113.10"
DOTENV = '203.0.113.4 - - [01/Jan/2024:00:00:00 +0000] "GET /.env HTTP/1.1" 404 1 "-" "-"'
OOM = "kernel: Out of memory: Killed process 42 (java) total-vm:1kB"


@pytest.fixture
def state(redis_server, redis_client: redis.Redis) -> WorkerState:  # type: ignore[no-untyped-def]
    return build_state(Settings(redis_url=redis_server.url, chunk_ttl=600, minute_ttl=300),
                       PLAIN_RULES)


def make_batch() -> Batch:
    a = Chunk("agent1-1", [Segment.of("web1", "/var/log/auth.log", 1700.5,
                                   [SSH_FAIL, "ok", SSH_FAIL, SSH_INVALID]),
                           Segment.of("web1", "access.log", 1701.0, [DOTENV, "GET / 200"])])
    b = Chunk("agent2-1", [Segment.of("db1", "kern.log", 1702.25, [OOM, "ok é"])])
    return Batch("logsig", [a, b])


def test_batch_writes_every_documented_key(state: WorkerState,
                                           redis_client: redis.Redis) -> None:
    assert process_batch(state, make_batch(), now=NOW) == (2, 0)
    r = redis_client
    assert r.hgetall(KEYS.totals) == {
        "lines": "8", "batches": "1", "chunks": "2", "matches": "5",
        "bytes": str(sum(len(s.encode()) for s in [SSH_FAIL, "ok", SSH_FAIL, SSH_INVALID,
                                                    DOTENV, "GET / 200", OOM, "ok é"])),
    }
    assert r.hgetall(KEYS.signatures) == {"sshd-failed-password": "2", "sshd-invalid-user": "1",
                                          "web-dotenv-probe": "1", "kernel-oom-killer": "1"}
    assert r.hgetall(KEYS.agents) == {"web1": "6", "db1": "2"}
    assert r.hgetall(KEYS.agent("web1")) == {"sshd-failed-password": "2",
                                             "sshd-invalid-user": "1", "web-dotenv-probe": "1"}
    assert r.hgetall(KEYS.agent("db1")) == {"kernel-oom-killer": "1"}
    minute = KEYS.minute(NOW)
    assert minute == "logsig:minute:202311142213"
    assert r.hgetall(minute) == {"_lines": "8", "sshd-failed-password": "2",
                                 "sshd-invalid-user": "1", "web-dotenv-probe": "1",
                                 "kernel-oom-killer": "1"}
    assert 0 < r.ttl(minute) <= 300
    for cid in ("agent1-1", "agent2-1"):
        assert r.get(KEYS.chunk(cid)) == "1" and 0 < r.ttl(KEYS.chunk(cid)) <= 600


def test_match_stream_has_one_entry_per_rule_per_segment(state: WorkerState,
                                                         redis_client: redis.Redis) -> None:
    process_batch(state, make_batch(), now=NOW)
    entries = [fields for _, fields in redis_client.xrange(KEYS.matches)]
    assert entries[0] == {"rule": "sshd-failed-password", "severity": "medium", "agent": "web1",
                          "source": "/var/log/auth.log", "time": "1700.500", "count": "2",
                          "lines": f"{SSH_FAIL}\n{SSH_FAIL}"}
    assert [(e["rule"], e["count"]) for e in entries] == [
        ("sshd-failed-password", "2"), ("sshd-invalid-user", "1"), ("web-dotenv-probe", "1"),
        ("kernel-oom-killer", "1")]
    assert entries[1]["lines"] == SSH_INVALID
    assert entries[-1]["agent"] == "db1" and entries[-1]["time"] == "1702.250"


def test_match_stream_entry_keeps_a_sample_of_many_lines(state: WorkerState,
                                                        redis_client: redis.Redis) -> None:
    lines = [f"sshd[{n}]: Failed password for root from 203.0.113.{n} port 22 ssh2"
             for n in range(MATCH_SAMPLES + 5)]
    process_batch(state, Batch("t", [Chunk("many", [Segment.of("h", "auth", 1.0, lines)])]),
                  now=NOW)
    (entry,) = [fields for _, fields in redis_client.xrange(KEYS.matches)]
    assert entry["count"] == str(len(lines))
    assert entry["lines"].split("\n") == lines[:MATCH_SAMPLES]


def test_redelivered_batch_counts_once(state: WorkerState, redis_client: redis.Redis) -> None:
    batch = make_batch()
    assert process_batch(state, batch, now=NOW) == (2, 0)
    before = {k: redis_client.hgetall(k) for k in (KEYS.signatures, KEYS.agents, KEYS.minute(NOW))}
    assert process_batch(state, batch, now=NOW) == (0, 2)
    totals = redis_client.hgetall(KEYS.totals)
    assert totals["lines"] == "8" and totals["batches"] == "1" and totals["chunks"] == "2"
    assert totals["duplicates"] == "8"
    assert {k: redis_client.hgetall(k) for k in before} == before
    assert redis_client.xlen(KEYS.matches) == 4


def test_partly_new_batch(state: WorkerState, redis_client: redis.Redis) -> None:
    first = make_batch()
    process_batch(state, first, now=NOW)
    again = Batch("logsig", [first.chunks[1],
                             Chunk("agent2-2", [Segment.of("db1", "kern.log", 1703.0, [OOM])])])
    assert process_batch(state, again, now=NOW + 60) == (1, 1)
    totals = redis_client.hgetall(KEYS.totals)
    assert totals["batches"] == "2" and totals["chunks"] == "3"
    assert totals["lines"] == "9" and totals["duplicates"] == "2"
    assert redis_client.hget(KEYS.signatures, "kernel-oom-killer") == "2"
    assert redis_client.hgetall(KEYS.minute(NOW + 60)) == {"_lines": "1", "kernel-oom-killer": "1"}


def test_expected_counts_from_the_reference_engine(state: WorkerState,
                                                   redis_client: redis.Redis) -> None:
    """How any test can predict the counters: reference scan + aggregate."""
    lines = [ex for r in state.rules for ex in (*r.match_examples, *r.nomatch_examples)]
    batch = Batch("t", [Chunk(f"c{n}", [Segment.of(f"h{n % 3}", "s", 1.0, lines[n::4])])
                        for n in range(4)])
    flat = flatten(batch)
    pairs = ReferenceEngine(state.rules).scan(flat.all_lines())
    expected: Counter[str] = Counter()
    for delta in aggregate(batch, flat, pairs, state.rules):
        expected.update(delta.signatures)
    process_batch(state, batch, now=NOW)
    assert {k: int(v) for k, v in redis_client.hgetall(KEYS.signatures).items()} == expected
    assert sum(expected.values()) == int(redis_client.hget(KEYS.totals, "matches") or 0)


def test_lines_named_by_offset_aggregate_as_lines_named_by_index(state: WorkerState) -> None:
    """The worker's cheap path (``scan_offsets``) gives the deltas the index path gives."""
    lines = [ex for r in state.rules for ex in (*r.match_examples, *r.nomatch_examples)]
    lines = [ln for ln in lines if ln.isascii()] * 3
    batch = Batch("t", [Chunk(f"c{n}", [Segment.of(f"h{k}", f"s{n}", 1.0 + k, lines[n + k::6])
                                        for k in range(2)]) for n in range(3)])
    flat = flatten(batch)
    pairs, by_offset = scan_flat(state.engine, flat)
    assert by_offset and pairs
    by_index = state.engine.scan_buffer(flat.text.encode())
    assert len(pairs) == len(by_index)
    assert (aggregate(batch, flat, pairs, state.rules, by_offset=True)
            == aggregate(batch, flat, by_index, state.rules))


def test_stream_is_capped(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    state = build_state(Settings(redis_url=redis_server.url, match_stream_maxlen=10), PLAIN_RULES)
    for n in range(30):
        batch = Batch("t", [Chunk(f"cap-{n}", [Segment.of("h", f"s{k}", 1.0, [SSH_FAIL] * 2)
                                               for k in range(10)])])
        process_batch(state, batch, now=NOW)
    assert redis_client.hget(KEYS.signatures, "sshd-failed-password") == "600"
    assert redis_client.xlen(KEYS.matches) < 300


def test_publish_rules_metadata(state: WorkerState, redis_client: redis.Redis) -> None:
    state.store.publish_rules(state.rules)
    meta = redis_client.hgetall(KEYS.rules)
    assert set(meta) == {r.id for r in state.rules}
    assert json.loads(meta["web-log4shell"]) == {"title": "Log4Shell JNDI lookup (CVE-2021-44228)",
                                                 "severity": "critical"}


def test_key_prefix_is_respected(redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    state = build_state(Settings(redis_url=redis_server.url, key_prefix="other"), PLAIN_RULES)
    process_batch(state, make_batch(), now=NOW)
    assert all(k.startswith("other:") for k in redis_client.keys("*"))


def test_a_task_naming_any_other_key_is_refused_and_the_key_untouched(
        state: WorkerState, redis_client: redis.Redis) -> None:
    process_batch(state, make_batch(), now=NOW)
    for key in (KEYS.totals, "logsig:batch:", "other:batch:x", 42):
        with pytest.raises(ProtocolError):
            process_stored(state, key)  # type: ignore[arg-type]
    assert redis_client.hget(KEYS.totals, "lines") == "8"


def test_a_stored_batch_is_recorded_once_and_deleted(state: WorkerState,
                                                     redis_client: redis.Redis) -> None:
    key = KEYS.batch("t1")
    redis_client.set(key, make_batch().pack())
    process_stored(state, key)
    assert not redis_client.exists(key)
    process_stored(state, key)  # delivered again: the batch is gone, nothing happens
    assert redis_client.hget(KEYS.totals, "lines") == "8"
    redis_client.set(key, b"\xc1 not msgpack")
    with pytest.raises(ProtocolError):
        process_stored(state, key)
    assert not redis_client.exists(key)  # a malformed batch is dropped, not kept forever


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12),
       st.sets(st.tuples(st.integers(0, 40), st.integers(0, 5)), max_size=60))
def test_groups_are_the_pairs_by_segment_then_first_line(sizes: list[int],
                                                         raw: set[tuple[int, int]]) -> None:
    """``_groups`` (one stable sort, a bisect per segment holding matches) gives what a
    line-by-line grouping gives: per segment, each rule's lines in order, the groups ordered
    by segment, then first line, then rule."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    total = sum(sizes)
    pairs = sorted((i, r) for i, r in raw if i < total)
    spans = [Span(s, 0, "h", f"s{n}", 0.0) for n, s in enumerate(starts)]
    naive: dict[tuple[int, int], list[int]] = {}
    for i, r in pairs:
        k = max(n for n, s in enumerate(starts) if s <= i)
        naive.setdefault((k, r), []).append(i)
    want = sorted(((k, found[0], r), found) for (k, r), found in naive.items())
    got = _groups(spans, starts, pairs)
    assert [(spans.index(span), r, found) for span, r, found in got] == [
        (k, r, found) for (k, _, r), found in want]


def test_lines_at_reads_the_last_line_too() -> None:
    text = "first\nsecond line\nlast"
    assert lines_at(text, [0, 6, 18]) == ["first", "second line", "last"]
    assert lines_at(text, [18]) == ["last"] and lines_at(text, []) == []
