"""The ``chat`` profile: WhatsApp-style chat exports, in chunks that may cut a message.

Both export forms are read, with 2- or 4-digit years, seconds optional, and am/pm::

    [dd/mm/yy, hh:mm:ss] Name: text        (iOS)
    dd/mm/yy, hh:mm - Name: text           (Android)

Dates are day/month. A header without ``Name: `` is a system message ("Alice added Bob"); a
line without a header continues the message before it. Times have no zone and are taken
as they are written.

**Chunk boundaries.** A chunk starts at any line, so its first lines may continue a message
from the chunk before, and its last message may continue into the next. A partial therefore
carries, besides its ``stats``:

* ``head``: the lines before its first header (the end of someone else's message);
* ``open``: its last message, ``{"author", "lines"}``, not yet counted for its text;
* ``first``/``last``: ``[author, time]`` of its first and last user message.

Counts that need only the header (messages, hours, weekdays, days, response times inside
the chunk) are taken at once; text statistics (:mod:`.chattext`) when a message is complete.
:func:`join` is the chat part of the one merge: it closes the left ``open`` message with the
right ``head`` and adds the response time across the boundary. Concatenating chunks and
joining their partials in order is associative, so any split gives the same report.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Any

from workers.analysis.chattext import text_stats
from workers.analysis.logs import split_lines
from workers.analysis.stats import add_into, combine

HEADER = re.compile(
    r"^\u200e?(?:\[(?P<d1>\d{1,2})/(?P<m1>\d{1,2})/(?P<y1>\d{2}|\d{4}),? (?P<t1>[\d:]+)"
    r"(?:[ \u202f]?(?P<p1>[AaPp][Mm]))?\] |(?P<d2>\d{1,2})/(?P<m2>\d{1,2})/(?P<y2>\d{2}|\d{4}),?"
    r" (?P<t2>[\d:]+)(?:[ \u202f]?(?P<p2>[AaPp][Mm]))? - )")
TIME = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d))?\Z")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
RESPONSE_WINDOW = 12 * 3600
"""A reply later than this (seconds) starts a new conversation; it is not a response time."""
_EPOCH = date(1970, 1, 1).toordinal()


def empty() -> dict[str, Any]:
    return {"profile": "chat", "stats": {}, "head": [], "open": None, "first": None,
            "last": None}


@lru_cache(maxsize=4096)
def _day(d: int, m: int, y: int) -> tuple[str, str, int] | None:
    """(ISO date, weekday name, days since 1970) or None for an impossible date."""
    try:
        day = date(y if y >= 100 else 2000 + y, m, d)
    except ValueError:
        return None
    return day.isoformat(), WEEKDAYS[day.weekday()], day.toordinal() - _EPOCH


def parse_header(line: str) -> tuple[dict[str, Any], str] | None:
    """(header fields, rest of the line) if ``line`` starts a message, else None."""
    m = HEADER.match(line)
    if m is None:
        return None
    k = "1" if m.group("d1") else "2"
    day = _day(int(m.group("d" + k)), int(m.group("m" + k)), int(m.group("y" + k)))
    t = TIME.match(m.group("t" + k))
    if day is None or t is None:
        return None
    hour, minute, second = int(t.group(1)), int(t.group(2)), int(t.group(3) or 0)
    ampm = (m.group("p" + k) or "").lower()
    if ampm:
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    ts = day[2] * 86400 + hour * 3600 + minute * 60 + second
    return {"day": day[0], "weekday": day[1], "hour": f"{hour:02d}", "ts": ts}, line[m.end():]


def analyze_chat(data: bytes) -> dict[str, Any]:
    """Partial statistics of one chunk (see the module docstring)."""
    lines = split_lines(data)
    part = empty()
    stats: dict[str, Any] = {"lines": len(lines), "bytes": len(data)}
    part["stats"] = stats
    for line in lines:
        parsed = parse_header(line)
        if parsed is None:
            (part["open"]["lines"] if part["open"] else part["head"]).append(line)
            continue
        _close(stats, part["open"])
        header, rest = parsed
        author, sep, text = rest.partition(": ")
        if not sep:
            part["open"] = {"author": None, "lines": []}
            _count(stats, "system", 1)
            continue
        author = author.strip("\u200e\u202a\u202c")
        part["open"] = {"author": author, "lines": [text]}
        _count_header(stats, author, header)
        here = [author, header["ts"]]
        if part["last"] is not None:
            _respond(stats, part["last"], here)
        part["first"] = part["first"] or here
        part["last"] = here
    return part


def join(a: dict[str, Any], b: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The boundary part of merging ``a`` then ``b``; ``stats`` is already their sum."""
    if a["last"] is not None and b["first"] is not None:
        _respond(stats, a["last"], b["first"])
    out = {"profile": "chat", "stats": stats, "first": a["first"] or b["first"],
           "last": b["last"] or a["last"]}
    if a["open"] is None:  # a has no header at all: its lines continue what came before
        out.update(head=a["head"] + b["head"], open=b["open"])
        return out
    grown = {"author": a["open"]["author"], "lines": a["open"]["lines"] + b["head"]}
    if b["open"] is None:  # b is all continuation: a's last message is still open
        out.update(head=list(a["head"]), open=grown)
        return out
    _close(stats, grown)
    out.update(head=list(a["head"]), open=b["open"])
    return out


def finish(part: dict[str, Any]) -> dict[str, Any]:
    """The whole file's statistics: the last message closed, leading orphan lines counted."""
    stats = combine(part["stats"], {})
    _close(stats, part["open"])
    stats["orphan_lines"] = len(part["head"])
    stats["first_ts"] = part["first"][1] if part["first"] else None
    stats["last_ts"] = part["last"][1] if part["last"] else None
    return stats


def _close(stats: dict[str, Any], message: dict[str, Any] | None) -> None:
    if message is not None and message["author"] is not None:
        add_into(stats, text_stats(message["author"], "\n".join(message["lines"])))


def _count(stats: dict[str, Any], key: str, n: int) -> None:
    stats[key] = stats.get(key, 0) + n


def _count_header(stats: dict[str, Any], author: str, header: dict[str, Any]) -> None:
    for key, value in (("messages", author), ("hours", header["hour"]),
                       ("weekdays", header["weekday"]), ("days", header["day"])):
        counter = stats.setdefault(key, {})
        counter[value] = counter.get(value, 0) + 1


def _respond(stats: dict[str, Any], prev: list[Any], cur: list[Any]) -> None:
    """A response time when the author changes within :data:`RESPONSE_WINDOW`."""
    gap = cur[1] - prev[1]
    if prev[0] != cur[0] and 0 <= gap <= RESPONSE_WINDOW:
        entry = stats.setdefault("responses", {}).setdefault(cur[0], {"count": 0, "total_s": 0})
        entry["count"] += 1
        entry["total_s"] += gap
