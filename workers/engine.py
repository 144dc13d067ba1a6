"""Scan engines: which rules match which lines of a batch.

:class:`ReferenceEngine` runs every rule's Python ``re`` patterns over every line; it defines
the truth. :class:`HyperscanEngine` gives the same answer much faster: all patterns in one
Hyperscan database, one scan per batch over the lines joined with ``"\\n"``. Each pattern is
translated (:mod:`workers.translate`) so that it cannot match the separator, which makes every
Hyperscan match a ``re`` match on one line: no per-match confirmation is needed, the match
handler only maps an end offset to its line.

The rest goes through ``re``: rules Hyperscan cannot express exactly (look-arounds,
back-references...) are prefiltered by a widened Hyperscan pattern and confirmed with ``re``
on the candidate lines; lines where Hyperscan's bytes would not mean what ``re``'s characters
mean (non-ASCII, an embedded newline, the separators ``\\x1c``-``\\x1f`` that ``re``'s
``\\s`` matches) are blanked in the buffer and scanned with ``re`` alone.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, compress, repeat
from operator import add
from typing import Any

from workers.rules import Rule
from workers.rules.redos import nested_quantifier
from workers.translate import Untranslatable, translate

_hs: Any
try:
    import hyperscan as _hs
except ImportError:  # pragma: no cover - exercised by setting _hs = None in tests
    _hs = None

log = logging.getLogger(__name__)

Pair = tuple[int, int]
# Characters in an ASCII line that make Hyperscan's reading differ from re's: the separator
# itself and the four ASCII separators re's \s matches (Hyperscan's \s does not).
_ODD_CHARS = "\n\x1c\x1d\x1e\x1f"


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
    """Each pattern of each rule ``re.search``-ed on each line (the loop over lines in C)."""
    ids = list(line_ids)
    subset = lines if len(ids) == len(lines) else [lines[i] for i in ids]
    pairs: list[Pair] = []
    for r in rule_ids:
        found: set[int] = set()
        for rx in rules[r].compiled:
            found.update(compress(ids, map(rx.search, subset)))
        pairs.extend((i, r) for i in found)
    pairs.sort()
    return pairs


def line_ok(line: str) -> bool:
    """True when Hyperscan's byte semantics equal ``re``'s on this line."""
    return line.isascii() and not any(ch in line for ch in _ODD_CHARS)


class HyperscanEngine(Engine):
    """One Hyperscan block-mode scan per batch; ``re`` only where Hyperscan is not exact.

    Not thread-safe (the database's scratch space is per instance): one engine per worker
    process, as Celery's prefork pool gives.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        if _hs is None:
            raise RuntimeError("hyperscan is not importable")
        super().__init__(rules)
        self.exact: tuple[int, ...] = ()
        self.prefiltered: tuple[int, ...] = ()
        self.fallback: tuple[int, ...] = ()
        plans = [_plan(rule) for rule in self.rules]
        self._compile(plans)
        drift = self._self_check()
        if drift:
            log.warning("hyperscan disagrees with re on examples of %s; scanning them with re",
                        ", ".join(self.rules[r].id for r in drift))
            self._compile([None if r in drift else p for r, p in enumerate(plans)])
        if self.fallback or self.prefiltered:
            log.info("rules decided by re instead of hyperscan: %s",
                     ", ".join(self.rules[r].id for r in sorted((*self.fallback,
                                                                 *self.prefiltered))))

    @property
    def database(self) -> Any:
        """The compiled Hyperscan database (None if no rule runs on Hyperscan)."""
        return self._db

    def _compile(self, plans: Sequence[_Plan | None]) -> None:
        entries: list[tuple[bytes, int]] = []
        exact, pre, fallback = [], [], []
        for r, plan in enumerate(plans):
            if plan is None:
                fallback.append(r)
                continue
            entries.extend((e, r) for e in plan.expressions)
            (exact if plan.exact else pre).append(r)
        self.exact, self.prefiltered, self.fallback = tuple(exact), tuple(pre), tuple(fallback)
        self._pre = frozenset(pre)
        self._db = _build_db(entries)

    def scan(self, lines: Sequence[str]) -> list[Pair]:
        if not lines:
            return []
        flat = "".join(lines)  # cheaper to check than counting separators in the joined text
        odd: list[int] = []
        scanned = lines
        text = "\n".join(lines)
        if not flat.isascii() or any(ch in flat for ch in _ODD_CHARS):
            odd = [i for i, line in enumerate(lines) if not line_ok(line)]
            scanned = list(lines)
            for i in odd:
                scanned[i] = ""
            text = "\n".join(scanned)
        found = self._hs_scan(text.encode("ascii"), scanned)
        if self._pre:
            found = [p for p in found if p[1] not in self._pre
                     or self.rules[p[1]].search(lines[p[0]]) is not None]
        extra = _re_scan(self.rules, self.fallback, lines, range(len(lines)))
        if odd:
            extra += _re_scan(self.rules, (*self.exact, *self.prefiltered), lines, odd)
        if extra:
            return sorted({*found, *extra})
        return found

    def _hs_scan(self, data: bytes, lines: Sequence[str]) -> list[Pair]:
        """Sorted unique (line, rule) pairs of one scan of ``lines`` joined (``data``)."""
        if self._db is None:
            return []
        hits: list[int] = []  # rule, end offset, rule, end offset, ...
        self._db.scan(data, match_event_handler=_collector(hits))
        if not hits:
            return []
        # End of each line plus its separator: a match ending at ``to`` is on line
        # bisect_left(bounds, to). Built only when something matched; the mapping runs in C.
        bounds = list(accumulate(map(add, map(len, lines), repeat(1))))
        found = set(zip(map(bisect_left, repeat(bounds), hits[1::2]), hits[0::2],
                        strict=False))
        return sorted(found)

    def _self_check(self) -> set[int]:
        """Rules on which this engine and ``re`` disagree about any of their own examples."""
        lines = [ln for rule in self.rules for ln in (*rule.match_examples,
                                                       *rule.nomatch_examples)]
        got = set(self.scan(lines))
        want = set(_re_scan(self.rules, range(len(self.rules)), lines, range(len(lines))))
        return {r for _, r in got ^ want}


def _collector(hits: list[int]) -> Any:
    """The match handler: two appends per match; all mapping is done after the scan."""
    append = hits.append

    def on_match(rid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        append(rid)
        append(to)

    return on_match


class _Plan:
    """How one rule is scanned: its Hyperscan expressions and whether they are exact."""

    __slots__ = ("exact", "expressions")

    def __init__(self, expressions: list[bytes], exact: bool) -> None:
        self.expressions = expressions
        self.exact = exact


def _plan(rule: Rule) -> _Plan | None:
    """Exact translations if possible, else a widened prefilter, else None (``re`` only)."""
    try:
        exprs = [translate(p, rule.re_flags) for p in rule.patterns]
        problem = next(filter(None, (_hs_refuses(e) for e in exprs)), None)
        if problem is None:
            return _Plan(exprs, exact=True)
    except Untranslatable as exc:
        problem = str(exc)
    log.info("rule %s: %s; its matches are confirmed with re", rule.id, problem)
    try:
        exprs = [translate(p, rule.re_flags, relaxed=True) for p in rule.patterns]
    except Untranslatable:
        return None
    if any(_hs_refuses(e) for e in exprs):
        return None
    return _Plan(exprs, exact=False)


def _hs_refuses(expression: bytes) -> str | None:
    """Hyperscan's compile error for one expression (too large, empty match...), or None."""
    assert _hs is not None
    try:
        _hs.Database(mode=_hs.HS_MODE_BLOCK).compile(
            expressions=[expression], ids=[0], elements=1, flags=[_hs.HS_FLAG_MULTILINE])
    except _hs.error as exc:
        return f"hyperscan refuses {expression.decode('ascii', 'replace')!r}: {exc}"
    return None


def _build_db(entries: Sequence[tuple[bytes, int]]) -> Any:
    """One block-mode database; an expression's id is its rule's index."""
    if not entries:
        return None
    assert _hs is not None
    db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    db.compile(expressions=[e for e, _ in entries], ids=[r for _, r in entries],
               elements=len(entries), flags=[_hs.HS_FLAG_MULTILINE] * len(entries))
    return db


def backtracking_risks(rules: Sequence[Rule]) -> list[str]:
    """Rules that would run on Python ``re`` with a pattern that can backtrack exponentially.

    Hyperscan runs in linear time whatever the pattern; a rule it cannot run exactly is
    decided by ``re`` (on every line, or on the lines its prefilter lets through), so a
    nested quantifier there can stall a worker on one hostile line. Such a rule is refused
    unless it is marked ``safe: true`` after review.
    """
    problems = []
    for rule in rules:
        if rule.safe:
            continue
        plan = _plan(rule) if _hs is not None else None
        if plan is not None and plan.exact:
            continue
        for pattern in rule.patterns:
            if nested_quantifier(pattern):
                problems.append(
                    f"{rule.origin}: rule {rule.id!r}: pattern {pattern!r} nests unbounded "
                    "quantifiers (catastrophic backtracking) and cannot run on Hyperscan; "
                    "simplify it or mark the rule 'safe: true'")
    return problems


def make_engine(rules: Sequence[Rule]) -> Engine:
    """The Hyperscan engine when the library is importable, else the reference engine."""
    if _hs is None:
        log.warning("hyperscan is not importable; using the (slower) re reference engine")
        return ReferenceEngine(rules)
    return HyperscanEngine(rules)
