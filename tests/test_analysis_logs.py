"""The ``logs`` profile, the splitter and the generic statistics merge, as pure functions.

The exact-report test uses a rule pack defined here, so it does not move when the shipped
packs change; the chunking tests use the shipped packs on generated traffic.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.generator import generate_lines
from workers.analysis import Splitter, analyze, finalize, merge, merge_all, split_bytes
from workers.analysis.logs import error_message
from workers.analysis.stats import combine
from workers.analysis.timestamps import line_time
from workers.engine import Engine, ReferenceEngine, make_engine
from workers.rules import load_rules, parse_pack

PACK = r"""
rules:
  - id: t-ssh-fail
    title: SSH failed password
    severity: medium
    patterns:
      - '\bFailed password for (?:invalid user )?(?P<user>\S+) from (?P<src_ip>[0-9.]+) port'
    examples:
      match: ['sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2']
      nomatch: ['sshd[1]: Accepted password for root from 192.0.2.1 port 22 ssh2']
  - id: t-ssh-any
    title: Any sshd line with an address
    severity: low
    patterns: ['sshd\[\d+\]: .* from (?P<src>[0-9.]+)']
    examples:
      match: ['sshd[1]: Accepted password for root from 192.0.2.1 port 22 ssh2']
      nomatch: ['cron[1]: job from 192.0.2.1']
  - id: t-traversal
    title: Path traversal
    severity: high
    patterns: ['\.\./\.\./']
    examples:
      match: ['GET /a/../../etc/passwd']
      nomatch: ['GET /a/b']
