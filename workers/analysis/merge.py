"""The one merge of partial statistics, for every profile.

``merge(a, b)`` is the partial of ``a``'s chunk followed by ``b``'s. It adds the statistics
trees (:func:`workers.analysis.stats.combine`: commutative and associative) and, for ``chat``,
stitches the boundary (:func:`workers.analysis.chat.join`). It is associative, with
:func:`empty` as identity, so the gateway may fold chunk results in index order however the
file was cut: ``merge_all`` of 1, 2, 4 or 7 chunks gives the same report. Inputs are never
modified.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import reduce
from typing import Any

from workers.analysis import chat
from workers.analysis.stats import combine

Partial = dict[str, Any]


def empty(profile: str) -> Partial:
    """The partial of no bytes at all: the identity of :func:`merge`."""
    return chat.empty() if profile == "chat" else {"profile": profile, "stats": {}}


def merge(a: Partial, b: Partial) -> Partial:
    if a["profile"] != b["profile"]:
        raise ValueError(f"cannot merge a {a['profile']!r} partial with a {b['profile']!r} one")
    stats = combine(a["stats"], b["stats"])
    if a["profile"] == "chat":
        return chat.join(a, b, stats)
    return {"profile": a["profile"], "stats": stats}


def merge_all(profile: str, parts: Iterable[Partial]) -> Partial:
    """All partials of a file, in chunk order, merged into one."""
    return reduce(merge, parts, empty(profile))
