"""Scan engines: which rules match which lines of a batch.

:class:`ReferenceEngine` runs every rule's Python ``re`` patterns over every line; it defines
the truth. :class:`HyperscanEngine` gives the same answer much faster: all patterns in one
Hyperscan database, one scan per batch over the lines joined with ``"\\n"``, and every
candidate (line, rule) confirmed with the rule's ``re`` on that one line, so a match that
strays across the separator can never be reported.

Hyperscan only filters where it is exact: ASCII text, patterns it compiles with the same
meaning as ``re`` (see :func:`_divergence`). Everything else (refused or divergent patterns,
non-ASCII lines, the four ASCII separators ``re``'s ``\\s`` matches and Hyperscan's does not)
goes through ``re`` for just the rules or lines concerned.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from workers.rules import Rule

_hs: Any
try:
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised by setting _hs = None in tests
    _hs = None

log = logging.getLogger(__name__)

Pair = tuple[int, int]
# ASCII characters that Python's Unicode \s matches but Hyperscan's \s does not.
_RE_ONLY_SPACE = "\x1c\x1d\x1e\x1f"
# Python syntax Hyperscan reads differently: "{,n}" (a literal there), POSIX "[:" classes,
# and Python-only escapes.
_SYNTAX_DIVERGENCE = re.compile(r"\{,\d|\[:|\\[NuU]")
_BUFFER_ANCHORS = {sre_constants.AT_BEGINNING_STRING, sre_constants.AT_END_STRING}


class Engine(ABC):
    """Maps a batch of lines to the (line index, rule index) pairs that match."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)

    @abstractmethod
    def scan(self, lines: Sequence[str]) -> list[Pair]:
        """Sorted unique (line_index, rule_index) pairs; a rule matches a line iff any of
        its patterns ``re.search``-es it."""

    def captures(self, lines: Sequence[str], pairs: Iterable[Pair]) -> dict[Pair, dict[str, str]]:
        """Named groups of the first matching pattern, for already matched pairs only."""
        out: dict[Pair, dict[str, str]] = {}
        for i, r in pairs:
            m = self.rules[r].search(lines[i])
            if m is not None:
                out[(i, r)] = {k: v for k, v in m.groupdict().items() if v is not None}
        return out


class ReferenceEngine(Engine):
    """Every rule against every line with Python ``re``: slow, obviously correct."""

    def scan(self, lines: Sequence[str]) -> list[Pair]:
        return _re_scan(self.rules, range(len(self.rules)), lines, range(len(lines)))


def _re_scan(rules: Sequence[Rule], rule_ids: Iterable[int], lines: Sequence[str],
             line_ids: Iterable[int]) -> list[Pair]:
    line_ids = list(line_ids)
    pairs = [(i, r) for r in rule_ids for i in line_ids if rules[r].search(lines[i])]
    pairs.sort()
    return pairs


