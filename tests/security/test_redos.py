"""ReDoS: nested quantifiers are detected so a rule that must run on ``re`` can be refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RedisServer, logsig_cmd
from tests.security.report import record
from workers.rules.redos import nested_quantifier

EVIL = [r"(a+)+$", r"(\w*\s?)*x", r"^(a|aa)+(b+)*c", r"((ab)*c+)+d", r"(?:x+y?)+z"]
FINE = [r"a+b+", r"(ab)+", r"\d{1,3}(\.\d{1,3}){3}", r"(GET|POST) /\S+", r"(?:foo|bar)\d+"]


@pytest.mark.parametrize("pattern", EVIL)
def test_nested_quantifiers_are_flagged(pattern: str) -> None:
    assert nested_quantifier(pattern)


@pytest.mark.parametrize("pattern", FINE)
def test_ordinary_patterns_pass(pattern: str) -> None:
    assert not nested_quantifier(pattern)


def test_summary() -> None:
    record("ReDoS patterns (static check)", len(EVIL), sum(map(nested_quantifier, EVIL)),
           "nested quantifier detected")


REDOS_RULE = """\
rules:
  - id: evil-redos
    title: A look-ahead keeps this rule on re, and (a+)+ can backtrack exponentially
    severity: low
    patterns: ['(?=x)x(a+)+y']
    examples:
      match: ['xaaay']
      nomatch: ['xaaaz']
{extra}"""


def write_rule(directory: Path, extra: str = "") -> Path:
    directory.mkdir()
    (directory / "evil.yml").write_text(REDOS_RULE.format(extra=extra))
    return directory


def test_a_worker_refuses_a_redos_rule_that_must_run_on_re(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    rules = write_rule(tmp_path / "rules")
    proc = subprocess.run(logsig_cmd("worker", "--concurrency", "1"), capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "REDIS_URL": redis_server.url,
                               "RULES_PATH": str(rules)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "evil-redos" in proc.stderr and "catastrophic backtracking" in proc.stderr
    check = subprocess.run(logsig_cmd("rules", "check", str(rules)), capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 1 and "evil-redos" in check.stderr
    record("ReDoS rule refused at worker start", 1, 1, "exit 2, rule named")


def test_a_reviewed_rule_marked_safe_is_accepted(tmp_path: Path) -> None:
    rules = write_rule(tmp_path / "rules", extra="    safe: true\n")
    check = subprocess.run(logsig_cmd("rules", "check", str(rules)), capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr
