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

:meth:`Engine.scan_buffer` takes the batch already joined and encoded (UTF-8 bytes): when
it is plain ASCII, Hyperscan scans it as is, without a Python list of lines or a join.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain, compress, repeat
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
# itself and the four ASCII separators re's \s matches (Hyperscan's \s does not). The
# translation relies on it: it treats them, like bytes >= 0x80, as bytes Hyperscan never sees.
_ODD_CHARS = "\n\x1c\x1d\x1e\x1f"
_ODD_BYTES = tuple(ch.encode("ascii") for ch in _ODD_CHARS[1:])  # "\n" separates, in a buffer
# How buffer bytes that are not UTF-8 become text: as the gateway decodes records, so a line
# reads the same whether it came as bytes or as str (and stays encodable for the results).
DECODE_ERRORS = "replace"
_PLUS_ONE = (1).__add__


class Engine(ABC):
    """Maps a batch of lines to the (line index, rule index) pairs that match."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)

    @abstractmethod
    def scan(self, lines: Sequence[str]) -> list[Pair]:
        """Sorted unique (line_index, rule_index) pairs; a rule matches a line iff any of
        its patterns ``re.search``-es it."""

    def scan_buffer(self, data: bytes) -> list[Pair]:
        """:meth:`scan` of ``buffer_lines(data)``: ``data`` is the batch's lines joined with
        ``b"\\n"`` and encoded as UTF-8 (no trailing newline; ``b""`` is one empty line).

        Subclasses scan the bytes directly where they can: the worker already holds them.
        """
        return self.scan(buffer_lines(data))

    def scan_offsets(self, data: bytes) -> list[Pair] | None:
        """Sorted unique (line start offset, rule) pairs of ``data`` (as for
        :meth:`scan_buffer`), or None where this engine cannot give them cheaply.

        For a caller that reads the matched lines out of the buffer itself: no separators
        counted up to every match and no list of every line, only a backward search from
        each match to its line's start.
        """
        return None

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


def buffer_lines(data: bytes) -> list[str]:
    """The lines of a joined buffer, as :meth:`Engine.scan_buffer` reads them.

    Bytes that are not UTF-8 become U+FFFD (``"replace"``) like in the gateway; ``"\\n"`` is
    ASCII, so it is never swallowed by a bad sequence and line ``i`` is ``data.split(b"\\n")[i]``.
    """
    return data.decode("utf-8", DECODE_ERRORS).split("\n")


def buffer_ok(data: bytes) -> bool:
    """True when Hyperscan may scan ``data`` as is: :func:`line_ok` for every line, at C speed."""
    return data.isascii() and not any(b in data for b in _ODD_BYTES)


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
        if not flat.isascii() or any(ch in flat for ch in _ODD_CHARS):
            odd = [i for i, line in enumerate(lines) if not line_ok(line)]
            scanned = list(lines)
            for i in odd:
                scanned[i] = ""
        found = self._hs_pairs("\n".join(scanned).encode("ascii"))
        extra = _re_scan(self.rules, self.fallback, lines, range(len(lines)))
        if odd:
            extra += _re_scan(self.rules, (*self.exact, *self.prefiltered), lines, odd)
        return sorted({*found, *extra}) if extra else found

    def scan_buffer(self, data: bytes) -> list[Pair]:
        """One Hyperscan scan of ``data`` itself when it is plain ASCII; else :meth:`scan`."""
        if not buffer_ok(data):
            return self.scan(buffer_lines(data))
        found = self._hs_pairs(data)
        if not self.fallback:
            return found
        lines = data.decode("ascii").split("\n")
        extra = _re_scan(self.rules, self.fallback, lines, range(len(lines)))
        return sorted({*found, *extra}) if extra else found

    def scan_offsets(self, data: bytes) -> list[Pair] | None:
        """One Hyperscan scan of ``data`` keyed by line start offsets, when it is plain ASCII
        and no rule is decided by ``re`` alone; else None (use :meth:`scan_buffer`)."""
        if self.fallback or not buffer_ok(data):
            return None
        rids, ends = self._hs_hits(data)
        starts = map(_PLUS_ONE, map(data.rfind, repeat(b"\n"), repeat(0), ends))
        return sorted(dict.fromkeys(zip(starts, rids, strict=False)))

    def _hs_pairs(self, data: bytes) -> list[Pair]:
        """Sorted unique (line, rule) pairs of one scan of ``data``, whose lines are all ASCII
        without odd characters."""
        rids, ends = self._hs_hits(data)
        # Matches come (almost always) by end offset, so the pairs come (almost) sorted:
        # dict.fromkeys dedupes in order, which keeps the final sort cheap.
        return sorted(dict.fromkeys(zip(line_numbers(data, ends), rids, strict=False)))

    def _hs_hits(self, data: bytes) -> tuple[list[int], list[int]]:
        """Rule and end offset of every match of one scan of ``data`` (lines all ASCII
        without odd characters); prefiltered rules' hits are confirmed with ``re``."""
        rids: list[int] = []
        ends: list[int] = []
        if self._db is None:
            return rids, ends
        self._db.scan(data, match_event_handler=_collector(rids, ends))
        if self._pre and not self._pre.isdisjoint(rids):
            rids, ends = self._confirmed(data, rids, ends)
        return rids, ends

    def _confirmed(self, data: bytes, rids: list[int], ends: list[int]
                   ) -> tuple[list[int], list[int]]:
        """The hits without those of prefiltered rules that ``re`` rejects on their line."""
        keep = [r not in self._pre or self.rules[r].search(line_at(data, e)) is not None
                for r, e in zip(rids, ends, strict=True)]
        return list(compress(rids, keep)), list(compress(ends, keep))

    def _self_check(self) -> set[int]:
        """Rules on which this engine and ``re`` disagree about any of their own examples."""
        lines = [ln for rule in self.rules for ln in (*rule.match_examples,
                                                       *rule.nomatch_examples)]
        got = set(self.scan(lines))
        want = set(_re_scan(self.rules, range(len(self.rules)), lines, range(len(lines))))
        return {r for _, r in got ^ want}


