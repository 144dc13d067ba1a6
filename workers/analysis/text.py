"""A finalized report as plain text for a terminal (``logsig analyze`` without ``--json``)."""

from __future__ import annotations

from typing import Any


def render(report: dict[str, Any]) -> str:
    body = _chat(report) if report["profile"] == "chat" else _logs(report)
    return "\n".join(body) + "\n"


def _pairs(title: str, rows: list[list[Any]], width: int = 48) -> list[str]:
    if not rows:
        return []
    return ["", f"{title}:", *(f"  {str(k)[:width]:<{width}} {v:>10,}" for k, v in rows)]


def _head(report: dict[str, Any]) -> list[str]:
    title = f"{report['profile']} report"
    job = report.get("job") or {}
    if job:
        title += (f" for {job.get('name') or '-'} ({job.get('chunks', 0)} chunks, "
                  f"{job.get('seconds', 0):.2f}s)")
    return [title, f"  lines {report['lines']:,}   bytes {report['bytes']:,}"]


def _logs(r: dict[str, Any]) -> list[str]:
    out = _head(r)
    out.append(f"  time {r['first_time'] or '-'} .. {r['last_time'] or '-'}"
               f"   ({r['timestamped_lines']:,} lines with a timestamp)")
    out.append(f"  matched lines {r['matched_lines']:,}   matches {r['matches']:,}   "
               f"error lines {r['error_lines']:,}")
    if r["severities"]:
        out.append("  by severity: " + ", ".join(f"{k} {v:,}" for k, v in r["severities"].items()))
    out += _pairs("Signatures", [[f"{s['id']} [{s['severity']}] {s['title']}", s["lines"]]
                                 for s in r["signatures"]], 72)
    out += _pairs("Top source addresses", r["top_src_ips"])
    out += _pairs("Top users", r["top_users"])
    out += _pairs("Top error messages", r["top_errors"], 72)
    out += _pairs("Lines per hour (UTC)", r["timeline"])
    return out


def _chat(r: dict[str, Any]) -> list[str]:
    out = _head(r)
    out.append(f"  messages {r['messages']:,}   system {r['system_messages']:,}   "
               f"media {r['media']:,}   deleted {r['deleted']:,}   links {r['links']:,}")
    out.append(f"  from {r['first_message'] or '-'} to {r['last_message'] or '-'}")
    if r["authors"]:
        out += ["", "Authors:", f"  {'name':<24} {'messages':>9} {'words':>9} {'media':>6} "
                                f"{'deleted':>7} {'avg reply':>10}"]
        for a in r["authors"]:
            avg = "-" if a["avg_response_s"] is None else f"{a['avg_response_s']:.0f}s"
            out.append(f"  {a['name'][:24]:<24} {a['messages']:>9,} {a['words']:>9,} "
                       f"{a['media']:>6,} {a['deleted']:>7,} {avg:>10}")
    out += _pairs("Messages by hour", [[h, n] for h, n in r["hours"].items() if n])
    out += _pairs("Messages by weekday", [[d, n] for d, n in r["weekdays"].items()])
    out += _pairs("Busiest days", r["busiest_days"])
    out += _pairs("Top words", r["top_words"])
    out += _pairs("Top emojis", r["top_emojis"])
    out += _pairs("Top link domains", r["top_domains"])
    return out
