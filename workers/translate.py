"""Translate a Python ``re`` pattern into a Hyperscan expression that cannot leave its line.

The engine scans a whole batch as one buffer of lines joined by ``"\\n"``. Written as is,
``\\s``, ``\\W``, ``\\D``, ``[^...]`` (and ``.`` under DOTALL) can eat that separator, so
``union`` at the end of one line and ``select`` at the start of the next would match. Instead
of confirming every candidate with ``re`` afterwards, the pattern is rewritten from Python's
own parse tree: every character node becomes an explicit byte class computed with Python's
matcher (so case folding and ``\\w``/``\\s``/``\\d`` mean exactly what ``re`` means on ASCII),
minus ``"\\n"``. A match of the translation is then a match of ``re`` on one line, and the
other way round. Hyperscan only ever sees ASCII lines without ``\\x1c``-``\\x1f`` (the engine
gives other lines to ``re``), so a class may take or leave those bytes and ``\\x80``-``\\xff``:
it takes whichever form is simplest, which turns ``.`` into Hyperscan's own dot.

Only the question "does the rule match this line" matters, and Hyperscan reports every end
offset at which a pattern matches, so the pattern's tail is cut to the shortest form that
matches the same lines (:func:`_trim_tail`): ``port \\d+`` becomes ``port \\d`` and reports once
per occurrence instead of once per digit; a trailing ``X*``, ``X?`` or ``X{0,n}`` goes. The
cut follows the last element into trailing groups, alternatives and the last repetition, and
stops at anything that constrains what follows (``$``, ``\\b``, a look-around).

Constructs Hyperscan lacks (look-arounds, back-references, atomic groups and possessive
repeats except at the very end, ``\\A``/``\\Z``) raise :class:`Untranslatable`; with
``relaxed=True`` they are widened instead (dropped or replaced by ``[^\\n]*``), giving a
prefilter whose candidates ``re`` must confirm.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from re import _compiler as sre_compile  # type: ignore[attr-defined]
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

Node = tuple[Any, Any]
NEWLINE = 0x0A
ASCII = range(128)
_CHAR_SETS: dict[tuple[str, int], frozenset[int]] = {}
# Bytes Hyperscan never sees: lines with them are decided by re (see workers.engine).
_UNSEEN = frozenset([*range(0x1C, 0x20), *range(0x80, 0x100)])


class Untranslatable(Exception):
    """The pattern uses a construct Hyperscan cannot express exactly."""


def translate(pattern: str, flags: int = 0, *, relaxed: bool = False) -> bytes:
    """The Hyperscan expression (compile it with ``HS_FLAG_MULTILINE`` only) for ``pattern``."""
    if not pattern.isascii():
        raise Untranslatable("pattern has non-ASCII characters")
    parsed = sre_parse.parse(pattern, flags)
    emitter = _Emitter(parsed.state.flags, relaxed)
    body = emitter.seq(_trim_tail(list(parsed.data)))
    if not body:
        raise Untranslatable("pattern reduces to the empty string")
    return body.encode("ascii")


class _Emitter:
    def __init__(self, flags: int, relaxed: bool) -> None:
        self.flags = flags
        self.relaxed = relaxed
        self._ops: dict[Any, Callable[[Any], str]] = {
            c.LITERAL: self.char, c.NOT_LITERAL: self.char, c.ANY: self.char, c.IN: self.char,
            c.AT: self.at, c.BRANCH: self.branch, c.SUBPATTERN: self.group,
            c.MAX_REPEAT: self.repeat, c.MIN_REPEAT: self.repeat,
            c.POSSESSIVE_REPEAT: self.possessive, c.ATOMIC_GROUP: self.atomic,
            c.ASSERT: self.lookaround, c.ASSERT_NOT: self.lookaround,
            c.GROUPREF: self.backref, c.GROUPREF_EXISTS: self.backref,
        }

    def seq(self, nodes: Sequence[Node]) -> str:
        return "".join(self.node(n) for n in nodes)

    def node(self, n: Node) -> str:
        op = n[0]
        emit = self._ops.get(op)
        if emit is None:
            raise Untranslatable(f"unsupported regex construct {op}")
        return emit(n)

    def _widen(self, what: str) -> None:
        if not self.relaxed:
            raise Untranslatable(f"hyperscan has no {what}")

    def char(self, n: Node) -> str:
        members = char_set(n, self.flags & ~re.MULTILINE)
        if not members:
            raise Untranslatable("a character class that matches nothing")
        return _class_text(_simplest(members))

    def at(self, n: Node) -> str:
        code = n[1]
        if code in (c.AT_BEGINNING, c.AT_BEGINNING_LINE):
            return "^"
        if code in (c.AT_END, c.AT_END_LINE):
            return "$"
        if code == c.AT_BOUNDARY:
            return r"\b"
        if code == c.AT_NON_BOUNDARY:
            return r"\B"
        self._widen("\\A or \\Z (they mean the buffer, not the line)")
        return "^" if code == c.AT_BEGINNING_STRING else "$"

    def branch(self, n: Node) -> str:
        return "(?:" + "|".join(self.seq(alt) for alt in n[1][1]) + ")"

    def group(self, n: Node) -> str:
        _, add, remove, body = n[1]
        saved = self.flags
        self.flags = (saved | add) & ~remove  # scoped flags, e.g. (?i:...)
        try:
            return "(?:" + self.seq(body) + ")"
        finally:
            self.flags = saved

    def repeat(self, n: Node) -> str:
        low, high, body = n[1]
        inner = self.seq(body)
        bound = f"{{{low},}}" if high == c.MAXREPEAT else f"{{{low},{high}}}"
        # Laziness changes which match re reports, never whether the line matches.
        return f"(?:{inner}){bound}"

    def possessive(self, n: Node) -> str:
        self._widen("possessive repeats")
        return self.repeat(n)

    def atomic(self, n: Node) -> str:
        self._widen("atomic groups")
        return "(?:" + self.seq(n[1]) + ")"

    def lookaround(self, _n: Node) -> str:
        self._widen("look-ahead or look-behind")
        return ""

    def backref(self, _n: Node) -> str:
        self._widen("back-references or conditional groups")
        return "[^\\n]*"


def _trim_tail(nodes: list[Node]) -> list[Node]:
    """The shortest node list that matches at the same positions, ends ignored.

    A match of the pattern contains a match of the result starting at the same position and
    the other way round, so exactly the same lines match. Each step looks at the last node:
    a repeat ``X{m,n}`` keeps ``X{m-1}`` and a cut last ``X`` (dropped when ``m`` is 0), a group
    or each alternative is cut inside, an atomic group or possessive repeat with nothing after
    it is an ordinary one; anything else (a character, ``$``, ``\\b``...) ends the cut.
    """
    while nodes:
        op, av = nodes[-1]
        head = nodes[:-1]
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            low, _high, body = av
            last = _trim_tail(list(body))
            if low and _same(last, body):  # nothing to cut inside the last repetition
                return [*head, (c.MAX_REPEAT, (low, low, body))]
            if low > 1:
                head.append((c.MAX_REPEAT, (low - 1, low - 1, body)))
            if not low or not last:  # the last repetition may be empty: drop it
                nodes = head
                continue
            return [*head, _group(last)]
        if op in (c.SUBPATTERN, c.ATOMIC_GROUP):
            group, add, remove, body = av if op is c.SUBPATTERN else (None, 0, 0, av)
            trimmed = _trim_tail(list(body))
            if not trimmed:
                nodes = head
                continue
            if op is c.SUBPATTERN and _same(trimmed, body):
                return nodes
            return [*head, (c.SUBPATTERN, (group, add, remove, trimmed))]
        if op is c.BRANCH:
            alts = [_trim_tail(list(alt)) for alt in av[1]]
            if not all(alts):
                nodes = head
                continue
            if all(map(_same, alts, av[1])):
                return nodes
            return [*head, (op, (av[0], alts))]
        return nodes
    return nodes


def _same(nodes: Sequence[Node], other: Sequence[Node]) -> bool:
    """Whether trimming left ``other`` untouched (it returns the very same node objects)."""
    return len(nodes) == len(other) and all(a is b for a, b in zip(nodes, other, strict=False))


def _group(nodes: list[Node]) -> Node:
    """``(?:nodes)``: keeps a cut repetition body together when it is followed by nothing."""
    return (c.SUBPATTERN, (None, 0, 0, nodes))


def char_set(n: Node, flags: int) -> frozenset[int]:
    """The ASCII characters (never ``"\\n"``) one character node matches, per Python ``re``."""
    op, av = n
    if op is c.LITERAL and not flags & re.IGNORECASE:
        return frozenset() if av == NEWLINE or av > 0x7F else frozenset([av])
    key = (repr(n), flags)
    found = _CHAR_SETS.get(key)
    if found is None:
        state = sre_parse.State()
        state.flags = flags
        rx = sre_compile.compile(sre_parse.SubPattern(state, [n]), flags)
        found = frozenset(b for b in ASCII if b != NEWLINE and rx.fullmatch(chr(b)))
        _CHAR_SETS[key] = found
    return found


def _simplest(members: frozenset[int]) -> frozenset[int]:
    """The class as Hyperscan handles it best, free to take or leave the bytes never scanned.

    The engine only lets Hyperscan see lines of ASCII without ``\\x1c``-``\\x1f``, so those
    bytes and ``\\x80``-``\\xff`` may be added to or removed from any class: whichever gives
    fewer ranges. ``.`` then becomes exactly Hyperscan's own dot (anything but a newline) and
    ``\\S`` or ``[^"]`` plain negations, which it accelerates far better than 127-byte
    classes; ``\\w`` or ``\\d`` stay small.
    """
    low, high = members - _UNSEEN, members | _UNSEEN
    if (_ranges(high), len(low) < 64) < (_ranges(low), len(low) >= 64):
        return high  # fewer runs; on a tie, the larger reading for a large class
    return low


def _ranges(members: frozenset[int]) -> int:
    """How many runs of consecutive bytes the class is written with."""
    return sum(1 for b in members if b - 1 not in members)


def _class_text(members: frozenset[int]) -> str:
    if len(members) == 1:
        return _byte(next(iter(members)))
    out: list[str] = []
    ordered = sorted(members)
    start = prev = ordered[0]
    for b in [*ordered[1:], -1]:
        if b == prev + 1:
            prev = b
            continue
        out.append(_byte(start) if start == prev else f"{_byte(start)}-{_byte(prev)}")
        start = prev = b
    return "[" + "".join(out) + "]"


def _byte(b: int) -> str:
    ch = chr(b)
    return ch if ch.isascii() and ch.isalnum() else f"\\x{b:02x}"