def _collector(rids: list[int], ends: list[int]) -> Any:
    """The match handler: two appends per match; all mapping is done after the scan."""
    add_rid, add_end = rids.append, ends.append

    def on_match(rid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        add_rid(rid)
        add_end(to)

    return on_match


def line_numbers(data: bytes, ends: list[int]) -> list[int]:
    """The line of ``data`` each match end offset falls on (``ends`` in any order).

    Counting separators from one end to the next is a single pass over ``data`` up to the
    last match, in C, and builds no list of line offsets. Hyperscan reports matches by end
    offset in practice but does not promise it, so unsorted ends are sorted first.
    """
    if ends == sorted(ends):  # cheaper than comparing neighbours one by one
        return list(accumulate(map(data.count, repeat(b"\n"), chain((0,), ends), ends)))
    order = sorted(range(len(ends)), key=ends.__getitem__)
    nums = line_numbers(data, [ends[j] for j in order])
    out = [0] * len(ends)
    for j, n in zip(order, nums, strict=True):
        out[j] = n
    return out


def line_at(data: bytes, end: int) -> str:
    """The text of the line on which a match ending at ``end`` lies (``data`` is ASCII)."""
    stop = data.find(b"\n", end)
    return data[data.rfind(b"\n", 0, end) + 1:len(data) if stop < 0 else stop].decode("ascii")


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
    """One block-mode database; an expression's id is its rule's index.

    Only ``HS_FLAG_MULTILINE`` (``^``/``$`` at the separators). ``HS_FLAG_SINGLEMATCH`` would
    report each expression once per scan, i.e. once per *batch*: a rule firing on several
    lines would lose all but the first, so no subset of rules can use it with one scan per
    batch. Repeated ends are cut in the translation instead (trailing repeats trimmed).
    ``HS_FLAG_SOM_LEFTMOST`` is not needed (ends suffice to find the line) and costs speed.
    """
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
