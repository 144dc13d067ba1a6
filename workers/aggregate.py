"""Turn a decoded batch and its scan result into per-chunk deltas for the result store.

The batch is flattened once into one buffer of lines (all chunks, in order) so the engine
scans it in a single call. Counting then works per segment (host, source) and per (segment,
rule), never per line, so the cost follows the number of segments and matches, not lines:

* counters: lines and bytes per segment, matches per rule and per agent;
* the match stream: one :class:`MatchGroup` per rule per segment (its count, its time, and
  up to :data:`MATCH_SAMPLES` of its lines), not one entry per matching line, which at a
  quarter of all lines matching would cost Redis more than the scan costs the worker;
* thresholds: each match of a threshold rule, keyed by the rule's ``by`` field (extracted
  with ``re`` from the matched line only), counted per (rule, key, segment).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from logsig.batch import Batch, Segment
from workers.rules import Rule

# Lines longer than this are cut in the match stream (the counters are unaffected).
MAX_EVENT_LINE = 4096
# Lines of one rule's matches in one segment kept in its match-stream entry.
MATCH_SAMPLES = 10


@dataclass(slots=True)
class Span:
    """Lines ``start .. start + count`` of the flat list belong to one segment of one chunk;
    the first of them begins at character ``offset`` of the flat text."""

    start: int
    chunk: int
    host: str
    source: str
    time: float
    offset: int = 0


@dataclass(frozen=True, slots=True)
class MatchGroup:
    """The matches of one rule in one segment: one entry of the match stream."""

    rule: Rule
    host: str
    source: str
    time: float
    count: int
    samples: tuple[str, ...]


@dataclass(slots=True)
class ChunkDelta:
    """Everything one chunk adds to the counters, applied only if the chunk is new."""

    chunk_id: str
    lines: int = 0
    bytes: int = 0
    matches: int = 0
    signatures: Counter[str] = field(default_factory=Counter)
    agent_lines: Counter[str] = field(default_factory=Counter)
    agent_signatures: dict[str, Counter[str]] = field(default_factory=dict)
    groups: list[MatchGroup] = field(default_factory=list)
    # (rule index, key, segment time, agent) -> matches of that threshold rule on that key
    hits: Counter[tuple[int, str, float, str]] = field(default_factory=Counter)
    truncated: int = 0


@dataclass(slots=True)
class Flat:
    """A batch as the engine sees it: one buffer of every line, and where segments start.

    ``text`` is every line joined with ``"\n"`` (the engine scans it in one call) unless a
    record holds a newline itself; then ``text`` is None and ``lines`` lists the lines.
    """

    spans: list[Span]
    count: int
    text: str | None
    lines: list[str] | None = None

    def all_lines(self) -> list[str]:
        if self.lines is None:
            self.lines = self.text.split("\n") if self.text is not None and self.count else []
        return self.lines

    def line_at(self, offset: int) -> str:
        """The line of :attr:`text` that starts at character ``offset``."""
        assert self.text is not None
        end = self.text.find("\n", offset)
        return self.text[offset:] if end < 0 else self.text[offset:end]


def flatten(batch: Batch) -> Flat:
    """The batch's lines in order, joined once, and where each segment starts."""
    spans: list[Span] = []
    texts: list[str] = []
    start, offset, multiline = 0, 0, False
    for c, chunk in enumerate(batch.chunks):
        for seg in chunk.segments:
            if not seg.count:
                continue
            spans.append(Span(start, c, seg.host, seg.source, seg.time, offset))
            texts.append(seg.text)
            start += seg.count
            offset += len(seg.text) + 1
            multiline = multiline or seg.multiline
    if multiline:
        lines = [line for chunk in batch.chunks for seg in chunk.segments for line in seg.lines()]
        return Flat(spans, start, None, lines)
    return Flat(spans, start, "\n".join(texts))


def aggregate(batch: Batch, flat: Flat, pairs: Sequence[tuple[int, int]],
              rules: Sequence[Rule], *, by_offset: bool = False) -> list[ChunkDelta]:
    """One delta per chunk: line/byte counts per segment, then one step per (segment, rule).

    ``pairs`` name lines by index in :meth:`Flat.all_lines` or, ``by_offset``, by the
    character offset where they start in :attr:`Flat.text` (see ``Engine.scan_offsets``).
    """
    deltas = [ChunkDelta(chunk.id, truncated=chunk.truncated) for chunk in batch.chunks]
    for chunk, delta in zip(batch.chunks, deltas, strict=True):
        for seg in chunk.segments:
            delta.lines += seg.count
            delta.bytes += segment_bytes(seg)
            if seg.count:
                delta.agent_lines[seg.host] += seg.count
    if not pairs:
        return deltas
    if by_offset:
        starts, line = [s.offset for s in flat.spans], flat.line_at
    else:
        starts, line = [s.start for s in flat.spans], flat.all_lines().__getitem__
    for span, by_rule in _by_span_and_rule(flat.spans, starts, pairs):
        delta = deltas[span.chunk]
        per_agent = delta.agent_signatures.get(span.host)
        if per_agent is None:
            per_agent = delta.agent_signatures[span.host] = Counter()
        for r, found in by_rule.items():
            rule = rules[r]
            delta.matches += len(found)
            delta.signatures[rule.id] += len(found)
            per_agent[rule.id] += len(found)
            samples = tuple(line(i)[:MAX_EVENT_LINE] for i in found[:MATCH_SAMPLES])
            delta.groups.append(MatchGroup(rule, span.host, span.source, span.time,
                                           len(found), samples))
            if rule.threshold is not None:
                # Fields come from re, and only for the lines that matched a threshold rule.
                by = rule.threshold.by
                for i in found:
                    key = rule.field(line(i), by)
                    if key:
                        delta.hits[(r, key, span.time, span.host)] += 1
    return deltas


def _by_span_and_rule(spans: Sequence[Span], starts: Sequence[int],
                      pairs: Sequence[tuple[int, int]]
                      ) -> list[tuple[Span, dict[int, list[int]]]]:
    """The (line, rule) pairs (sorted by line) grouped by segment, then by rule; ``starts``
    are the spans' first lines in the pairs' unit (index or offset)."""
    out: list[tuple[Span, dict[int, list[int]]]] = []
    end = -1
    by_rule: dict[int, list[int]] = {}
    for i, r in pairs:
        if i >= end:
            k = bisect_right(starts, i) - 1
            end = starts[k + 1] if k + 1 < len(starts) else 1 << 62
            by_rule = {}
            out.append((spans[k], by_rule))
        found = by_rule.get(r)
        if found is None:
            by_rule[r] = [i]
        else:
            found.append(i)
    return out


def segment_bytes(seg: Segment) -> int:
    """UTF-8 size of the segment's lines without separators; ASCII text needs no encoding."""
    text = seg.text
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size if seg.multiline or not seg.count else size - (seg.count - 1)
