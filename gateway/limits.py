"""Per-line bounds applied to a chunk's lines before it is published: MAX_LINE_BYTES.

Rules run over every line; a line of megabytes would make every scan of it slow. A line
longer than ``max_bytes`` UTF-8 bytes is cut there (on a character boundary) and ends with
:data:`TRUNCATED_MARKER`, so a reader and a rule can tell; the gateway counts and logs them.
"""

from __future__ import annotations

__all__ = ["TRUNCATED_MARKER", "truncate", "truncate_lines"]

TRUNCATED_MARKER = "...[truncated]"


def truncate(line: str, max_bytes: int) -> str | None:
    """``line`` cut to ``max_bytes`` UTF-8 bytes plus the marker; None if it fits."""
    if max_bytes <= 0 or len(line) * 4 <= max_bytes:
        return None
    raw = line.encode("utf-8", "surrogatepass")
    if len(raw) <= max_bytes:
        return None
    return raw[:max_bytes].decode("utf-8", "ignore") + TRUNCATED_MARKER


def truncate_lines(lines: list[str], max_bytes: int) -> int:
    """Truncate the over-long ``lines`` in place; how many were cut."""
    if max_bytes <= 0 or not lines or max(map(len, lines)) * 4 <= max_bytes:
        return 0  # the common case: every line surely fits
    cut = 0
    for i, line in enumerate(lines):
        if len(line) * 4 > max_bytes:
            short = truncate(line, max_bytes)
            if short is not None:
                lines[i] = short
                cut += 1
    return cut
