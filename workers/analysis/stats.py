"""Adding two trees of partial statistics: the commutative, associative core of ``merge``.

A tree is a msgpack-friendly dict. Leaves combine by their kind: numbers add; keys named
``min_*``/``max_*`` keep the smaller/larger value (None means "none seen"); strings are labels
that both sides agree on (the first non-empty one is kept); dicts combine key by key; lists
concatenate (order matters there, so only use them where the caller orders the operands).
The inputs are never modified.
"""

from __future__ import annotations

from typing import Any


def combine(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A new tree: ``a`` and ``b`` added leaf by leaf (see the module docstring)."""
    out = _copy(a)
    add_into(out, b)
    return out


def add_into(target: dict[str, Any], other: dict[str, Any]) -> None:
    """Add ``other`` into ``target`` in place (``other`` is left untouched)."""
    for key, value in other.items():
        if key not in target:
            target[key] = _copy(value)
        else:
            target[key] = _leaf(key, target[key], value)


def _leaf(key: str, mine: Any, theirs: Any) -> Any:
    if key.startswith(("min_", "max_")):
        if mine is None or theirs is None:
            return theirs if mine is None else mine
        return min(mine, theirs) if key.startswith("min_") else max(mine, theirs)
    if isinstance(mine, dict):
        add_into(mine, theirs)
        return mine
    if isinstance(mine, str):
        return mine or theirs
    if isinstance(mine, list):
        return mine + list(theirs)
    return mine + theirs


def _copy(value: Any) -> Any:
    """A deep copy of dicts and lists (the leaves are immutable); much cheaper than deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
