"""Turn a decoded batch and its scan result into per-chunk deltas for the result store.

Matches of threshold rules also become :class:`ThresholdHit`s, keyed by the rule's ``by``
field (extracted with ``re`` from the matched line) and timed by their segment.

The batch is flattened once into one list of lines (all chunks, in order) so the engine scans
it in a single call. Counting then works per segment (host, source) and per match, never per
line, so the cost follows the number of segments and matches, not the number of lines.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from logsig.batch import Batch
from workers.rules import Rule

# Lines longer than this are cut in the match stream (the counters are unaffected).
MAX_EVENT_LINE = 4096


@dataclass(slots=True)
class Span:
    """Lines ``start .. start + count`` of the flat list belong to one segment of one chunk."""

    start: int
    chunk: int
    host: str
    source: str
    time: float


@dataclass(frozen=True, slots=True)
class ThresholdHit:
    """One match of a threshold rule, keyed by the rule's ``by`` field."""

    rule: Rule
    key: str
    time: float
    agent: str


@dataclass(slots=True)
class ChunkDelta:
    """Everything one chunk adds to the counters, applied only if the chunk is new."""

    chunk_id: str
    lines: int = 0
    bytes: int = 0
    signatures: Counter[str] = field(default_factory=Counter)
    agent_lines: Counter[str] = field(default_factory=Counter)
    agent_signatures: dict[str, Counter[str]] = field(default_factory=dict)
    events: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    hits: list[ThresholdHit] = field(default_factory=list)
    truncated: int = 0

    @property
    def matches(self) -> int:
        return len(self.events)


def flatten(batch: Batch) -> tuple[list[str], list[Span]]:
    """All lines of the batch in order, and where each segment starts in that list."""
    lines: list[str] = []
    spans: list[Span] = []
    for c, chunk in enumerate(batch.chunks):
        for seg in chunk.segments:
            spans.append(Span(len(lines), c, seg.host, seg.source, seg.time))
            lines.extend(seg.lines)
    return lines, spans


def aggregate(batch: Batch, spans: Sequence[Span], pairs: Sequence[tuple[int, int]],
              lines: Sequence[str], rules: Sequence[Rule]) -> list[ChunkDelta]:
    """One delta per chunk: line/byte counts per segment, then one step per match."""
    deltas = [ChunkDelta(chunk.id, truncated=chunk.truncated) for chunk in batch.chunks]
    for chunk, delta in zip(batch.chunks, deltas, strict=True):
        for seg in chunk.segments:
            delta.lines += len(seg.lines)
            delta.bytes += utf8_len(seg.lines)
            delta.agent_lines[seg.host] += len(seg.lines)
    starts = [s.start for s in spans]
    for i, r in pairs:
        span = spans[bisect_right(starts, i) - 1]
        rule = rules[r]
        delta = deltas[span.chunk]
        delta.signatures[rule.id] += 1
        per_agent = delta.agent_signatures.get(span.host)
        if per_agent is None:
            per_agent = delta.agent_signatures[span.host] = Counter()
        per_agent[rule.id] += 1
        delta.events.append((rule.id, rule.severity, span.host, span.source,
                             lines[i][:MAX_EVENT_LINE], f"{span.time:.3f}"))
        if rule.threshold is not None:
            # Fields come from re, and only for the lines that matched a threshold rule.
            key = rule.fields(lines[i]).get(rule.threshold.by)
            if key:
                delta.hits.append(ThresholdHit(rule, key, span.time, span.host))
    return deltas


def utf8_len(lines: Sequence[str]) -> int:
    """UTF-8 size of the lines without separators; ASCII text needs no encoding."""
    text = "".join(lines)
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
