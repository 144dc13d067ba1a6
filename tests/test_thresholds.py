"""Threshold rules: sliding windows in Redis shared by independent workers, one alert per
crossing, nothing added by a redelivered chunk."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from logsig.batch import Batch, Chunk, Segment
from logsig.errors import RuleError
from logsig.keys import Keys
from logsig.settings import Settings
from workers.results import read_results
from workers.rules import Threshold, load_rules, parse_pack
from workers.tasks import WorkerState, build_state, process_batch

KEYS = Keys()
PACK = r"""
- id: ssh-burst
  title: SSH failures per source
  severity: high
  patterns: ['Failed password for \S+ from (?P<src_ip>[\d.]+) port \d+']
  threshold: {count: 3, window: 60, by: src_ip}
  examples:
    match: ['Failed password for root from 203.0.113.9 port 22 ssh2']
    nomatch: ['Accepted password for root from 203.0.113.9 port 22 ssh2']
"""
RULES = parse_pack(PACK, "burst.yml")


def fail(ip: str) -> str:
    return f"sshd[1]: Failed password for root from {ip} port 22 ssh2"


def batch(chunk_id: str, t: float, lines: list[str], host: str = "h1") -> Batch:
    return Batch("t", [Chunk(chunk_id, [Segment.of(host, "auth.log", t, lines)])])


@pytest.fixture
def workers(redis_server, redis_client: redis.Redis) -> list[WorkerState]:  # type: ignore[no-untyped-def]
    """Two independent worker states (own engine, own Redis client) on one Redis."""
    settings = Settings(redis_url=redis_server.url)
    return [build_state(settings, RULES), build_state(settings, RULES)]


def alerts(client: redis.Redis) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(KEYS.alerts)]


def window(client: redis.Redis, ip: str, rule: str = "ssh-burst") -> list[float]:
    """The match times a key's window keeps (its latest ``count``), as ``HGET`` shows them
    (from the rule's current hash, else its previous one, as the script reads them)."""
    raw = client.hget(KEYS.windows(rule), ip) or client.hget(KEYS.previous_windows(rule), ip)
    return [float(t) for t in (raw or "").split()]


GENERATION = 60 + 3600  # the test rule's window plus an hour


def test_threshold_yaml_is_parsed() -> None:
    assert RULES[0].threshold == Threshold(3, 60.0, "src_ip")
    shipped = {r.id: r.threshold for r in load_rules() if r.threshold is not None}
    assert shipped["sshd-brute-force"] == Threshold(5, 60.0, "src_ip")


@pytest.mark.parametrize(("threshold", "problem"), [
    ("{count: 3, window: 60, by: user}", "threshold.by 'user' is not a named group"),
    ("{count: 1, window: 60, by: src_ip}", "count must be an integer from 2 to 10000"),
    ("{count: 10001, window: 60, by: src_ip}", "count must be an integer from 2 to 10000"),
    ("{count: 3, window: 0, by: src_ip}", "window must be a number"),
    ("{count: 3, window: 60}", "mapping with count, window and by"),
])
def test_bad_threshold(threshold: str, problem: str) -> None:
    text = PACK.replace("{count: 3, window: 60, by: src_ip}", threshold)
    with pytest.raises(RuleError, match=f"burst.yml: rule 'ssh-burst': .*{problem}"):
        parse_pack(text, "burst.yml")


def test_crossing_across_two_workers_alerts_once(workers: list[WorkerState],
                                                 redis_client: redis.Redis) -> None:
    a, b = workers
    process_batch(a, batch("c1", 1000.0, [fail("203.0.113.9"), fail("198.51.100.1")]))
    process_batch(b, batch("c2", 1010.0, [fail("203.0.113.9")], host="h2"))
    assert alerts(redis_client) == []
    process_batch(a, batch("c3", 1020.0, [fail("203.0.113.9")]))  # third within 60 s
    process_batch(b, batch("c4", 1030.0, [fail("203.0.113.9")] * 2))  # still above: no repeat
    (alert,) = alerts(redis_client)
    assert alert == {"rule": "ssh-burst", "severity": "high", "key": "203.0.113.9",
                     "count": "3", "window": "60", "first": "1000.000", "last": "1020.000",
                     "agent": "h1"}
    # A window keeps the rule's count of latest times: enough to decide every crossing.
    assert window(redis_client, "203.0.113.9") == [1020.0, 1030.0, 1030.0]
    assert window(redis_client, "198.51.100.1") == [1000.0]
    # Windows live in one hash per rule, its TTL two generations.
    assert 2 * GENERATION - 60 < redis_client.ttl(KEYS.windows("ssh-burst")) <= 2 * GENERATION
    assert redis_client.hget(KEYS.totals, "alerts") == "1"


def test_window_slides_and_a_new_crossing_alerts_again(workers: list[WorkerState],
                                                       redis_client: redis.Redis) -> None:
    a, b = workers
    for n, t in enumerate((0.0, 10.0, 20.0)):
        process_batch((a, b)[n % 2], batch(f"w{n}", 1000.0 + t, [fail("203.0.113.9")]))
    assert len(alerts(redis_client)) == 1
    # 100 s later the window holds only the new hit: dropped below, so it re-arms.
    process_batch(a, batch("w3", 1120.0, [fail("203.0.113.9")]))
    assert window(redis_client, "203.0.113.9") == [1120.0]
    process_batch(b, batch("w4", 1121.0, [fail("203.0.113.9")] * 2))
    second = alerts(redis_client)[-1]
    assert len(alerts(redis_client)) == 2
    assert second["first"] == "1120.000" and second["last"] == "1121.000"


def test_late_times_are_windowed_by_their_own_time(workers: list[WorkerState],
                                                    redis_client: redis.Redis) -> None:
    a, b = workers
    process_batch(a, batch("o1", 1050.0, [fail("203.0.113.9")]))
    process_batch(b, batch("o2", 1000.0, [fail("203.0.113.9")]))  # an agent behind the other
    assert window(redis_client, "203.0.113.9") == [1000.0, 1050.0]
    process_batch(a, batch("o3", 1070.0, [fail("203.0.113.9")]))  # 1000 has left the window
    assert window(redis_client, "203.0.113.9") == [1050.0, 1070.0]
    assert alerts(redis_client) == []
    process_batch(b, batch("o4", 1060.0, [fail("203.0.113.9")]))
    (alert,) = alerts(redis_client)
    assert (alert["count"], alert["first"], alert["last"]) == ("3", "1050.000", "1060.000")
    assert window(redis_client, "203.0.113.9") == [1050.0, 1060.0, 1070.0]


def test_one_chunk_hitting_a_key_many_times_replays_every_hit(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    # Six segments of one chunk hit one key: two crossings, the window sliding in between.
    times = (1000.0, 1010.0, 1020.0, 1030.0, 1200.0, 1201.0)
    hosts = ("h1", "h2", "h3", "h1", "h2", "h3")
    segments = [Segment.of(host, "auth.log", t, [fail("203.0.113.9")] * (2 if t == 1201.0
                                                                       else 1))
                for host, t in zip(hosts, times, strict=True)]
    segments.insert(2, Segment.of("h1", "auth.log", 1015.0, [fail("198.51.100.1")]))
    redis_client.config_resetstat()
    process_batch(workers[0], Batch("t", [Chunk("many", segments)]))
    # One HMGET and one HSET for the rule's keys, not per key or segment.
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == 1  # no current hash yet: only the previous
    assert stats["cmdstat_hset"]["calls"] == 1
    assert "cmdstat_get" not in stats and stats["cmdstat_set"]["calls"] == 1  # the claim
    first, second = alerts(redis_client)
    assert (first["count"], first["first"], first["last"], first["agent"]) == (
        "3", "1000.000", "1020.000", "h3")
    assert (second["count"], second["first"], second["last"], second["agent"]) == (
        "3", "1200.000", "1201.000", "h3")
    assert window(redis_client, "203.0.113.9") == [1200.0, 1201.0, 1201.0]
    assert window(redis_client, "198.51.100.1") == [1015.0]


def test_a_new_key_crossing_in_one_event_keeps_count_times_and_alerts_with_all_hits(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    # One segment, five hits on a key with no window yet: the script's quick path.
    no_match = fail("x")  # no address: the rule's pattern needs digits
    process_batch(workers[0], batch("c1", 1234.5678, [fail("203.0.113.7")] * 5 + [no_match]))
    (alert,) = alerts(redis_client)
    assert (alert["key"], alert["count"], alert["first"], alert["last"], alert["agent"]) == (
        "203.0.113.7", "5", "1234.568", "1234.568", "h1")
    assert redis_client.hget(KEYS.windows("ssh-burst"), "203.0.113.7") == " ".join(
        ["1234.5678"] * 3)
    # A key below the count is written the same way, and its next hits count from it.
    process_batch(workers[0], batch("c2", 1300.0, [fail("198.51.100.2")] * 2))
    assert window(redis_client, "198.51.100.2") == [1300.0, 1300.0]
    assert len(alerts(redis_client)) == 1
    process_batch(workers[1], batch("c3", 1301.0, [fail("198.51.100.2")]))
    last = alerts(redis_client)[-1]
    assert (last["count"], last["first"], last["last"]) == ("3", "1300.000", "1301.000")


def test_a_batch_merges_a_keys_hits_from_its_fresh_chunks_only(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    a, b = workers
    process_batch(a, batch("seen", 1000.0, [fail("203.0.113.9")]))
    chunks = [Chunk("c1", [Segment.of("h1", "auth.log", 1001.0, [fail("203.0.113.9")])]),
              batch("seen", 1000.0, [fail("203.0.113.9")]).chunks[0],  # redelivered: no hits
              Chunk("c2", [Segment.of("h2", "auth.log", 1002.0, [fail("203.0.113.9")])])]
    redis_client.config_resetstat()
    assert process_batch(b, Batch("t", chunks)) == (2, 1)
    assert redis_client.info("commandstats")["cmdstat_hmget"]["calls"] == 1  # the hash
    (alert,) = alerts(redis_client)
    assert (alert["count"], alert["first"], alert["last"], alert["agent"]) == (
        "3", "1000.000", "1002.000", "h2")
    assert window(redis_client, "203.0.113.9") == [1000.0, 1001.0, 1002.0]


def test_a_keys_first_event_in_a_redelivered_chunk_counts_for_nothing(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """The script keeps a key's first event apart from its later ones: a redelivered chunk
    holding it must not count it, nor write a key that has no fresh event at all."""
    a, b = workers
    seen = Chunk("seen", [Segment.of("h1", "auth.log", 1000.0,
                                     [fail("203.0.113.9"), fail("198.51.100.7")] * 2)])
    process_batch(a, Batch("t", [seen]))
    fresh = Chunk("c2", [Segment.of("h2", "auth.log", 1002.0, [fail("203.0.113.9")])])
    assert process_batch(b, Batch("t", [seen, fresh])) == (1, 1)
    (alert,) = alerts(redis_client)  # 2 + 1: the redelivered two are not counted again
    assert (alert["count"], alert["first"], alert["last"], alert["agent"]) == (
        "3", "1000.000", "1002.000", "h2")
    assert window(redis_client, "203.0.113.9") == [1000.0, 1000.0, 1002.0]
    assert window(redis_client, "198.51.100.7") == [1000.0, 1000.0]


def test_an_agents_segments_of_one_time_are_one_event(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """Two files of one agent read at the same time hit a key as one event: the alert
    counts all its hits, not those of the first file alone."""
    chunk = Chunk("two-files", [Segment.of("h1", "auth.log", 1000.0, [fail("192.0.2.5")] * 3),
                                Segment.of("h1", "secure", 1000.0, [fail("192.0.2.5")])])
    process_batch(workers[0], Batch("t", [chunk]))
    (alert,) = alerts(redis_client)
    assert (alert["count"], alert["first"], alert["last"]) == ("4", "1000.000", "1000.000")
    assert window(redis_client, "192.0.2.5") == [1000.0] * 3


def test_merged_hits_see_earlier_times_as_stored(redis_server,  # type: ignore[no-untyped-def]
                                                redis_client: redis.Redis) -> None:
    # EventTimes carry nanoseconds; a window stores 14 digits. Merged in one batch, the
    # second hit must see the first as a GET would have: 1700000000.1235, inside the window.
    rules = parse_pack(PACK.replace("count: 3, window: 60", "count: 2, window: 10.5"), "b.yml")
    state = build_state(Settings(redis_url=redis_server.url), rules)
    chunk = Chunk("ns", [Segment.of("h1", "auth.log", 1700000000.12345678, [fail("192.0.2.1")]),
                         Segment.of("h2", "auth.log", 1700000010.6235, [fail("192.0.2.1")])])
    process_batch(state, Batch("t", [chunk]))
    (alert,) = alerts(redis_client)
    assert (alert["count"], alert["first"], alert["agent"]) == ("2", "1700000000.124", "h2")


def test_a_generation_later_the_hash_turns_and_a_key_carries_on(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """Once half its TTL is gone, the rule's hash becomes the previous one; keys found
    there carry on in the new hash, and the generation before is dropped."""
    process_batch(workers[0], batch("g1", 1000.0, [fail("203.0.113.9")] * 2))
    process_batch(workers[0], batch("g2", 1000.0, [fail("198.51.100.1")]))
    redis_client.hset(KEYS.previous_windows("ssh-burst"), "192.0.2.99", "1.0")  # long gone
    redis_client.expire(KEYS.windows("ssh-burst"), GENERATION)  # a generation has passed
    process_batch(workers[1], batch("g3", 1010.0, [fail("203.0.113.9")]))
    (alert,) = alerts(redis_client)  # 2 + 1 within the window: read from the previous hash
    assert (alert["count"], alert["first"], alert["last"]) == ("3", "1000.000", "1010.000")
    assert redis_client.hgetall(KEYS.windows("ssh-burst")) == {
        "203.0.113.9": "1000 1000 1010"}
    assert redis_client.hgetall(KEYS.previous_windows("ssh-burst")) == {
        "203.0.113.9": "1000 1000", "198.51.100.1": "1000"}
    assert 2 * GENERATION - 60 < redis_client.ttl(KEYS.windows("ssh-burst")) <= 2 * GENERATION
    assert window(redis_client, "198.51.100.1") == [1000.0]  # still read, a generation more


def test_the_current_hash_wins_and_a_hash_without_ttl_gets_one(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """A key in both hashes is read from the current one; the first turn has no previous
    hash to drop; a current hash that lost its TTL gets it back on its next write."""
    redis_client.hset(KEYS.windows("ssh-burst"), "203.0.113.9", "1000")
    redis_client.hset(KEYS.previous_windows("ssh-burst"), "203.0.113.9", "990 995")
    process_batch(workers[0], batch("w1", 1001.0, [fail("203.0.113.9")]))
    assert alerts(redis_client) == []  # 1000 + 1001: two, not the previous hash's three
    assert window(redis_client, "203.0.113.9") == [1000.0, 1001.0]
    assert 2 * GENERATION - 60 < redis_client.ttl(KEYS.windows("ssh-burst")) <= 2 * GENERATION
    redis_client.delete(KEYS.previous_windows("ssh-burst"))
    redis_client.expire(KEYS.windows("ssh-burst"), 10)  # long past its turn
    process_batch(workers[1], batch("w2", 1002.0, [fail("198.51.100.1")]))
    assert redis_client.hgetall(KEYS.previous_windows("ssh-burst")) == {
        "203.0.113.9": "1000 1001"}
    assert redis_client.hgetall(KEYS.windows("ssh-burst")) == {"198.51.100.1": "1002"}
    redis_client.persist(KEYS.windows("ssh-burst"))
    process_batch(workers[0], batch("w3", 1003.0, [fail("198.51.100.1")]))
    assert 2 * GENERATION - 60 < redis_client.ttl(KEYS.windows("ssh-burst")) <= 2 * GENERATION


def test_a_batch_reads_and_writes_windows_in_slices(redis_server,  # type: ignore[no-untyped-def]
                                                    redis_client: redis.Redis) -> None:
    """More keys in a batch than one HMGET/HSET may carry (Lua's unpack is bounded)."""
    state = build_state(Settings(redis_url=redis_server.url), RULES)
    ips = [f"10.0.{i // 250}.{i % 250}" for i in range(2600)]
    process_batch(state, batch("s1", 1000.0, [fail(ip) for ip in ips]))
    process_batch(state, batch("s2", 1001.0, [fail(ip) for ip in ips] * 2))
    assert len(alerts(redis_client)) == 2600
    assert redis_client.hlen(KEYS.windows("ssh-burst")) == 2600
    assert window(redis_client, ips[-1]) == [1000.0, 1001.0, 1001.0]


def test_windows_in_slices_from_both_hashes(redis_server,  # type: ignore[no-untyped-def]
                                            redis_client: redis.Redis) -> None:
    """Over 1,000 keys found in the current hash and over 1,000 others only in the previous
    one: each key's window is the one stored for it, in whichever hash."""
    state = build_state(Settings(redis_url=redis_server.url), RULES)
    current = [f"10.1.{i // 250}.{i % 250}" for i in range(1200)]
    previous = [f"10.2.{i // 250}.{i % 250}" for i in range(1200)]
    # A time of its own per key (within the window), so a key given another's window shows.
    stored = {ip: f"{950 + i / 100:.2f} 1000" for i, ip in enumerate(current + previous)}
    redis_client.hset(KEYS.windows("ssh-burst"), mapping={ip: stored[ip] for ip in current})
    redis_client.expire(KEYS.windows("ssh-burst"), 2 * GENERATION)
    redis_client.hset(KEYS.previous_windows("ssh-burst"),
                      mapping={**{ip: stored[ip] for ip in previous}, current[0]: "1 1"})
    interleaved = [ip for pair in zip(previous, current, strict=True) for ip in pair]
    process_batch(state, batch("both", 1001.0, [fail(ip) for ip in interleaved]))
    assert len(alerts(redis_client)) == 2400  # two stored and 1001: each crosses 3
    assert redis_client.hgetall(KEYS.windows("ssh-burst")) == {
        ip: f"{float(first):g} 1000 1001" for ip, (first, _) in
        ((ip, v.split()) for ip, v in stored.items())}


def test_two_threshold_rules_and_two_agents_in_one_chunk(
        redis_server, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    """Each rule keeps its own windows; an alert names the agent whose hit crossed."""
    user_pack = PACK.replace("ssh-burst", "user-burst").replace("src_ip", "user").replace(
        r"for \S+ from (?P<user>[\d.]+)", r"for (?P<user>\S+) from [\d.]+")
    rules = [*RULES, *parse_pack(user_pack, "user.yml")]
    state = build_state(Settings(redis_url=redis_server.url), rules)
    chunk = Chunk("two", [Segment.of("h1", "auth.log", 1000.0, [fail("192.0.2.1")] * 2),
                          Segment.of("h2", "auth.log", 1001.0, [fail("192.0.2.1")])])
    process_batch(state, Batch("t", [chunk]))
    got = {(a["rule"], a["key"], a["agent"], a["count"]) for a in alerts(redis_client)}
    assert got == {("ssh-burst", "192.0.2.1", "h2", "3"), ("user-burst", "root", "h2", "3")}
    assert window(redis_client, "root", "user-burst") == [1000.0, 1000.0, 1001.0]


def test_a_keys_events_keep_the_order_they_were_read(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """An agent's segment at a time seen earlier in the chunk does not move a key's hit
    ahead of hits read before it: K at 1000 (twice), then K at 1100, slides out of the
    window instead of crossing it."""
    chunk = Chunk("order", [Segment.of("h1", "a.log", 1100.0, [fail("192.0.2.8")]),
                            Segment.of("h1", "b.log", 1000.0, [fail("192.0.2.9")] * 2),
                            Segment.of("h1", "a.log", 1100.0, [fail("192.0.2.9")])])
    process_batch(workers[0], Batch("t", [chunk]))
    assert alerts(redis_client) == []
    assert window(redis_client, "192.0.2.9") == [1100.0]


def test_a_redelivered_batch_does_not_turn_the_hash(
        workers: list[WorkerState], redis_client: redis.Redis) -> None:
    """A batch whose chunks were all counted before reads and writes no window: not even a
    hash whose generation is over turns."""
    once = batch("once", 1000.0, [fail("203.0.113.9")])
    process_batch(workers[0], once)
    redis_client.expire(KEYS.windows("ssh-burst"), GENERATION)  # due to turn
    assert process_batch(workers[1], once) == (0, 1)
    assert redis_client.hgetall(KEYS.windows("ssh-burst")) == {"203.0.113.9": "1000"}
    assert not redis_client.exists(KEYS.previous_windows("ssh-burst"))


def test_redelivered_chunk_adds_no_hits(workers: list[WorkerState],
                                        redis_client: redis.Redis) -> None:
    a, b = workers
    encoded = batch("dup", 1000.0, [fail("203.0.113.9")] * 2)
    assert process_batch(a, encoded) == (1, 0)
    assert process_batch(b, encoded) == (0, 1)  # the other worker got it again
    assert window(redis_client, "203.0.113.9") == [1000.0, 1000.0]
    assert alerts(redis_client) == []


def test_concurrent_workers_count_every_hit(redis_server,  # type: ignore[no-untyped-def]
                                            redis_client: redis.Redis) -> None:
    # A count above the hits sent, so the window keeps every one of them.
    rules = parse_pack(PACK.replace("count: 3", "count: 41"), "burst.yml")
    states = [build_state(Settings(redis_url=redis_server.url), rules) for _ in range(2)]

    # One thread per worker state, as in prefork (a Hyperscan engine is not shared by threads).
    def run(w: int) -> None:
        for n in range(w, 40, 2):
            process_batch(states[w], batch(f"p{n}", 1000.0 + n * 0.1, [fail("203.0.113.9")]))

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, range(2)))
    assert window(redis_client, "203.0.113.9") == pytest.approx([1000.0 + n * 0.1
                                                                 for n in range(40)])
    assert alerts(redis_client) == []
    process_batch(states[0], batch("p40", 1005.0, [fail("203.0.113.9")]))
    (alert,) = alerts(redis_client)
    assert (alert["count"], alert["first"], alert["last"]) == ("41", "1000.000", "1005.000")


def test_results_show_alerts(workers: list[WorkerState], redis_client: redis.Redis) -> None:
    process_batch(workers[0], batch("r1", 1000.0, [fail("203.0.113.9")] * 3))
    res = read_results(redis_client, KEYS)
    assert res["totals"]["alerts"] == 1
    assert [(x["rule"], x["key"], x["count"]) for x in res["alerts"]] == [
        ("ssh-burst", "203.0.113.9", "3")]
