"""Load and validate signature rules from YAML packs.

A pack is a YAML list of rules, or a mapping with a ``rules:`` list. The packs shipped in
this package are always loaded; ``RULES_PATH`` adds directories (or single files) of
``*.yml``/``*.yaml`` packs. Every problem raises :class:`RuleError` naming the file, the rule
id and what is wrong, so a bad pack stops a worker at start-up instead of mid-stream.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from itertools import repeat
from operator import methodcaller
from pathlib import Path
from typing import Any

import yaml

from logsig.errors import RuleError

SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
FLAGS: dict[str, re.RegexFlag] = {
    "ignorecase": re.IGNORECASE,
    "dotall": re.DOTALL,
    "multiline": re.MULTILINE,
}
REQUIRED = ("id", "title", "severity", "patterns", "examples")
OPTIONAL = ("description", "tags", "logsource", "flags", "threshold", "safe")
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
_PACK_SUFFIXES = (".yml", ".yaml")


MAX_COUNT = 10_000
"""Largest threshold count: a key's window keeps up to that many match times."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """Alert when ``count`` matches with the same ``by`` field fall within ``window`` seconds.

    Like fail2ban's maxretry/findtime: single matches are still counted as usual; the alert
    is the extra signal that a key (an address, a user) crossed the rate.
    """

    count: int
    window: float
    by: str


@dataclass(frozen=True, slots=True)
class Rule:
    """One signature: a line matches when any of ``patterns`` ``re.search``-es it."""

    id: str
    title: str
    severity: str
    patterns: tuple[str, ...]
    flags: tuple[str, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = ()
    logsource: Mapping[str, str] = field(default_factory=dict)
    match_examples: tuple[str, ...] = ()
    nomatch_examples: tuple[str, ...] = ()
    origin: str = ""
    threshold: Threshold | None = None
    safe: bool = False  # reviewed: may run on Python re despite nested quantifiers
    compiled: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    @property
    def re_flags(self) -> int:
        flags = 0
        for name in self.flags:
            flags |= FLAGS[name]
        return flags

    def search(self, line: str) -> re.Match[str] | None:
        """The first pattern's match on ``line``, or None: the reference definition."""
        for rx in self.compiled:
            m = rx.search(line)
            if m is not None:
                return m
        return None

    def fields(self, line: str) -> dict[str, str]:
        """Named groups of the first matching pattern (empty if the line does not match)."""
        m = self.search(line)
        if m is None:
            return {}
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def field(self, line: str, name: str) -> str | None:
        """``fields(line).get(name)`` without building the dict: run for every threshold hit."""
        m = self.search(line)
        if m is None or name not in m.re.groupindex:
            return None
        return m.group(name)

    def field_counts(self, lines: Iterable[str], name: str) -> Counter[str]:
        """How many of ``lines`` give each value of :meth:`field` ``name`` (lines where it
        is None or empty are not counted), with the loop over lines in C where the rule
        has one pattern: this runs for every threshold hit."""
        if len(self.compiled) == 1:
            rx = self.compiled[0]
            if name not in rx.groupindex:
                return Counter()
            counts = Counter(map(methodcaller("group", name), filter(None, map(rx.search, lines))))
        else:
            counts = Counter(map(self.field, lines, repeat(name)))
        counts.pop(None, None)  # type: ignore[call-overload]
        counts.pop("", None)
        return counts

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"title": self.title, "severity": self.severity}
        if self.threshold is not None:
            t = self.threshold
            meta["threshold"] = {"count": t.count, "window": t.window, "by": t.by}
        return meta


def builtin_packs() -> list[tuple[str, str]]:
    """(name, text) of every pack shipped in ``workers/rules``, sorted by name."""
    root = resources.files(__package__)
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(_PACK_SUFFIXES))
    return [(f"workers/rules/{n}", root.joinpath(n).read_text("utf-8")) for n in names]


def load_rules(rules_path: str = "", *, builtin: bool = True) -> list[Rule]:
    """Shipped packs (unless ``builtin=False``) plus the packs found in ``rules_path``.

    ``rules_path`` is ``os.pathsep``-separated, like ``PATH``; rule ids are unique across all.
    The first problem found raises :class:`RuleError`.
    """
    rules, errors = check_paths(rules_path, builtin=builtin)
    if errors:
        raise errors[0]
    return rules


def _pack_files(rules_path: str) -> Iterator[Path]:
    for entry in filter(None, (e.strip() for e in rules_path.split(os.pathsep))):
        path = Path(entry)
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.iterdir()
                              if p.suffix in _PACK_SUFFIXES and p.is_file())
        else:
            raise RuleError(f"{entry}: rules path does not exist (RULES_PATH)")


def _read(path: Path) -> tuple[str, str]:
    try:
        return str(path), path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: cannot read rule file: {exc}") from exc


def parse_pack(text: str, name: str) -> list[Rule]:
    """Parse one pack's YAML text; ``name`` is only used in error messages."""
    rules, errors = check_pack(text, name)
    if errors:
        raise errors[0]
    return rules