class HyperscanEngine(Engine):
    """One Hyperscan block-mode scan per batch, candidates confirmed with ``re``."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        if _hs is None:
            raise RuntimeError("hyperscan is not importable")
        super().__init__(rules)
        entries, fallback = _partition(self.rules)
        self._db, self._pattern_rule = _build_db(entries)
        broken = self._self_check()
        if broken:
            log.warning("hyperscan misses examples of %s; scanning them with re",
                        ", ".join(self.rules[r].id for r in broken))
            entries = [e for e in entries if e[2] not in broken]
            fallback = sorted({*fallback, *broken})
            self._db, self._pattern_rule = _build_db(entries)
        self.fallback: tuple[int, ...] = tuple(fallback)
        if fallback:
            log.info("rules scanned with re instead of hyperscan: %s",
                     ", ".join(self.rules[r].id for r in fallback))

    def scan(self, lines: Sequence[str]) -> list[Pair]:
        if not lines:
            return []
        text = "\n".join(lines)
        exact = text.isascii() and not any(c in text for c in _RE_ONLY_SPACE)
        if exact:
            data = text.encode("ascii")
            starts = [0, *accumulate(len(line) + 1 for line in lines)]
        else:
            data = text.encode("utf-8", "surrogatepass")
            starts = [0, *accumulate(len(line.encode("utf-8", "surrogatepass")) + 1
                                     for line in lines)]
        found = self._confirmed(lines, data, starts)
        all_lines = range(len(lines))
        found.update(_re_scan(self.rules, self.fallback, lines, all_lines))
        if not exact:
            odd = [i for i, line in enumerate(lines) if not _hs_exact(line)]
            found.update(_re_scan(self.rules, range(len(self.rules)), lines, odd))
        return sorted(found)

    def _confirmed(self, lines: Sequence[str], data: bytes, starts: list[int]) -> set[Pair]:
        """Candidates from one Hyperscan scan, kept only where ``re`` agrees."""
        if self._db is None:
            return set()
        candidates: set[Pair] = set()
        add, pattern_rule = candidates.add, self._pattern_rule

        def on_match(pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
            add((bisect_right(starts, to) - 1, pattern_rule[pid]))

        self._db.scan(data, match_event_handler=on_match)
        rules = self.rules
        return {(i, r) for i, r in candidates if rules[r].search(lines[i]) is not None}

    def _self_check(self) -> set[int]:
        """Rules whose own match examples Hyperscan does not report (syntax drift)."""
        hs_rules = sorted(set(self._pattern_rule))
        examples = [(r, line) for r in hs_rules for line in self.rules[r].match_examples
                    if _hs_exact(line)]
        lines = [line for _, line in examples]
        data = "\n".join(lines).encode("ascii")
        starts = [0, *accumulate(len(line) + 1 for line in lines)]
        seen = self._confirmed(lines, data, starts)
        return {r for i, (r, _) in enumerate(examples) if (i, r) not in seen}


def _hs_exact(line: str) -> bool:
    """True when Hyperscan's byte semantics equal ``re``'s on this line."""
    return line.isascii() and not any(c in line for c in _RE_ONLY_SPACE)


def _hs_flags(rule: Rule) -> int:
    assert _hs is not None
    flags = _hs.HS_FLAG_MULTILINE
    if "ignorecase" in rule.flags:
        flags |= _hs.HS_FLAG_CASELESS
    if "dotall" in rule.flags:
        flags |= _hs.HS_FLAG_DOTALL
    return flags


def _partition(rules: Sequence[Rule]) -> tuple[list[tuple[bytes, int, int]], list[int]]:
    """(expression, flags, rule index) for Hyperscan, and the rule indexes left to ``re``."""
    entries: list[tuple[bytes, int, int]] = []
    fallback: list[int] = []
    for r, rule in enumerate(rules):
        mine = [(p.encode("ascii", "replace"), _hs_flags(rule), r) for p in rule.patterns]
        problems = [_divergence(p, rule.re_flags) or _hs_refuses(e, f)
                    for p, (e, f, _) in zip(rule.patterns, mine, strict=True)]
        problem = next((p for p in problems if p), None)
        if problem:
            log.info("rule %s: %s; it is scanned with re", rule.id, problem)
            fallback.append(r)
        else:
            entries.extend(mine)
    return entries, fallback


def _divergence(pattern: str, flags: int) -> str | None:
    """Why Hyperscan could read ``pattern`` differently from ``re``, or None."""
    if not pattern.isascii() or _SYNTAX_DIVERGENCE.search(pattern):
        return "pattern uses syntax or characters hyperscan reads differently"
    if any(_walk_divergent(sre_parse.parse(pattern, flags))):
        return "pattern uses \\A, \\Z or non-ASCII characters"
    return None


def _walk_divergent(items: Iterable[tuple[object, object]]) -> Iterator[bool]:
    """Yield True for \\A/\\Z (buffer anchors in Hyperscan) and non-ASCII code points."""
    c = sre_constants
    for op, av in items:
        if op is c.AT:
            yield av in _BUFFER_ANCHORS
        elif op in (c.LITERAL, c.NOT_LITERAL):
            yield av > 0x7F  # type: ignore[operator]
        elif op is c.RANGE:
            yield av[1] > 0x7F  # type: ignore[index]
        else:
            for sub in _children(op, av):
                yield from _walk_divergent(sub)


def _children(op: object, av: object) -> list[Iterable[tuple[object, object]]]:
    """The nested sequences of one parsed regex node."""
    c = sre_constants
    if op in (c.IN, c.ATOMIC_GROUP):
        return [av]  # type: ignore[list-item]
    if op is c.BRANCH:
        return list(av[1])  # type: ignore[index]
    if op is c.SUBPATTERN:
        return [av[3]]  # type: ignore[index]
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return [av[2]]  # type: ignore[index]
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [av[1]]  # type: ignore[index]
    if op is c.GROUPREF_EXISTS:
        return [x for x in av[1:] if x is not None]  # type: ignore[index]
    return []


def _hs_refuses(expression: bytes, flags: int) -> str | None:
    """Hyperscan's compile error for one expression (back-references, lookarounds...)."""
    assert _hs is not None
    try:
        _hs.Database(mode=_hs.HS_MODE_BLOCK).compile(
            expressions=[expression], ids=[0], elements=1, flags=[flags])
    except _hs.error as exc:
        return f"hyperscan refuses {expression.decode('ascii', 'replace')!r}: {exc}"
    return None


def _build_db(entries: Sequence[tuple[bytes, int, int]]) -> tuple[Any, list[int]]:
    """One block-mode database; pattern id i belongs to rule ``pattern_rule[i]``."""
    if not entries:
        return None, []
    assert _hs is not None
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=[e for e, _, _ in entries], ids=list(range(len(entries))),
               elements=len(entries), flags=[f for _, f, _ in entries])
    return db, [r for _, _, r in entries]


def make_engine(rules: Sequence[Rule]) -> Engine:
    """The Hyperscan engine when the library is importable, else the reference engine."""
    if _hs is None:
        log.warning("hyperscan is not importable; using the (slower) re reference engine")
        return ReferenceEngine(rules)
    return HyperscanEngine(rules)
