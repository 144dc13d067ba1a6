"""The ``logs`` profile: what a log file contains, by signature, source, time and error.

Lines are independent, so a chunk's partial statistics are plain counters and extremes
(merged by :func:`workers.analysis.merge.merge` by adding and taking min/max). Per chunk:

* ``signatures``/``severities``: matching lines per rule id and matches per rule severity,
  found by the signature engine; ``rules`` maps each matched id to ``severity|title``;
* ``src_ips``/``users``: values of the named groups ``src_ip``/``src`` and ``user``
  captured by the matching rules, each counted once per line;
* ``hours``/``min_time``/``max_time``: per-hour line counts and first/last timestamp
  (:mod:`.timestamps`); ``timestamped`` lines had one;
* ``errors``: lines at an error level (``ERROR``, ``FATAL``, ``[error]``, ``error:``...),
  counted by their message with numbers, hex and addresses replaced by placeholders.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from workers.analysis.timestamps import STAMP, STAMP_WITHIN, line_time

if TYPE_CHECKING:
    from workers.engine import Engine

SCAN_BATCH = 20_000  # lines per engine call: bounds the joined buffer, not the result
SRC_GROUPS = ("src_ip", "src")
USER_GROUPS = ("user",)
ERROR_LEVEL = re.compile(
    r"\b(?:ERROR|FATAL|CRITICAL|CRIT|SEVERE|EMERG|ALERT)\b|\[(?:error|crit|alert|emerg|fatal)\]"
    r"|\blevel=(?:error|fatal|critical)\b|\b(?:error|fatal):")
# Every ERROR_LEVEL match contains one of these literals; Python's re runs a plain literal
# alternation about ten times faster than ERROR_LEVEL, so it screens the lines first.
_MAYBE_ERROR = re.compile("ERROR|FATAL|CRIT|SEVERE|EMERG|ALERT|error|fatal|crit|alert|emerg")
_PLACEHOLDERS = (
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b(?:0x[0-9a-fA-F]+|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,})\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
)
MAX_MESSAGE = 160


def normalize_error(message: str) -> str:
    """The message with variable parts replaced, so repeats of one error count together."""
    for rx, placeholder in _PLACEHOLDERS:
        message = rx.sub(placeholder, message)
    return " ".join(message.split())[:MAX_MESSAGE]


def error_message(line: str) -> str | None:
    """The normalized message of an error-level line (text after the level), else None."""
    m = ERROR_LEVEL.search(line) if _MAYBE_ERROR.search(line) else None
    if m is None:
        return None
    rest = line[m.end():].lstrip(" :]-\t")
    if not rest:
        stamp = STAMP.search(line, 0, STAMP_WITHIN)
        rest = line[stamp.end():] if stamp else line
    return normalize_error(rest)


def split_lines(data: bytes) -> list[str]:
    """The chunk's lines: UTF-8 (invalid bytes replaced), without ``\\n``/``\\r\\n``."""
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def analyze_logs(data: bytes, engine: Engine, year: int) -> dict[str, Any]:
    """Partial statistics of one chunk (see the module docstring)."""
    lines = split_lines(data)
    stats: dict[str, Any] = {"lines": len(lines), "bytes": len(data)}
    stats.update(_time_stats(lines, year))
    stats.update(_signature_stats(lines, engine))
    errors = Counter(filter(None, map(error_message, lines)))
    stats["errors"] = dict(errors)
    stats["error_lines"] = errors.total()
    return {"profile": "logs", "stats": stats}


def _time_stats(lines: Sequence[str], year: int) -> dict[str, Any]:
    cache: dict[str, str | None] = {}  # stamp text -> normalized; stamps repeat a lot
    hours: Counter[str] = Counter()
    first = last = None
    for line in lines:
        m = STAMP.search(line, 0, STAMP_WITHIN)
        if m is None:
            continue
        key = m.group(0)
        stamp = cache.get(key, "")
        if stamp == "":
            stamp = cache[key] = line_time(key, year)
        if stamp is None:
            continue
        hours[stamp[:13] + ":00"] += 1
        if first is None or stamp < first:
            first = stamp
        if last is None or stamp > last:
            last = stamp
    return {"hours": dict(hours), "timestamped": hours.total(), "min_time": first,
            "max_time": last}


def _signature_stats(lines: Sequence[str], engine: Engine) -> dict[str, Any]:
    sigs: Counter[str] = Counter()
    sevs: Counter[str] = Counter()
    ips: Counter[str] = Counter()
    users: Counter[str] = Counter()
    matched: set[int] = set()
    for base in range(0, len(lines), SCAN_BATCH):
        batch = lines[base:base + SCAN_BATCH]
        pairs = engine.scan(batch)
        for i, r in pairs:
            rule = engine.rules[r]
            sigs[rule.id] += 1
            sevs[rule.severity] += 1
            matched.add(base + i)
        per_line: dict[int, tuple[set[str], set[str]]] = {}
        for (i, _r), groups in engine.captures(batch, pairs).items():
            line_ips, line_users = per_line.setdefault(i, (set(), set()))
            line_ips.update(groups[g] for g in SRC_GROUPS if groups.get(g))
            line_users.update(groups[g] for g in USER_GROUPS if groups.get(g))
        for line_ips, line_users in per_line.values():
            ips.update(line_ips)
            users.update(line_users)
    rules = {r.id: f"{r.severity}|{r.title}" for r in engine.rules if r.id in sigs}
    return {"signatures": dict(sigs), "severities": dict(sevs), "matched_lines": len(matched),
            "src_ips": dict(ips), "users": dict(users), "rules": rules}
