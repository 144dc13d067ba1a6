"""Both engines must agree exactly; the reference engine defines the truth."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import engine as engine_mod
from workers.engine import HyperscanEngine, ReferenceEngine, buffer_lines, line_numbers, make_engine
from workers.rules import Rule, load_rules, parse_pack
from workers.translate import Untranslatable, translate

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


# Line pairs built to tempt a match across the separator.
TEMPTING = [
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
]


@pytest.mark.parametrize("lines", TEMPTING)
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


# --- Tail reduction: Hyperscan reports every end offset of a match, so the translation cuts
# each pattern's tail to the shortest form that matches the same lines.

TRIM_PACK = r"""
- {id: digits, title: t, severity: low, patterns: ['port \d+', 'pid=\S+'],
   examples: {match: ['port 22'], nomatch: ['port x']}}
- {id: dollar, title: t, severity: low, patterns: ['id=\w+$', 'm\d{0,3}$'],
   examples: {match: ['id=ab', 'm1'], nomatch: ['id=ab ', 'm1234']}}
- {id: multiline, title: t, severity: low, flags: [multiline], patterns: ['^user \S+$', 'foo\d*$'],
   examples: {match: ['user x', 'foo'], nomatch: ['user x y', 'foo1 ']}}
- {id: groups, title: t, severity: low, patterns: ['tag(?: \w+)+', 'k(?:v+|w*)', '(?:ab+){2,}'],
   examples: {match: ['tag x', 'k', 'abab'], nomatch: ['tag ', 'ab a']}}
- {id: alternation, title: t, severity: low, patterns: ['(?:error|warn(?:ing)?): \S*'],
   examples: {match: ['warning: '], nomatch: ['warn ing:']}}
- {id: lazy, title: t, severity: low, patterns: ['lazy .*?x?', '"[^"]*', 'z{2,}'],
   examples: {match: ['lazy ', '"', 'zz'], nomatch: ['lazy', 'z']}}
- {id: boundary, title: t, severity: low, patterns: ['n\d+\b'],
   examples: {match: ['n12 '], nomatch: ['n12a']}}
- {id: possessive, title: t, severity: low, patterns: ['x\d++', 'q(?>ab|a)', 'r(?>s+)'],
   examples: {match: ['x1', 'qa', 'rs'], nomatch: ['x', 'q', 'r']}}
"""
TRIM = parse_pack(TRIM_PACK, "trim.yml")
TRIM_REF = ReferenceEngine(TRIM)
TRIM_HS = HyperscanEngine(TRIM)


def _reports(engine: HyperscanEngine, data: bytes) -> list[int]:
    rids: list[int] = []
    ends: list[int] = []
    engine.database.scan(data, match_event_handler=engine_mod._collector(rids, ends))
    return ends


def test_translation_trims_trailing_repeats() -> None:
    """'port \\d+' must not report one end per digit: a line matches once per occurrence."""
    eng = HyperscanEngine(TRIM[:1])
    assert len(_reports(eng, b"port 123456789 pid=abcdefgh")) == 2
    assert eng.scan(["port 123456789", "pid=", "pid=x"]) == [(0, 0), (2, 0)]
    # Into groups, alternatives and the last repetition; possessive and atomic tails too.
    grouped = HyperscanEngine(TRIM[3:4])
    assert len(_reports(grouped, b"tag alpha beta gamma")) == 1
    assert len(_reports(grouped, b"kvvvvvv abbbbabbbbbb")) == 2
    assert len(_reports(HyperscanEngine(TRIM[7:8]), b"x123456 rsssss")) == 2
    assert TRIM_HS.exact == tuple(range(len(TRIM)))  # possessive/atomic tails run exactly


@pytest.mark.parametrize(("pattern", "flags", "expected"), [
    (r"port \d+", 0, rb"port\x20(?:[0-9]){1,1}"),
    (r"k(?:v+|w*)", 0, b"k"),
    (r"tag(?: \w+)+", 0, rb"tag(?:\x20(?:[0-9A-Z\x5fa-z]){1,1})"),
    (r"lazy .*?x?", 0, rb"lazy\x20"),
    (r"x\d++", 0, rb"x(?:[0-9]){1,1}"),
    # Anything that constrains what follows stops the cut.
    (r"id=\w+$", 0, rb"id\x3d(?:[0-9A-Z\x5fa-z]){1,}$"),
    (r"foo\d*$", re.MULTILINE, rb"foo(?:[0-9]){0,}$"),
    (r"n\d+\b", 0, rb"n(?:[0-9]){1,}\b"),
    (r"a\d+(?=x)", 0, None),
])
def test_tail_reduction(pattern: str, flags: int, expected: bytes | None) -> None:
    if expected is None:
        with pytest.raises(Untranslatable):
            translate(pattern, flags)
    else:
        assert translate(pattern, flags) == expected


TRIM_ALPHABET = st.sampled_from(
    ["port ", "pid=", "1", "22", "id=", "ab", "b", "user ", "x", " ", "error", "warn", "ing",
     ": ", "tag", "k", "v", "w", "q", "a", "n", "lazy", "z", "m", "foo", '"', "r", "s", "\t",
     "\xe9", "\x1c", "\n"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(TRIM_ALPHABET, max_size=8).map("".join), min_size=1, max_size=6))
def test_tail_reduction_keeps_parity(lines: list[str]) -> None:
    expected = TRIM_REF.scan(lines)
    assert TRIM_HS.scan(lines) == expected
    if not any("\n" in line for line in lines):
        assert TRIM_HS.scan_buffer("\n".join(lines).encode("utf-8")) == expected


def test_make_engine_prefers_hyperscan() -> None:
    assert isinstance(make_engine(RULES[:3]), HyperscanEngine)


def test_make_engine_without_hyperscan(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(engine_mod, "_hs", None)
    with caplog.at_level(logging.WARNING, logger="workers.engine"):
        eng = make_engine(RULES)
    assert isinstance(eng, ReferenceEngine)
    assert "hyperscan is not importable" in caplog.text


# --- scan_buffer: the batch as one UTF-8 buffer must give exactly what scan gives its lines.

FALLBACK_PACK = r"""
- id: non-ascii
  title: non-ASCII pattern (re only, no Hyperscan prefilter)
  severity: low
  patterns: ['café (?P<what>\w+)']
  examples: {match: ['café noir'], nomatch: ['cafe noir']}
- id: plain
  title: plain literal next to it
  severity: low
  patterns: ['\bnoir\b']
  examples: {match: ['cafe noir'], nomatch: ['noirs']}
"""
FALLBACK = parse_pack(FALLBACK_PACK, "fallback.yml")
FALLBACK_HS = HyperscanEngine(FALLBACK)
ENGINES = ((REF, HS), (TRICKY_REF, TRICKY_HS), (ReferenceEngine(FALLBACK), FALLBACK_HS))


def _check_buffer(data: bytes) -> None:
    """Every engine's scan_buffer equals the reference's scan of the buffer's lines."""
    lines = buffer_lines(data)
    assert lines == [b.decode("utf-8", "replace") for b in data.split(b"\n")]
    for ref, fast in ENGINES:
        expected = ref.scan(lines)
        assert fast.scan_buffer(data) == expected
        assert fast.scan(lines) == expected
        assert ref.scan_buffer(data) == expected


def test_scan_buffer_on_rule_examples() -> None:
    for rules in (RULES, TRICKY, FALLBACK):
        _check_buffer("\n".join(_all_examples(rules)).encode("utf-8"))
    assert FALLBACK_HS.fallback == (0,)  # the ASCII buffer path runs re for it


@pytest.mark.parametrize("lines", TEMPTING)
def test_scan_buffer_on_tempting_pairs(lines: list[str]) -> None:
    _check_buffer("\n".join(lines).encode("utf-8"))
    _check_buffer("".join(lines).encode("utf-8"))


def test_scan_buffer_edges() -> None:
    for data in (b"", b"\n", b"\n\n", b"union select", b"\nunion select\n", b"caf\xc3\xa9 noir",
                 b"caf\xe9 noir\nnoir", b"\xe2\x82\nunion select", b"k\x1cv\nstart here"):
        _check_buffer(data)
    assert HS.scan_buffer(b"") == [] and HS.scan_buffer(b"\n") == []


BUFFER_LINE = st.lists(ALPHABET.filter(lambda s: s != "\n"), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(BUFFER_LINE, min_size=1, max_size=6))
def test_scan_buffer_on_generated_lines(lines: list[str]) -> None:
    """Empty lines, non-ASCII and \\x1c-\\x1f lines included (they take the slow path)."""
    _check_buffer("\n".join(lines).encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"union", b" select", b"\n", b"\xff", b"\xc3", b"\xa9",
                                 b"\x1c", b"start", b" end", b"noir", b"caf\xc3\xa9 "]),
                max_size=10).map(b"".join))
def test_scan_buffer_on_bytes_that_are_not_utf8(data: bytes) -> None:
    _check_buffer(data)


def test_line_numbers_of_unsorted_ends() -> None:
    data = b"ab\ncd\n\nefg"
    assert line_numbers(data, [2, 5, 11, 10, 1]) == [0, 1, 3, 3, 0]
    assert line_numbers(data, []) == []


def _pattern_strategy() -> st.SearchStrategy[str]:
    """Small regexes whose tails exercise the reduction: repeats of every kind, groups,
    alternatives, atomic groups and anchors, nested."""
    atom = st.sampled_from(["a", "b", "1", " ", r"\d", r"\w", r"\s", r"\S", ".", "[^a]", r"\b",
                            "$", "^"])
    quant = st.sampled_from(["", "", "+", "*", "?", "{0,2}", "{2,}", "{1,3}", "+?", "*?", "++",
                             "*+"])

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        seq = st.lists(inner, min_size=1, max_size=3).map("".join)
        return st.one_of(
            st.tuples(st.sampled_from(["(?:", "(", "(?>"]), seq, quant).map(
                lambda t: f"{t[0]}{t[1]}){t[2]}"),
            st.lists(seq, min_size=2, max_size=3).map(lambda alts: "(?:" + "|".join(alts) + ")"))

    unit = st.tuples(atom, quant).map(lambda t: t[0] + t[1] if t[0] not in ("$", "^", r"\b")
                                      else t[0])
    return st.lists(st.recursive(unit, extend, max_leaves=6), min_size=1, max_size=4).map(
        "".join)


@settings(max_examples=250, deadline=None)
@given(_pattern_strategy(),
       st.lists(st.text("ab1 _-\t\x1c\xe9\x7f\x00", max_size=10), min_size=1, max_size=5),
       st.sampled_from([0, re.MULTILINE, re.DOTALL]))
def test_random_patterns_keep_parity(pattern: str, lines: list[str], flags: int) -> None:
    try:
        rx = re.compile(pattern, flags)
    except re.error:
        return
    if rx.search("") is not None:
        return  # the loader refuses patterns that match every line
    names = [n for n, f in (("multiline", re.MULTILINE), ("dotall", re.DOTALL)) if flags & f]
    rule = Rule(id="r", title="r", severity="low", patterns=(pattern,), flags=tuple(names))
    object.__setattr__(rule, "compiled", (rx,))
    expected = ReferenceEngine([rule]).scan(lines)
    fast = HyperscanEngine([rule])
    assert fast.scan(lines) == expected
    assert fast.scan_buffer("\n".join(lines).encode("utf-8")) == expected
