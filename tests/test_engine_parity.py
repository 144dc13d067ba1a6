"""Parity of the Hyperscan engine with the re reference on the shipped rules, at scale.

Every entry point, ``scan(lines)``, ``scan_buffer(joined bytes)`` and ``scan_offsets`` (the
same, lines named by where they start), on three sources: the
rules' own examples (tests/test_engine.py), Hypothesis lines built from fragments of those
examples glued with separators built to tempt matches across lines, and 100,000 realistic
lines (the shared corpus samples plus generated traffic, or generated traffic alone when the
corpus is absent).
"""

from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.generator import generate_lines
from workers.engine import HyperscanEngine, ReferenceEngine, buffer_ok, line_numbers
from workers.rules import load_rules

RULES = load_rules()


REF = ReferenceEngine(RULES)
HS = HyperscanEngine(RULES)
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def offsets_answer(data: bytes, expected: list[tuple[int, int]]) -> bool:
    """Assert that ``HS.scan_offsets`` gives ``expected`` (offsets turned into line indices)
    wherever it answers, and answers on every buffer Hyperscan may scan as is (the worker's
    usual case); whether it answered."""
    found = HS.scan_offsets(data)
    if found is None:
        assert not buffer_ok(data)
        return False
    numbers = line_numbers(data, [offset for offset, _ in found])
    assert [(i, r) for i, (_, r) in zip(numbers, found, strict=True)] == expected
    return True

_EXAMPLES = [ln for r in RULES for ln in (*r.match_examples, *r.nomatch_examples)]
_FRAGMENTS = sorted({w for ln in _EXAMPLES for w in re.split(r"(?<=[ /=:\"'])", ln) if w})
FRAGMENT = st.one_of(st.sampled_from(_FRAGMENTS),
                     st.sampled_from([" ", "\t", "%20", "+", "\x1c", "é", "\r", "'", '"']))
LINE = st.lists(FRAGMENT, max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(LINE, min_size=1, max_size=8))
def test_parity_on_generated_lines(lines: list[str]) -> None:
    expected = REF.scan(lines)
    assert HS.scan(lines) == expected
    data = "\n".join(lines).encode("utf-8")
    assert HS.scan_buffer(data) == expected
    offsets_answer(data, expected)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(_EXAMPLES), min_size=2, max_size=6), st.data())
def test_parity_on_split_examples(examples: list[str], data: st.DataObject) -> None:
    """Match examples cut in two at any point: halves on adjacent lines must not match."""
    lines: list[str] = []
    for ex in examples:
        cut = data.draw(st.integers(0, len(ex)))
        lines += [ex[:cut], ex[cut:]]
    expected = REF.scan(lines)
    assert HS.scan(lines) == expected
    data = "\n".join(lines).encode("utf-8")
    assert HS.scan_buffer(data) == expected
    offsets_answer(data, expected)


def _realistic(count: int) -> list[str]:
    real: list[str] = []
    for path in sorted(CORPUS.glob("*/*.log")):
        text = path.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
        real.extend(text.rstrip("\n").split("\n"))
    return real[:count // 2] + generate_lines(count - min(len(real), count // 2), seed=3)


def _ref_scan(batch: list[str]) -> list[tuple[int, int]]:
    return REF.scan(batch)


def test_parity_on_100k_realistic_lines() -> None:
    lines = _realistic(100_000)
    assert len(lines) == 100_000
    batches = [lines[base:base + 5000] for base in range(0, len(lines), 5000)]
    # The reference is ~1.5 us per rule and line: spread it over the cores (forked children
    # inherit the compiled rules).
    with multiprocessing.get_context("fork").Pool(min(4, os.cpu_count() or 1)) as pool:
        expected = pool.map(_ref_scan, batches)
    fast, buffered, ref = [], [], []
    answered = 0
    for n, batch in enumerate(batches):
        fast += [(n * 5000 + i, r) for i, r in HS.scan(batch)]
        data = "\n".join(batch).encode("utf-8")
        buffered += [(n * 5000 + i, r) for i, r in HS.scan_buffer(data)]
        ref += [(n * 5000 + i, r) for i, r in expected[n]]
        answered += offsets_answer(data, expected[n])
    assert fast == ref
    assert buffered == ref
    assert answered > 0
    assert len({r for _, r in ref}) >= 25  # the lines exercise many rules, not one
