"""``logsig rules check`` / ``logsig rules test`` and the benchmark's smoke run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, logsig_cmd
from workers.rulescli import rules_check, rules_test

BAD_PACK = r"""
- id: good-one
  title: fine
  severity: low
  patterns: ['fine \d+']
  examples: {match: ['fine 1'], nomatch: ['fine']}
- id: broken-regex
  title: broken
  severity: low
  patterns: ['(unclosed']
  examples: {match: ['x'], nomatch: ['y']}
- id: bad-severity
  title: sev
  severity: urgent
  patterns: ['x']
  examples: {match: ['x'], nomatch: ['y']}
"""
LOG = [
    "Dec 10 06:55:48 bastion sshd[24200]: Failed password for invalid user webmaster "
    "from 203.0.113.186 port 38926 ssh2",
    "nothing to see here",
    '203.0.113.4 - - [15/Dec/2018:15:17:11 -0800] "GET /.env HTTP/1.1" 404 239 "-" "-"',
]


def test_check_reports_every_bad_rule(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BAD_PACK)
    out, err = io.StringIO(), io.StringIO()
    assert rules_check(str(tmp_path), out, err) == 1
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert "bad.yml: rule 'broken-regex': bad regex '(unclosed': missing )" in lines[0]
    assert "bad.yml: rule 'bad-severity': unknown severity 'urgent'" in lines[1]
    assert "1 valid rule(s) in 1 file(s), 2 invalid" in out.getvalue()


def test_check_shipped_packs_is_clean() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert rules_check(str(ROOT / "workers" / "rules"), out, err) == 0
    assert err.getvalue() == "" and " 0 invalid" in out.getvalue()


def test_check_via_cli_exit_code(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BAD_PACK)
    proc = subprocess.run(logsig_cmd("rules", "check", str(tmp_path)), capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert "broken-regex" in proc.stderr and "bad-severity" in proc.stderr


def test_rules_test_text_and_json(tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    log.write_bytes(("\r\n".join(LOG) + "\r\n").encode())
    out = io.StringIO()
    assert rules_test(str(log), None, False, out, io.StringIO()) == 0
    text = out.getvalue()
    assert "Lines: 3, matched: 2" in text
    assert "sshd-failed-password" in text and "web-dotenv-probe" in text
    assert "1: Dec 10 06:55:48" in text and "src=203.0.113.186" in text
    out = io.StringIO()
    assert rules_test(str(log), None, True, out, io.StringIO()) == 0
    report = json.loads(out.getvalue())
    assert [m["line"] for m in report["matches"]] == [1, 3]
    first = report["matches"][0]
    assert "sshd-failed-password" in first["rules"]
    assert first["fields"]["sshd-failed-password"] == {"user": "webmaster",
                                                       "src": "203.0.113.186"}


def test_rules_test_with_own_rules_only(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "one.yml").write_text(BAD_PACK.split("- id: broken-regex")[0])
    log = tmp_path / "x.log"
    log.write_text("fine 42\nnothing\n")
    out = io.StringIO()
    assert rules_test(str(log), str(tmp_path / "rules"), True, out, io.StringIO()) == 0
    report = json.loads(out.getvalue())
    assert report["rules"] == 1 and report["counts"] == {"good-one": 1}


def test_rules_test_missing_file(tmp_path: Path) -> None:
    err = io.StringIO()
    assert rules_test(str(tmp_path / "nope.log"), None, False, io.StringIO(), err) == 2
    assert "no such file" in err.getvalue()


def test_benchmark_quick_run(tmp_path: Path) -> None:
    out = tmp_path / "scan.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scan", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert [r["rules"] for r in report["results"]] == [10, 80]
    for r in report["results"]:
        assert r["fast"]["lines_per_s"] > r["reference"]["lines_per_s"] > 0
        assert r["bare"]["lines_per_s"] > 0
    assert "fast/ref" in proc.stdout