def check_pack(text: str, name: str) -> tuple[list[Rule], list[RuleError]]:
    """The valid rules of one pack and one error per invalid rule (for ``rules check``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], [RuleError(f"{name}: invalid YAML: {exc}")]
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    if not isinstance(data, list):
        return [], [RuleError(f"{name}: expected a list of rules (or a 'rules:' list)")]
    rules: list[Rule] = []
    errors: list[RuleError] = []
    for n, raw in enumerate(data, 1):
        try:
            rules.append(_parse_rule(raw, name, n))
        except RuleError as exc:
            errors.append(exc)
    return rules, errors


def check_paths(rules_path: str, *, builtin: bool = False) -> tuple[list[Rule], list[RuleError]]:
    """Every problem in the packs of ``rules_path`` (and the shipped ones if ``builtin``)."""
    try:
        sources = (builtin_packs() if builtin else []) + [_read(p) for p in
                                                          _pack_files(rules_path)]
    except RuleError as exc:
        return [], [exc]
    rules: list[Rule] = []
    errors: list[RuleError] = []
    seen: dict[str, str] = {}
    for name, text in sources:
        found, problems = check_pack(text, name)
        errors.extend(problems)
        for rule in found:
            if rule.id in seen:
                errors.append(RuleError(f"{name}: rule {rule.id!r}: duplicate id "
                                        f"(already defined in {seen[rule.id]})"))
                continue
            seen[rule.id] = name
            rules.append(rule)
    return rules, errors


def _parse_rule(raw: object, name: str, position: int) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{name}: rule #{position}: expected a mapping, got {type(raw).__name__}")
    rid = raw.get("id")
    label = f"{name}: rule {rid!r}" if isinstance(rid, str) else f"{name}: rule #{position}"
    try:
        rule = _build(raw, name)
    except _Invalid as exc:
        raise RuleError(f"{label}: {exc}") from None
    _check_examples(rule, label)
    return rule


class _Invalid(Exception):
    """A problem in one rule; turned into a RuleError carrying the file and rule id."""


def _build(raw: dict[str, Any], origin: str) -> Rule:
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise _Invalid(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _Invalid(f"unknown field(s): {', '.join(map(str, unknown))}")
    rid = _text(raw, "id")
    if not _ID.match(rid):
        raise _Invalid("id must be lowercase letters, digits, '.', '_' or '-'")
    severity = _text(raw, "severity")
    if severity not in SEVERITIES:
        raise _Invalid(f"unknown severity {severity!r} (expected one of {', '.join(SEVERITIES)})")
    flags = _strings(raw.get("flags", []), "flags")
    bad = [f for f in flags if f not in FLAGS]
    if bad:
        raise _Invalid(f"unknown flag(s) {', '.join(bad)} (known: {', '.join(FLAGS)})")
    matches, nomatches = _examples(raw["examples"])
    patterns = _strings(raw["patterns"], "patterns", required=True)
    rule = Rule(id=rid, title=_text(raw, "title"), severity=severity, patterns=patterns,
                flags=flags, description=str(raw.get("description") or "").strip(),
                tags=_strings(raw.get("tags", []), "tags"),
                logsource=_logsource(raw.get("logsource")),
                match_examples=matches, nomatch_examples=nomatches, origin=origin,
                threshold=_threshold(raw.get("threshold")), safe=_flag(raw, "safe"))
    compiled = tuple(_compile(p, rule.re_flags) for p in patterns)
    object.__setattr__(rule, "compiled", compiled)
    if rule.threshold is not None:
        lacking = [rx.pattern for rx in compiled if rule.threshold.by not in rx.groupindex]
        if lacking:
            raise _Invalid(f"threshold.by {rule.threshold.by!r} is not a named group of "
                           f"pattern(s) {', '.join(map(repr, lacking))}")
    return rule


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise _Invalid(f"field {key!r} must be true or false")
    return value


def _threshold(value: object) -> Threshold | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"count", "window", "by"}:
        raise _Invalid("field 'threshold' must be a mapping with count, window and by")
    count, window, by = value["count"], value["window"], value["by"]
    if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_COUNT:
        raise _Invalid(f"threshold.count must be an integer from 2 to {MAX_COUNT}")
    if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
        raise _Invalid("threshold.window must be a number of seconds > 0")
    if not isinstance(by, str) or not by.isidentifier():
        raise _Invalid("threshold.by must name a capture group of the patterns")
    return Threshold(count, float(window), by)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"field {key!r} must be a non-empty string")
    return value.strip()


def _strings(value: object, key: str, required: bool = False) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
        raise _Invalid(f"field {key!r} must be a string or a list of non-empty strings")
    if required and not items:
        raise _Invalid(f"field {key!r} must not be empty")
    return tuple(items)


def _logsource(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"product": value}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    raise _Invalid("field 'logsource' must be a string or a mapping")


def _examples(value: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(value, dict) or set(value) - {"match", "nomatch"}:
        raise _Invalid("field 'examples' must be a mapping with 'match' and 'nomatch' lists")
    try:
        matches = _strings(value.get("match"), "examples.match", required=True)
        nomatches = _strings(value.get("nomatch"), "examples.nomatch", required=True)
    except _Invalid:
        raise _Invalid("examples need at least one 'match' and one 'nomatch' line") from None
    return matches, nomatches


def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    try:
        rx = re.compile(pattern, flags)
    except re.error as exc:
        raise _Invalid(f"bad regex {pattern!r}: {exc}") from exc
    if rx.search("") is not None:
        raise _Invalid(f"pattern {pattern!r} matches the empty string, so every line")
    return rx


def _check_examples(rule: Rule, label: str) -> None:
    """A rule must match its own true positives and not its near misses."""
    for line in rule.match_examples:
        if rule.search(line) is None:
            raise RuleError(f"{label}: example does not match: {line!r}")
    for line in rule.nomatch_examples:
        if rule.search(line) is not None:
            raise RuleError(f"{label}: 'nomatch' example matches: {line!r}")


__all__ = ("FLAGS", "SEVERITIES", "Rule", "Threshold", "builtin_packs", "check_pack",
           "check_paths", "load_rules", "parse_pack")
