"""From bytes to a partial (:func:`analyze`), from the merged partial to a report
(:func:`finalize`); :mod:`.text` renders a report for a terminal.

A report is a JSON-ready dict: the figures that need the whole file (top-N lists, averages,
ordered timelines) are computed only here, after the merge, never per chunk, so they are
exact. Ties in top-N lists are broken by name, so a report is fully deterministic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from workers.analysis import chat
from workers.analysis.logs import analyze_logs
from workers.analysis.merge import Partial

if TYPE_CHECKING:
    from workers.engine import Engine

TOP = 10
SEVERITY_ORDER = ("critical", "high", "medium", "low", "info")


def analyze(profile: str, data: bytes, engine: Engine | None = None, year: int = 1970) -> Partial:
    """The partial statistics of one chunk; the ``logs`` profile needs the signature engine."""
    if profile == "chat":
        return chat.analyze_chat(data)
    if profile == "logs":
        if engine is None:
            raise ValueError("the logs profile needs a signature engine")
        return analyze_logs(data, engine, year)
    raise ValueError(f"unknown profile {profile!r}")


def top(counter: dict[str, int], n: int = TOP) -> list[list[Any]]:
    """The ``n`` largest entries as ``[key, count]``, ties by key."""
    return [[k, v] for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def finalize(part: Partial, n: int = TOP) -> dict[str, Any]:
    if part["profile"] == "chat":
        return _chat_report(chat.finish(part), n)
    return _logs_report(part["stats"], n)


def _logs_report(s: dict[str, Any], n: int) -> dict[str, Any]:
    sigs, rules = s.get("signatures", {}), s.get("rules", {})
    signatures = []
    for rule_id, count in top(sigs, len(sigs)):
        severity, _, title = rules.get(rule_id, "|").partition("|")
        signatures.append({"id": rule_id, "title": title, "severity": severity, "lines": count})
    sevs = s.get("severities", {})
    return {
        "profile": "logs", "lines": s.get("lines", 0), "bytes": s.get("bytes", 0),
        "timestamped_lines": s.get("timestamped", 0),
        "first_time": s.get("min_time"), "last_time": s.get("max_time"),
        "matched_lines": s.get("matched_lines", 0), "matches": sum(sigs.values()),
        "severities": {k: sevs[k] for k in (*SEVERITY_ORDER, *sorted(sevs)) if k in sevs},
        "signatures": signatures,
        "top_src_ips": top(s.get("src_ips", {}), n), "top_users": top(s.get("users", {}), n),
        "timeline": [[h, c] for h, c in sorted(s.get("hours", {}).items())],
        "error_lines": s.get("error_lines", 0), "top_errors": top(s.get("errors", {}), n),
    }


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _chat_report(s: dict[str, Any], n: int) -> dict[str, Any]:
    per = {k: s.get(k, {}) for k in ("messages", "words", "media", "deleted", "responses")}
    authors = []
    for name, count in top(per["messages"], len(per["messages"])):
        resp = per["responses"].get(name, {"count": 0, "total_s": 0})
        avg = round(resp["total_s"] / resp["count"], 1) if resp["count"] else None
        authors.append({"name": name, "messages": count, "words": per["words"].get(name, 0),
                        "media": per["media"].get(name, 0),
                        "deleted": per["deleted"].get(name, 0),
                        "responses": resp["count"], "avg_response_s": avg})
    hours, weekdays = s.get("hours", {}), s.get("weekdays", {})
    links = s.get("links", {})
    return {
        "profile": "chat", "lines": s.get("lines", 0), "bytes": s.get("bytes", 0),
        "messages": sum(per["messages"].values()), "system_messages": s.get("system", 0),
        "orphan_lines": s["orphan_lines"],
        "first_message": _iso(s["first_ts"]), "last_message": _iso(s["last_ts"]),
        "authors": authors,
        "hours": {f"{h:02d}": hours.get(f"{h:02d}", 0) for h in range(24)},
        "weekdays": {d: weekdays.get(d, 0) for d in chat.WEEKDAYS},
        "busiest_days": top(s.get("days", {}), n),
        "top_words": top(s.get("top_words", {}), n), "top_emojis": top(s.get("emojis", {}), n),
        "links": sum(links.values()), "top_domains": top(links, n),
        "media": sum(per["media"].values()), "deleted": sum(per["deleted"].values()),
    }

