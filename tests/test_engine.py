"""Both engines must agree exactly; the reference engine defines the truth."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import engine as engine_mod
from workers.engine import HyperscanEngine, ReferenceEngine, make_engine
from workers.rules import Rule, load_rules, parse_pack

RULES = load_rules()
REF = ReferenceEngine(RULES)
HS = HyperscanEngine(RULES)

# Rules built to stress the differences between Hyperscan and Python re.
TRICKY_PACK = r"""
- id: ws-pair
  title: whitespace pair
  severity: low
  patterns: ['union\s+select']
  flags: [ignorecase]
  examples: {match: ['UNION  select'], nomatch: ['unionselect']}
- id: anchored
  title: anchored start and end
  severity: low
  patterns: ['^start\b', '\bend$']
  examples: {match: ['start here', 'the end'], nomatch: ['restart', 'ending']}
- id: backref
  title: doubled word (back-reference, re only)
  severity: low
  patterns: ['\b(\w+) \1\b']
  examples: {match: ['it is is here'], nomatch: ['it is here']}
- id: lookbehind
  title: lookbehind (re only)
  severity: low
  patterns: ['(?<=user=)root\b']
  examples: {match: ['user=root'], nomatch: ['user=rooted', 'root']}
- id: buffer-anchor
  title: \A anchor (re only; buffer start in hyperscan)
  severity: low
  patterns: ['\Aboot:']
  examples: {match: ['boot: ok'], nomatch: ['reboot: ok']}
- id: python-repeat
  title: Python-only {,n} repeat (re only)
  severity: low
  patterns: ['x{,2}y!']
  examples: {match: ['xxy!'], nomatch: ['x-y']}
- id: dotall
  title: dotall flag
  severity: low
  flags: [dotall]
  patterns: ['begin.{0,3}finish']
  examples: {match: ['begin--finish'], nomatch: ['begin-----finish']}
- id: words
  title: word class over non-ASCII text
  severity: low
  patterns: ['caf\w\b', 'k\s+v']
  flags: [ignorecase]
  examples: {match: ['cafe', 'k  v'], nomatch: ['caf!', 'kv']}
