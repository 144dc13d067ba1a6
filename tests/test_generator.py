"""The traffic generator: deterministic, realistic in mix, paced and bounded."""

from __future__ import annotations

import re
import time

from agents.generator import MAX_BLOCK, GeneratorSource, generate_lines, iter_lines
from tests.agent_support import run_source

SIGNS = {
    "ssh_failed": r"sshd\[\d+\]: Failed password for ",
    "ssh_invalid": r"sshd\[\d+\]: Invalid user ",
    "ssh_accepted": r"sshd\[\d+\]: Accepted publickey for ",
    "pam_failure": r"pam_unix\(sudo:auth\): authentication failure",
    "sqli": r"(?i)union(%20| )select",
    "xss": r"(?i)(<|%3C)script(>|%3E)",
    "traversal": r"\.\.(/|%2f)\.\.(/|%2f).*etc/passwd",
    "jndi": r"\$\{jndi:ldap://",
    "scanner": r"(sqlmap|Nikto)",
    "oom": r"kernel: .*Out of memory: Killed process",
    "segfault": r"kernel: .*segfault at ",
    "java_exception": r"^java\.\w+(\.\w+)*(Exception|Error): ",
    "stack_frame": r"^\tat [\w.$/]+\(",
    "apache": r'^\d+\.\d+\.\d+\.\d+ - - \[\d\d/\w{3}/\d{4}:[\d:]{8} \+0000\] "(GET|POST) ',
}


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    assert generate_lines(2000, seed=7) == generate_lines(2000, seed=7)
    assert generate_lines(2000, seed=7) != generate_lines(2000, seed=8)
    assert generate_lines(500, seed=7) == generate_lines(2000, seed=7)[:500]


def test_exact_count_and_plain_lines() -> None:
    lines = generate_lines(1234, seed=1)
    assert len(lines) == 1234
    assert generate_lines(0) == []
    assert all(line and "\n" not in line and "\r" not in line for line in lines)


def test_mix_is_realistic_and_mostly_benign() -> None:
    lines = generate_lines(20_000, seed=3)
    counts = {name: sum(1 for x in lines if re.search(rx, x)) for name, rx in SIGNS.items()}
    assert all(counts.values()), counts  # every kind shows up
    attacks = sum(counts[k] for k in ("sqli", "xss", "traversal", "jndi", "scanner"))
    assert attacks < 0.05 * len(lines)
    assert counts["apache"] > 0.25 * len(lines)
    suspicious = sum(counts[k] for k in SIGNS if k not in ("apache", "ssh_accepted",
                                                           "stack_frame"))
    assert suspicious < 0.25 * len(lines)


def test_stack_traces_follow_their_exception_line() -> None:
    lines = generate_lines(20_000, seed=5)
    for i, line in enumerate(lines[1:], 1):
        if line.startswith("\tat "):
            assert lines[i - 1].startswith("\tat ") or "Exception" in lines[i - 1] \
                or "Error" in lines[i - 1]


def test_iter_lines_is_endless() -> None:
    it = iter_lines(seed=1)
    assert len([next(it) for _ in range(50_000)]) == 50_000


def test_paced_source_keeps_rate_and_count() -> None:
    start = time.monotonic()
    blocks = run_source(GeneratorSource(rate=400, count=120, seed=9))
    elapsed = time.monotonic() - start
    assert [x for b in blocks for x in b.lines] == generate_lines(120, seed=9)
    assert 0.2 <= elapsed < 2.0  # 120 lines at 400/s take ~0.3 s
    assert len(blocks) > 3 and all(b.source == "generator" and b.ends is None for b in blocks)


def test_unpaced_source_ships_big_blocks() -> None:
    blocks = run_source(GeneratorSource(rate=None, count=12_000, seed=1))
    assert sum(len(b) for b in blocks) == 12_000
    assert max(len(b) for b in blocks) == MAX_BLOCK


def test_unbounded_source_stops_when_asked() -> None:
    src = GeneratorSource(rate=1000, count=None, seed=1)
    assert not src.finite
    blocks = run_source(src, stop_after=0.2)
    assert 0 < sum(len(b) for b in blocks) < 1000
