"""Turn a decoded batch and its scan result into per-chunk deltas for the result store.

The batch is flattened once into one buffer of lines (all chunks, in order) so the engine
scans it in a single call. Counting then works per segment (host, source) and per (segment,
rule), never per line, so the cost follows the number of segments and matches, not lines:

* counters: lines and bytes per segment, matches per rule and per agent;
* the match stream: one :class:`MatchGroup` per rule per segment (its count, its time, and
  up to :data:`MATCH_SAMPLES` of its lines), not one entry per matching line, which at a
  quarter of all lines matching would cost Redis more than the scan costs the worker;
* thresholds: each match of a threshold rule, keyed by the rule's ``by`` field (extracted
  with ``re`` from the matched line only), counted per key in each (segment, rule): one
  ``Counter`` per group, in the order read (the result store merges a chunk's events of one
  key, time and agent).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby, repeat
from operator import itemgetter

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
    # (index of a threshold rule, segment time, agent, matches of the rule per key), as read
    hits: list[tuple[int, float, str, Counter[str]]] = field(default_factory=list)
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
    Every per-match step (grouping, reading the lines, extracting threshold keys of a rule
    with one pattern) runs as C-level ``map``/``sort``/``Counter`` calls over a whole group:
    a Python loop per match cost as much as the rest of the worker's Python around the scan.
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
        assert flat.text is not None
        starts, text = [s.offset for s in flat.spans], flat.text

        def lines_of(found: list[int]) -> list[str]:
            return lines_at(text, found)
    else:
        starts, all_lines = [s.start for s in flat.spans], flat.all_lines()

        def lines_of(found: list[int]) -> list[str]:
            return list(map(all_lines.__getitem__, found))
    for span, r, found in _groups(flat.spans, starts, pairs):
        delta = deltas[span.chunk]
        per_agent = delta.agent_signatures.get(span.host)
        if per_agent is None:
            per_agent = delta.agent_signatures[span.host] = Counter()
        rule = rules[r]
        delta.matches += len(found)
        delta.signatures[rule.id] += len(found)
        per_agent[rule.id] += len(found)
        threshold = rule.threshold
        # Fields come from re, and only for the lines that matched a threshold rule.
        texts = lines_of(found if threshold is not None else found[:MATCH_SAMPLES])
        samples = tuple(line[:MAX_EVENT_LINE] for line in texts[:MATCH_SAMPLES])
        delta.groups.append(MatchGroup(rule, span.host, span.source, span.time,
                                       len(found), samples))
        if threshold is not None:
            counts = rule.field_counts(texts, threshold.by)
            if counts:
                delta.hits.append((r, span.time, span.host, counts))
    return deltas


def lines_at(text: str, starts: list[int]) -> list[str]:
    """The lines of ``text`` (joined with ``"\\n"``) that begin at the sorted, unique offsets
    ``starts`` (as the engine gives them); only the text's last line has no newline after
    it, so only the last offset can find none."""
    ends = list(map(text.find, repeat("\n"), starts))
    if ends and ends[-1] < 0:
        ends[-1] = len(text)
    return list(map(text.__getitem__, map(slice, starts, ends)))


def _groups(spans: Sequence[Span], starts: Sequence[int], pairs: Sequence[tuple[int, int]]
            ) -> list[tuple[Span, int, list[int]]]:
    """(segment, rule, its matched lines in order) for the (line, rule) pairs, which are
    sorted by line; ``starts`` are the spans' first lines in the pairs' unit (index or
    offset). In the order the matches were read: by segment, then by each rule's first
    matched line (then rule), as the match stream shows them."""
    by_rule = groupby(sorted(pairs, key=_RULE), _RULE)  # a stable sort: lines stay in order
    found_by_rule = [(r, list(map(_LINE, group))) for r, group in by_rule]
    keyed: list[tuple[int, int, int, list[int]]] = []
    last = len(starts) - 1
    for r, found in found_by_rule:
        lo, count = 0, len(found)
        while lo < count:  # once per segment holding a match: spans between are skipped
            k = bisect_right(starts, found[lo]) - 1
            hi = count if k == last else bisect_left(found, starts[k + 1], lo)
            keyed.append((k, found[lo], r, found[lo:hi] if lo or hi < count else found))
            lo = hi
    keyed.sort(key=_ORDER)
    return [(spans[k], r, found) for k, _, r, found in keyed]


_LINE, _RULE, _ORDER = itemgetter(0), itemgetter(1), itemgetter(0, 1, 2)


def segment_bytes(seg: Segment) -> int:
    """UTF-8 size of the segment's lines without separators; ASCII text needs no encoding."""
    text = seg.text
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return size if seg.multiline or not seg.count else size - (seg.count - 1)