"""
TRICKY = parse_pack(TRICKY_PACK, "tricky.yml")
TRICKY_REF = ReferenceEngine(TRICKY)
TRICKY_HS = HyperscanEngine(TRICKY)


def _all_examples(rules: list[Rule]) -> list[str]:
    return [line for r in rules for line in (*r.match_examples, *r.nomatch_examples)]


def test_engines_agree_on_all_shipped_examples() -> None:
    lines = _all_examples(RULES)
    expected = REF.scan(lines)
    assert HS.scan(lines) == expected
    # Every match example is found by its own rule.
    found = set(expected)
    i = 0
    for r, rule in enumerate(RULES):
        for _ in rule.match_examples:
            assert (i, r) in found
            i += 1
        i += len(rule.nomatch_examples)


def test_scan_result_shape() -> None:
    lines = ["nothing", *RULES[0].match_examples, "nothing"]
    pairs = HS.scan(lines)
    assert pairs == sorted(set(pairs))
    assert (1, 0) in pairs and all(i != 0 for i, _ in pairs)
    assert HS.scan([]) == [] and REF.scan([]) == []


@pytest.mark.parametrize("lines", [
    ["GET /a?id=1 union", "select password from users"],
    ["GET /a?id=1%20union", "select%20password"],
    ["... union/**/", "/**/select 1"],
    ["x union ", " select y", "union select z"],
    ["Failed password for", "root from 203.0.113.9 port 22 ssh2"],
    ["POSSIBLE BREAK-IN", "ATTEMPT!"],
    ["Out of memory:", "Killed process 1 (x)"],
    ["", "", "union select"],
    ["GET /q?x=1 UNION", "SELECT 1"],
    ["x=1%20union", "%20select 1"],
    ["<script", ">alert(1)</script>"],
    ["..", "/etc/passwd"],
    ["id=1 or", "1=1--"],
    ["Failed password for root from 203.0.113.9 port", "22 ssh2"],
    ["kernel: Kernel panic - not syncing:", "Fatal exception"],
    ["Accepted password for root from 192.0.2.1 port", "22"],
    ["User root from 203.0.113.9 not allowed because", "not listed in AllowUsers"],
    ["203.0.113.9 - - [x] \"GET / HTTP/1.1\" 404", " 1 \"-\" \"-\""],
])
def test_matches_never_cross_lines(lines: list[str]) -> None:
    assert HS.scan(lines) == REF.scan(lines)
    assert HS.scan(["".join(lines)]) == REF.scan(["".join(lines)])
    assert TRICKY_HS.scan(lines) == TRICKY_REF.scan(lines)


def test_newline_crossing_candidate_is_rejected() -> None:
    lines = ["a union", "select b", "union  select"]
    assert TRICKY_REF.scan(lines) == [(2, 0)]
    assert TRICKY_HS.scan(lines) == [(2, 0)]


def test_unsupported_patterns_are_decided_by_re() -> None:
    ids = {TRICKY[r].id for r in (*TRICKY_HS.prefiltered, *TRICKY_HS.fallback)}
    assert ids == {"backref", "lookbehind", "buffer-anchor"}
    # Python's "{,n}" is read from re's own parse tree, so Hyperscan runs it exactly.
    assert "python-repeat" in {TRICKY[r].id for r in TRICKY_HS.exact}
    lines = ["it is is here", "user=root", "boot: ok", "xy!", "boot: again", "it is here",
             "x\nboot: no", "user=rooted"]
    assert TRICKY_HS.scan(lines) == TRICKY_REF.scan(lines)
    assert {TRICKY[r].id for _, r in TRICKY_HS.scan(lines)} >= {"backref", "buffer-anchor"}


def test_fallback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="workers.engine"):
        HyperscanEngine(TRICKY)
    assert "backref" in caplog.text and "lookbehind" in caplog.text
    assert "rules decided by re instead of hyperscan" in caplog.text


@pytest.mark.parametrize("lines", [
    ["café x", "caf\u00e9", "K\u212a v", "k\x1cv", "k\x85v"],
    ["ascii start", "ünïcode union\u00a0select", "union select", "end"],
    ["x\x1dy", "union\x1fselect", "cafe"],
    ["begin\nfinish", "start\nof the end", "line\nstart here"],
])
def test_non_ascii_and_odd_whitespace_lines(lines: list[str]) -> None:
    assert TRICKY_HS.scan(lines) == TRICKY_REF.scan(lines)
    assert HS.scan(lines) == REF.scan(lines)


ALPHABET = st.sampled_from(
    ["union", "select", " ", "\t", "\n", "\x1c", "é", "K", "k", "v", "start", "end", "/**/",
     "%20", "boot:", "it", "is", "user=root", "x", "y!", "begin", "finish", "-", "caf", "e"])
LINE = st.lists(ALPHABET, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=6))
def test_engines_agree_on_generated_lines(lines: list[str]) -> None:
    assert TRICKY_HS.scan(lines) == TRICKY_REF.scan(lines)


def test_captures_named_groups() -> None:
    line = "sshd[1]: Failed password for invalid user oracle from 198.51.100.23 port 40022 ssh2"
    pairs = HS.scan(["noise", line])
    got = HS.captures(["noise", line], pairs)
    r = next(i for i, rule in enumerate(RULES) if rule.id == "sshd-failed-password")
    assert got[(1, r)] == {"user": "oracle", "src": "198.51.100.23"}


def test_translation_trims_trailing_repeats() -> None:
    """'port \\d+' must not report one end per digit: a line matches once per occurrence."""
    rule = parse_pack(r"""
- id: digits
  title: digits
  severity: low
  patterns: ['port \d+', 'pid=\S+']
  examples: {match: ['port 22'], nomatch: ['port x']}
""", "d.yml")
    eng = HyperscanEngine(rule)
    hits: list[int] = []
    handler = engine_mod._collector(hits)
    eng.database.scan(b"port 123456789 pid=abcdefgh", match_event_handler=handler)
    assert len(hits) // 2 == 2
    assert eng.scan(["port 123456789", "pid=", "pid=x"]) == [(0, 0), (2, 0)]


def test_make_engine_prefers_hyperscan() -> None:
    assert isinstance(make_engine(RULES[:3]), HyperscanEngine)


def test_make_engine_without_hyperscan(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(engine_mod, "_hs", None)
    with caplog.at_level(logging.WARNING, logger="workers.engine"):
        eng = make_engine(RULES)
    assert isinstance(eng, ReferenceEngine)
    assert "hyperscan is not importable" in caplog.text
