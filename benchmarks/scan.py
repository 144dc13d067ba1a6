"""Scan throughput of the reference (``re``) and Hyperscan engines, side by side.

For 10, 80, 200 and 1,000 rules (shipped packs first, then generated ones) it measures, on
the same batches of a >= 500,000-line corpus:

* ``fast``: :meth:`workers.engine.HyperscanEngine.scan_buffer` per batch buffer (the lines
  joined with ``"\\n"`` and encoded, as the worker holds them): check, scan, map matches;
* ``fast_lines``: :meth:`~workers.engine.HyperscanEngine.scan` per batch of ``str`` lines
  (join and encode included);
* ``bare``: the engine's own compiled database (``engine.database``) scanning the same buffers
  with an empty match handler: the ceiling the fast engine is compared to;
* ``reference``: :class:`workers.engine.ReferenceEngine` on an evenly spread sample of the
  batches (every rule against every line is too slow to run on all of them).

The fast, fast_lines and bare runs are interleaved (one of each per round) so that load from
other processes on the machine hits them alike; each figure is the median of ``--repeat``
(default 5) rounds. Also recorded: Hyperscan matches and distinct (line, rule) pairs per
batch, and per batch what Hyperscan itself costs and what each entry point adds to it. JSON
goes to ``benchmarks/results/scan.json``.
Run: ``.venv/bin/python -m benchmarks.scan`` (a few minutes) or ``--quick`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import corpus, extra_rules
from workers.engine import HyperscanEngine, ReferenceEngine
from workers.rules import Rule, load_rules

RESULTS = Path(__file__).resolve().parent / "results" / "scan.json"
RULE_COUNTS = (10, 80, 200, 1000)
REF_SEARCHES = 1_500_000  # rule x line searches per reference run: keeps it to ~1-2 s


def rule_sets(counts: Sequence[int]) -> dict[int, list[Rule]]:
    shipped = load_rules()
    extra = extra_rules(max(0, max(counts) - len(shipped)))
    pool = shipped + extra
    return {n: pool[:n] for n in counts}


def _timed(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Seconds per run of each function, run in turn ``repeat`` times (interleaved)."""
    runs: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    return runs


def _rate(lines: int, nbytes: int, runs: list[float]) -> dict[str, Any]:
    med = statistics.median(runs)
    return {"lines": lines, "seconds": runs, "median_s": med,
            "lines_per_s": lines / med, "mb_per_s": nbytes / med / 1e6}


def _match_counts(engine: HyperscanEngine, buffers: list[bytes]) -> dict[str, float]:
    """Hyperscan reports (match handler calls) and distinct (line, rule) pairs per batch."""
    calls = 0

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1

    pairs = 0
    for data in buffers:
        engine.database.scan(data, match_event_handler=count)
        pairs += len(engine.scan_buffer(data))
    return {"matches_per_batch": calls / len(buffers), "pairs_per_batch": pairs / len(buffers)}


def _runners(fast: HyperscanEngine, batches: list[list[str]], buffers: list[bytes]
             ) -> dict[str, Callable[[], object]]:
    """One pass over every batch per entry point, and the bare scan (the ceiling)."""
    db = fast.database  # the ceiling scans with the very database the engine uses

    def empty(*_: object) -> None:
        return None

    def run_fast() -> None:
        for data in buffers:
            fast.scan_buffer(data)

    def run_lines() -> None:
        for b in batches:
            fast.scan(b)

    def run_offsets() -> None:  # as the worker calls it, scan_buffer where it declines
        for data in buffers:
            if fast.scan_offsets(data) is None:
                fast.scan_buffer(data)

    def run_bare() -> None:
        for data in buffers:
            db.scan(data, match_event_handler=empty)

    return {"fast": run_fast, "fast_lines": run_lines, "fast_offsets": run_offsets,
            "bare": run_bare}


def measure(rules: list[Rule], batches: list[list[str]], repeat: int) -> dict[str, Any]:
    """Fast (buffer and lines), bare and reference throughput for one rule set."""
    started = time.perf_counter()
    fast = HyperscanEngine(rules)
    compile_s = time.perf_counter() - started
    ref = ReferenceEngine(rules)
    buffers = ["\n".join(b).encode("utf-8") for b in batches]
    nlines, nbytes = sum(map(len, batches)), sum(map(len, buffers))
    step = max(1, round(len(batches) * len(batches[0]) * len(rules) / REF_SEARCHES))
    sample = batches[::step]
    sample_bytes = sum(len(buffers[i]) for i in range(0, len(batches), step))

    def run_ref() -> None:
        for b in sample:
            ref.scan(b)

    runs = _timed(_runners(fast, batches, buffers), repeat)
    out: dict[str, Any] = {
        "rules": len(rules), "compile_s": compile_s,
        "re_decided_rules": len(fast.prefiltered) + len(fast.fallback),
        **_match_counts(fast, buffers),
        **{name: _rate(nlines, nbytes, r) for name, r in runs.items()},
        "reference": _rate(sum(map(len, sample)), sample_bytes,
                           _timed({"ref": run_ref}, repeat)["ref"])}
    out["fast_vs_reference"] = out["fast"]["lines_per_s"] / out["reference"]["lines_per_s"]
    for name in ("fast", "fast_lines", "fast_offsets"):
        out[f"bare_vs_{name}"] = out["bare"]["lines_per_s"] / out[name]["lines_per_s"]
    per_batch = 1e6 / len(batches)
    out["us_per_batch"] = {name: out[name]["median_s"] * per_batch
                           for name in ("bare", "fast", "fast_lines", "fast_offsets")}
    return out


def targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on this run (None where a rule count was not measured).

    "fast" is ``scan_buffer``, the engine's batch entry point; the worker calls
    ``scan_offsets`` (the same scan, lines named by offset) where it can, and its ratios,
    the ``scan(lines)`` and bare-scan ones are given alongside for comparison.
    """
    by = {r["rules"]: r for r in results}
    at80, at10, at1000 = by.get(80), by.get(10), by.get(1000)

    def scale(key: str) -> float | None:
        if not (at10 and at1000):
            return None
        return float(at1000[key]["lines_per_s"] / at10[key]["lines_per_s"])

    fast_scale = scale("fast")
    return {
        "fast_vs_reference_at_80 >= 100": at80 and at80["fast_vs_reference"] >= 100,
        "bare_vs_fast_at_80 <= 1.5": at80 and at80["bare_vs_fast"] <= 1.5,
        "fast_1000_over_fast_10 >= 0.25": None if fast_scale is None else fast_scale >= 0.25,
        "fast_1000_over_fast_10": fast_scale,
        "fast_lines_1000_over_fast_lines_10": scale("fast_lines"),
        "bare_vs_fast_offsets_at_80": at80 and at80["bare_vs_fast_offsets"],
        "fast_offsets_1000_over_fast_offsets_10": scale("fast_offsets"),
        "bare_1000_over_bare_10": scale("bare"),
    }


def table(results: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    head = (f"{'rules':>5}  {'reference l/s':>13}  {'scan(lines) l/s':>15}  "
            f"{'scan_buffer l/s':>15}  {'fast MB/s':>9}  {'bare l/s':>11}  {'fast/ref':>8}  "
            f"{'bare/fast':>9}  {'bare/lines':>10}  {'matches':>7}  {'pairs':>6}")
    head += f"  {'scan_offsets l/s':>16}  {'bare/offs':>9}"
    out.write(head + "\n")
    for r in results:
        out.write(f"{r['rules']:>5}  {r['reference']['lines_per_s']:>13,.0f}  "
                  f"{r['fast_lines']['lines_per_s']:>15,.0f}  "
                  f"{r['fast']['lines_per_s']:>15,.0f}  {r['fast']['mb_per_s']:>9.1f}  "
                  f"{r['bare']['lines_per_s']:>11,.0f}  {r['fast_vs_reference']:>7.0f}x  "
                  f"{r['bare_vs_fast']:>8.2f}x  {r['bare_vs_fast_lines']:>9.2f}x  "
                  f"{r['matches_per_batch']:>7.1f}  {r['pairs_per_batch']:>6.1f}  "
                  f"{r['fast_offsets']['lines_per_s']:>16,.0f}  "
                  f"{r['bare_vs_fast_offsets']:>8.2f}x\n")
    out.write("matches and pairs: Hyperscan reports and distinct (line, rule) pairs per batch\n")
    out.write("per batch, microseconds: Hyperscan itself (bare) and what each entry point adds\n")
    for r in results:
        us = r["us_per_batch"]
        out.write(f"{r['rules']:>5}  bare {us['bare']:7.1f}  "
                  f"scan_buffer +{us['fast'] - us['bare']:6.1f}  "
                  f"scan(lines) +{us['fast_lines'] - us['bare']:6.1f}  "
                  f"scan_offsets +{us['fast_offsets'] - us['bare']:6.1f}\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=500_000, help="corpus size (default 500000)")
    p.add_argument("--batch", type=int, default=1000, help="lines per batch (default 1000)")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure; the median counts")
    p.add_argument("--rules", default=",".join(map(str, RULE_COUNTS)),
                   help="comma-separated rule counts")
    p.add_argument("--quick", action="store_true", help="smoke run: 20000 lines, 10,80 rules")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON output file")
    args = p.parse_args(argv)
    counts = [10, 80] if args.quick else [int(n) for n in args.rules.split(",")]
    nlines = 20_000 if args.quick else args.lines
    repeat = 1 if args.quick else args.repeat
    lines, source = corpus(nlines)
    batches = [lines[i:i + args.batch] for i in range(0, len(lines), args.batch)]
    results = []
    for n, rules in rule_sets(counts).items():
        results.append(measure(rules, batches, repeat))
        print(f"measured {n} rules", file=sys.stderr)
    report = {"corpus": {"lines": len(lines), "source": source, "batch": args.batch},
              "repeat": repeat, "machine": {"cpus": os.cpu_count(),
                                            "python": platform.python_version(),
                                            "platform": platform.platform()},
              "results": results, "targets": targets(results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"corpus: {len(lines):,} lines ({source}), batches of {args.batch}, "
          f"median of {repeat}")
    table(results)
    print(json.dumps(report["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
