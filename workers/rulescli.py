"""``logsig rules check`` and ``logsig rules test``: validate packs, try rules on a log file.

``check`` reports every bad rule (file, rule id, problem) rather than stopping at the first,
and says which rules Hyperscan cannot run exactly. ``test`` is our ``fail2ban-regex``: it
scans a local file with the same engine a worker uses and prints per-rule counts with sample
lines, or with ``--json`` every matching line with its rule ids and captured fields.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from logsig.errors import RuleError
from workers.engine import HyperscanEngine, backtracking_risks, make_engine
from workers.rules import Rule, check_paths, load_rules

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
SCAN_BATCH = 10_000
SAMPLES = 3
SAMPLE_WIDTH = 160


def rules_check(rules_path: str, out: TextIO, err: TextIO) -> int:
    """Validate the packs in ``rules_path``; exit 1 if any rule is invalid."""
    rules, errors = check_paths(rules_path)
    risks = backtracking_risks(rules)
    for exc in [*errors, *risks]:
        err.write(f"error: {exc}\n")
    if not rules and not errors:
        err.write(f"error: {rules_path}: no *.yml or *.yaml rule files found\n")
        return EXIT_INVALID
    files = len({r.origin for r in rules})
    out.write(f"{len(rules)} valid rule(s) in {files} file(s), {len(errors)} invalid\n")
    if rules:
        _report_engine(rules, out)
    return EXIT_INVALID if errors or risks else EXIT_OK


def _report_engine(rules: Sequence[Rule], out: TextIO) -> None:
    logging.getLogger("workers.engine").setLevel(logging.WARNING)
    engine = make_engine(rules)
    if isinstance(engine, HyperscanEngine):
        for label, ids in (("confirmed with re (hyperscan prefilter)", engine.prefiltered),
                           ("scanned with re only", engine.fallback)):
            for r in ids:
                out.write(f"note: {rules[r].origin}: rule {rules[r].id!r}: {label}\n")


def read_lines(path: Path) -> Iterator[str]:
    """The file's lines without their line ending (LF or CRLF), decoded leniently."""
    with path.open("rb") as fh:
        for raw in fh:
            yield raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")


def rules_test(logfile: str, rules_path: str | None, as_json: bool, out: TextIO,
               err: TextIO) -> int:
    """Scan ``logfile`` with the shipped rules (or only those in ``rules_path``)."""
    try:
        rules = load_rules(rules_path or "", builtin=not rules_path)
    except RuleError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_INVALID
    path = Path(logfile)
    if not path.is_file():
        err.write(f"error: {logfile}: no such file\n")
        return EXIT_USAGE
    engine = make_engine(rules)
    started = time.perf_counter()
    lines = list(read_lines(path))
    hits: dict[int, list[int]] = defaultdict(list)
    for base in range(0, len(lines), SCAN_BATCH):
        for i, r in engine.scan(lines[base:base + SCAN_BATCH]):
            hits[base + i].append(r)
    elapsed = time.perf_counter() - started
    if as_json:
        json.dump(_as_json(logfile, lines, hits, rules, engine.__class__.__name__), out)
        out.write("\n")
    else:
        _render(lines, hits, rules, f"{type(engine).__name__}, {elapsed:.2f}s", out)
    return EXIT_OK


def _as_json(logfile: str, lines: Sequence[str], hits: dict[int, list[int]],
             rules: Sequence[Rule], engine: str) -> dict[str, Any]:
    counts = Counter(rules[r].id for rs in hits.values() for r in rs)
    return {
        "file": logfile, "lines": len(lines), "rules": len(rules), "engine": engine,
        "matched_lines": len(hits),
        "counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "matches": [{"line": i + 1, "rules": [rules[r].id for r in rs],
                     "fields": {rules[r].id: rules[r].fields(lines[i]) for r in rs}}
                    for i, rs in sorted(hits.items())],
    }


def _render(lines: Sequence[str], hits: dict[int, list[int]], rules: Sequence[Rule],
            how: str, out: TextIO) -> None:
    per_rule: dict[int, list[int]] = defaultdict(list)
    for i, rs in sorted(hits.items()):
        for r in rs:
            per_rule[r].append(i)
    out.write(f"Lines: {len(lines):,}, matched: {len(hits):,} ({len(rules)} rules, {how})\n\n")
    if not per_rule:
        out.write("No rule matched.\n")
        return
    for r in sorted(per_rule, key=lambda r: (-len(per_rule[r]), rules[r].id)):
        rule, found = rules[r], per_rule[r]
        out.write(f"{len(found):>8,}  {rule.severity:<8}  {rule.id}  ({rule.title})\n")
        for i in found[:SAMPLES]:
            fields = ", ".join(f"{k}={v}" for k, v in rule.fields(lines[i]).items())
            sample = lines[i].strip()[:SAMPLE_WIDTH]
            out.write(f"{'':>10}{i + 1}: {sample}\n")
            if fields:
                out.write(f"{'':>12}fields: {fields}\n")