"""
LINES = [
    "Mar  1 10:00:01 web01 sshd[101]: Failed password for root from 203.0.113.5 port 40001 ssh2",
    "Mar  1 10:15:02 web01 sshd[102]: Failed password for invalid user admin from 203.0.113.5 "
    "port 40002 ssh2",
    "Mar  1 11:00:03 web01 sshd[103]: Failed password for root from 198.51.100.9 port 40003 ssh2",
    '198.51.100.9 - - [01/Mar/2024:13:30:00 +0200] "GET /dl?f=../../../../etc/passwd HTTP/1.1" '
    '404 162 "-" "curl/8.0"',
    "2024-03-01 11:45:00,123 ERROR [main] org.apache.hadoop.ipc.Client: Failed to connect to "
    "10.0.0.7:8020 after 3 retries",
    "2024-03-01 11:46:00,456 ERROR [main] org.apache.hadoop.ipc.Client: Failed to connect to "
    "10.0.0.8:8020 after 5 retries",
    "2024-03-01 11:47:00,789 INFO [main] org.apache.hadoop.ipc.Client: connected",
    "\tat org.apache.hadoop.ipc.Client.call(Client.java:1451)",
    "Mar  1 12:05:00 db01 kernel: EXT4-fs error: bad block 12345 on sda1",
]
DATA = ("\n".join(LINES) + "\n").encode()


@pytest.fixture(scope="module")
def test_engine() -> Engine:
    return ReferenceEngine(parse_pack(PACK, "test-pack"))


@pytest.fixture(scope="module")
def shipped_engine() -> Engine:
    return make_engine(load_rules())


def report(data: bytes, engine: Engine, chunks: int = 1) -> dict[str, Any]:
    parts = [analyze("logs", c, engine, 2024) for c in split_bytes(data, chunks)]
    return finalize(merge_all("logs", parts))


def test_known_log_gives_the_exact_report(test_engine: Engine) -> None:
    r = report(DATA, test_engine)
    assert r == {
        "profile": "logs", "lines": 9, "bytes": len(DATA), "timestamped_lines": 8,
        "first_time": "2024-03-01 10:00:01", "last_time": "2024-03-01 12:05:00",
        "matched_lines": 4, "matches": 7,
        "severities": {"high": 1, "medium": 3, "low": 3},
        "signatures": [
            {"id": "t-ssh-any", "title": "Any sshd line with an address", "severity": "low",
             "lines": 3},
            {"id": "t-ssh-fail", "title": "SSH failed password", "severity": "medium",
             "lines": 3},
            {"id": "t-traversal", "title": "Path traversal", "severity": "high", "lines": 1},
        ],
        # Two rules capture the address of the same line: it counts once for that line.
        "top_src_ips": [["203.0.113.5", 2], ["198.51.100.9", 1]],
        "top_users": [["root", 2], ["admin", 1]],
        # The Apache stamp is 13:30 at +0200, so 11:30 UTC.
        "timeline": [["2024-03-01 10:00", 2], ["2024-03-01 11:00", 5],
                     ["2024-03-01 12:00", 1]],
        "error_lines": 3,
        "top_errors": [
            ["[main] org.apache.hadoop.ipc.Client: Failed to connect to <ip> after <n> retries",
             2],
            ["bad block <n> on sda<n>", 1],
        ],
    }
    for n in (2, 4, 7, 9):
        assert report(DATA, test_engine, n) == r


def test_timestamp_forms() -> None:
    assert line_time("Mar  1 10:00:01 host x", 2023) == "2023-03-01 10:00:01"
    assert line_time("Dec 31 23:59:59 host x", 2023) == "2023-12-31 23:59:59"
    assert line_time("2024-02-29T08:00:00.123Z x", 1) == "2024-02-29 08:00:00"
    assert line_time('- [01/Jan/2024:00:30:00 +0100] "GET /"', 1) == "2023-12-31 23:30:00"
    assert line_time('- [01/Jan/2024:23:30:00 -0130] "GET /"', 1) == "2024-01-02 01:00:00"
    assert line_time("no time here 12:00", 2024) is None


def test_error_messages_are_normalized() -> None:
    assert error_message("x ERROR: disk 0x1f3a full at 10.0.0.1:80 (98.5%)") == \
        "disk <hex> full at <ip> (<n>%)"
    assert error_message("[Fri Mar 01] [error] client denied") == "client denied"
    assert error_message("level=error msg=timeout after 30s") == "msg=timeout after <n>s"
    assert error_message("everything fine, no errors") is None
    assert error_message("INFO Terror: movie") is None


def test_generated_traffic_is_the_same_in_1_2_4_and_7_chunks(shipped_engine: Engine) -> None:
    data = ("\n".join(generate_lines(20_000, seed=4)) + "\n").encode()
    want = report(data, shipped_engine)
    assert want["lines"] == 20_000 and want["bytes"] == len(data)
    assert want["matches"] > 1000 and want["top_src_ips"] and want["top_errors"]
    for n in (2, 4, 7):
        assert report(data, shipped_engine, n) == want, n


def test_matches_are_what_the_reference_engine_finds(shipped_engine: Engine) -> None:
    lines = generate_lines(3000, seed=8)
    got = report(("\n".join(lines) + "\n").encode(), shipped_engine)
    pairs = ReferenceEngine(shipped_engine.rules).scan(lines)
    assert got["matches"] == len(pairs) > 100
    assert got["matched_lines"] == len({i for i, _ in pairs})


def test_crlf_and_a_missing_last_newline_count_like_lf(test_engine: Engine) -> None:
    crlf = DATA.replace(b"\n", b"\r\n")[:-2]
    r, want = report(crlf, test_engine, 4), report(DATA, test_engine)
    assert r["bytes"] == len(crlf)
    assert {**r, "bytes": 0} == {**want, "bytes": 0}


# --- the splitter ----------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=40),
       st.booleans(), st.integers(1, 9), st.integers(1, 50), st.randoms())
def test_splitter_cuts_on_line_boundaries_whatever_the_pieces(
    lines: list[bytes], last_newline: bool, n: int, piece: int, rng: random.Random
) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    chunks = split_bytes(data, n)
    assert b"".join(chunks) == data
    assert len(chunks) <= n and all(chunks)
    assert all(c.endswith(b"\n") for c in chunks[:-1])
    # Streaming in random pieces gives the same cuts as the whole buffer.
    splitter, streamed, pos = Splitter(len(data), n), [bytearray() for _ in range(n)], 0
    while pos < len(data):
        step = rng.randint(1, piece)
        for index, part in splitter.feed(data[pos:pos + step]):
            streamed[index] += part
        pos += step
    assert [bytes(s) for s in streamed if s] == chunks
    assert splitter.chunks_seen == len(chunks)


def test_splitter_makes_nearly_equal_chunks() -> None:
    data = b"".join(b"line %06d\n" % i for i in range(10_000))
    sizes = [len(c) for c in split_bytes(data, 7)]
    assert len(sizes) == 7 and max(sizes) - min(sizes) <= 2 * 12  # within a line of the target


# --- the generic merge -----------------------------------------------------------------------

def test_combine_adds_counters_and_keeps_extremes_without_touching_its_inputs() -> None:
    a = {"n": 1, "c": {"x": 1}, "min_t": "b", "max_t": None, "label": "t"}
    b = {"n": 2, "c": {"x": 2, "y": 1}, "min_t": "a", "max_t": "z", "label": "t"}
    assert combine(a, b) == {"n": 3, "c": {"x": 3, "y": 1}, "min_t": "a", "max_t": "z",
                             "label": "t"}
    assert a["c"] == {"x": 1} and b["c"] == {"x": 2, "y": 1}


def test_merge_refuses_mixed_profiles() -> None:
    with pytest.raises(ValueError, match="cannot merge"):
        merge({"profile": "logs", "stats": {}}, analyze("chat", b""))
