"""Static check for catastrophic backtracking in a Python ``re`` pattern.

Hyperscan runs in linear time; a rule that must fall back to Python ``re`` does not, and a
pattern with a quantified group that itself contains an unbounded quantifier (``(a+)+``,
``(\\w*\\s?)*``) can take exponential time on a hostile line. :func:`nested_quantifier`
finds that shape in the parsed pattern so the loader can refuse the rule unless it is marked
``safe: true``. It is deliberately conservative (it may flag a harmless pattern; mark it safe).
"""

from __future__ import annotations

import re
from typing import Any

try:  # Python 3.11+
    import re._parser as _sre  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_parse as _sre  # type: ignore[no-redef]

__all__ = ["nested_quantifier"]

_REPEATS = {"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"}
_UNBOUNDED = 65535  # sre's MAXREPEAT is larger; anything above this counts as unbounded


def _children(op: str, arg: Any) -> list[Any]:
    """The sub-patterns directly inside one parsed node."""
    if op in _REPEATS:
        return [arg[2]]
    if op == "SUBPATTERN":
        return [arg[-1]]
    if op == "BRANCH":
        return list(arg[1])
    if op in ("ASSERT", "ASSERT_NOT"):
        return [arg[1]]
    return []


def _has_unbounded(items: Any) -> bool:
    for op, arg in items:
        if str(op) in _REPEATS and arg[1] >= _UNBOUNDED:
            return True
        if any(_has_unbounded(sub) for sub in _children(str(op), arg)):
            return True
    return False


def _find(items: Any) -> bool:
    for op, arg in items:
        name = str(op)
        if name in _REPEATS and arg[1] > 1 and _has_unbounded(arg[2]):
            return True
        if any(_find(sub) for sub in _children(name, arg)):
            return True
    return False


def nested_quantifier(pattern: str, flags: int = 0) -> bool:
    """True if ``pattern`` repeats a group that contains an unbounded repeat."""
    try:
        parsed = _sre.parse(pattern, flags)
    except re.error:
        return False  # not our concern here: compiling it reports the error
    return _find(parsed)
