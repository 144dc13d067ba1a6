"""Translate a Python ``re`` pattern into a Hyperscan expression that cannot leave its line.

The engine scans a whole batch as one buffer of lines joined by ``"\\n"``. Written as is,
``\\s``, ``\\W``, ``\\D``, ``[^...]`` (and ``.`` under DOTALL) can eat that separator, so
``union`` at the end of one line and ``select`` at the start of the next would match. Instead
of confirming every candidate with ``re`` afterwards, the pattern is rewritten from Python's
own parse tree: every character node becomes an explicit byte class computed with Python's
matcher (so case folding and ``\\w``/``\\s``/``\\d`` mean exactly what ``re`` means on ASCII),
minus ``"\\n"``. A match of the translation is then a match of ``re`` on one line, and the
other way round.

Only the question "does the rule match this line" matters, so a trailing repeat is cut to its
minimum (``port \\d+`` becomes ``port \\d``): the same lines match, but Hyperscan reports one
end per occurrence instead of one per digit.

Constructs Hyperscan lacks (look-arounds, back-references, atomic groups, ``\\A``/``\\Z``)
raise :class:`Untranslatable`; with ``relaxed=True`` they are widened instead (dropped or
replaced by ``[^\\n]*``), giving a prefilter whose candidates ``re`` must confirm.
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
        return _class_text(members)

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
    """The shortest pattern with the same matching lines: cut trailing repeats to their minimum."""
    while nodes:
        op, av = nodes[-1]
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, _high, body = av
            if low == 0:
                nodes = nodes[:-1]
                continue
            return [*nodes[:-1], (c.MAX_REPEAT, (low, low, body))]
        if op is c.SUBPATTERN:
            group, add, remove, body = av
            trimmed = _trim_tail(list(body))
            if not trimmed:
                nodes = nodes[:-1]
                continue
            return [*nodes[:-1], (op, (group, add, remove, trimmed))]
        if op is c.BRANCH:
            alts = [_trim_tail(list(alt)) for alt in av[1]]
            if not all(alts):
                nodes = nodes[:-1]
                continue
            return [*nodes[:-1], (op, (av[0], alts))]
        return nodes
    return nodes


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
    return ch if ch.isalnum() else f"\\x{b:02x}"
