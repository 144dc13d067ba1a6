"""``logsig results``: read the counters back from Redis as a dict, a table or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

import redis

from logsig.keys import Keys
from logsig.settings import Settings
from workers.store import connect

log = logging.getLogger(__name__)

TOTAL_FIELDS = ("lines", "batches", "chunks", "matches", "bytes", "duplicates", "alerts")
TOP_PER_AGENT = 5
LINE_WIDTH = 100


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ints(raw: dict[Any, Any]) -> dict[str, int]:
    return {_s(k): int(v) for k, v in raw.items()}


def read_results(client: redis.Redis, keys: Keys, limit: int = 10) -> dict[str, Any]:
    """Totals, signatures (count desc), agents (lines desc), the ``limit`` latest matches and
    the ``limit`` latest threshold alerts."""
    pipe = client.pipeline(transaction=False)
    for key in (keys.totals, keys.signatures, keys.agents, keys.rules):
        pipe.hgetall(key)
    pipe.xrevrange(keys.matches, count=max(limit, 0) or 1)
    pipe.xrevrange(keys.alerts, count=max(limit, 0) or 1)
    totals, sigs, agents, meta, recent, alerts = pipe.execute()
    totals, sigs, agents = _ints(totals), _ints(sigs), _ints(agents)
    rules = {_s(k): json.loads(_s(v)) for k, v in meta.items()}
    hosts = sorted(agents, key=lambda h: (-agents[h], h))
    pipe = client.pipeline(transaction=False)
    for host in hosts:
        pipe.hgetall(keys.agent(host))
    per_agent = [_ints(raw) for raw in pipe.execute()] if hosts else []
    return {
        "totals": {f: totals.get(f, 0) for f in TOTAL_FIELDS},
        "signatures": [
            {"id": rid, "title": rules.get(rid, {}).get("title", ""),
             "severity": rules.get(rid, {}).get("severity", ""), "count": n}
            for rid, n in sorted(sigs.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "agents": [
            {"host": host, "lines": agents[host], "matches": sum(counts.values()),
             "top": [{"id": rid, "count": n} for rid, n in
                     sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PER_AGENT]]}
            for host, counts in zip(hosts, per_agent, strict=True)
        ],
        "recent": _entries(recent, limit),
        "alerts": _entries(alerts, limit),
    }


def _entries(raw: list[Any], limit: int) -> list[dict[str, str]]:
    if limit <= 0:
        return []
    return [{"id": _s(eid), **{_s(k): _s(v) for k, v in fields.items()}}
            for eid, fields in raw[:limit]]


def render(results: dict[str, Any], out: TextIO) -> None:
    """The human-readable report: totals, then one table per section."""
    t = results["totals"]
    out.write("Totals: " + "  ".join(f"{f} {t[f]:,}" for f in TOTAL_FIELDS) + "\n")
    out.write("\nSignatures\n")
    _table(out, ("COUNT", "SEVERITY", "RULE", "TITLE"),
           [(f"{s['count']:,}", s["severity"], s["id"], s["title"])
            for s in results["signatures"]], "no matches yet")
    out.write("\nAgents\n")
    _table(out, ("LINES", "MATCHES", "AGENT", "TOP SIGNATURES"),
           [(f"{a['lines']:,}", f"{a['matches']:,}", a["host"],
             ", ".join(f"{x['id']} ({x['count']:,})" for x in a["top"]) or "-")
            for a in results["agents"]], "no lines yet")
    out.write(f"\nLatest {len(results['alerts'])} threshold alerts\n")
    _table(out, ("LAST (UTC)", "SEVERITY", "RULE", "KEY", "COUNT", "WINDOW", "AGENT"),
           [(_when(a.get("last", "")), a.get("severity", ""), a.get("rule", ""),
             a.get("key", ""), a.get("count", ""), f"{a.get('window', '')}s", a.get("agent", ""))
            for a in results["alerts"]], "none")
    out.write(f"\nLatest {len(results['recent'])} match groups (one rule in one run of lines)\n")
    _table(out, ("TIME (UTC)", "SEVERITY", "RULE", "COUNT", "AGENT", "SOURCE", "FIRST LINE"),
           [(_when(m.get("time", "")), m.get("severity", ""), m.get("rule", ""),
             m.get("count", ""), m.get("agent", ""), m.get("source", ""),
             _clip(m.get("lines", "").split("\n", 1)[0]))
            for m in results["recent"]], "none")


def _table(out: TextIO, header: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> None:
    if not rows:
        out.write(f"  ({empty})\n")
        return
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        out.write("  " + "  ".join([*cells, row[-1]]).rstrip() + "\n")


def _when(ts: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts)))
    except ValueError:
        return ts


def _clip(line: str) -> str:
    line = line.rstrip()
    return line if len(line) <= LINE_WIDTH else line[: LINE_WIDTH - 3] + "..."


def show(settings: Settings, as_json: bool = False, limit: int = 10) -> int:
    """Print the results of ``settings.redis_url``; exit code 1 if Redis cannot be read."""
    client = connect(settings)
    try:
        results = read_results(client, Keys(settings.key_prefix), limit)
    except redis.RedisError as exc:
        log.error("cannot read results from %s: %s", settings.redis_url, exc)
        return 1
    finally:
        client.close()
    if as_json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render(results, sys.stdout)
    return 0
