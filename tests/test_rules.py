"""Rule packs: the shipped signatures and the loader's error reporting."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from logsig.errors import RuleError
from workers.rules import SEVERITIES, Rule, load_rules, parse_pack

RULES = load_rules()

GOOD = """
- id: {rid}
  title: Test rule
  severity: low
  patterns: ['{pattern}']
  examples:
    match: ['{hit}']
    nomatch: ['nothing here']
"""


def _pack(rid: str = "t-rule", pattern: str = "boom", hit: str = "a boom b") -> str:
    return GOOD.format(rid=rid, pattern=pattern, hit=hit)


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_shipped_pack_is_large_enough_and_well_formed() -> None:
    assert len(RULES) >= 80
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.severity in SEVERITIES
        assert rule.title and rule.patterns
        assert rule.match_examples and rule.nomatch_examples


def test_shipped_pack_covers_the_required_signatures() -> None:
    ids = {r.id for r in RULES}
    required = {"sshd-failed-password", "sshd-invalid-user", "sshd-break-in-attempt",
                "sshd-max-auth-attempts", "pam-auth-failure", "sudo-incorrect-password",
                "sudo-auth-failure", "su-auth-failure", "web-sqli-union-select", "web-xss",
                "web-path-traversal", "web-lfi-etc-passwd", "web-log4shell",
                "web-scanner-user-agent", "web-wp-login-probe", "web-phpmyadmin-probe",
                "web-dotenv-probe", "kernel-oom-killer", "kernel-segfault", "kernel-io-error",
                "java-exception", "java-out-of-memory", "hdfs-datanode-exception",
                "hadoop-error"}
    assert required <= ids


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_rule_examples(rule: Rule) -> None:
    for line in rule.match_examples:
        assert rule.search(line), f"{rule.id} should match {line!r}"
    for line in rule.nomatch_examples:
        assert not rule.search(line), f"{rule.id} should not match {line!r}"


@pytest.mark.parametrize(("line", "rule_id"), [
    ('GET /x.php?id=1%20union%20select%201,2 HTTP/1.1', "web-sqli-union-select"),
    ('GET /x.php?id=1/*!50000union*//*!50000select*/1 HTTP/1.1', "web-sqli-union-select"),
    ('GET /x.php?id=1 UNION ALL SELECT 1 HTTP/1.1', "web-sqli-union-select"),
    ('GET /dl?f=%2e%2e%2f%2e%2e%2fetc HTTP/1.1', "web-path-traversal"),
    ('GET /dl?f=../../etc/passwd HTTP/1.1', "web-lfi-etc-passwd"),
    ('"GET / HTTP/1.1" 200 1 "-" "${jndi:ldap://x/a}"', "web-log4shell"),
    ("kernel: Out of memory: Kill process 12 (mysqld) score 900", "kernel-oom-killer"),
    ("kernel: Out of memory: Killed process 12 (mysqld) total-vm:1kB", "kernel-oom-killer"),
])
def test_required_payload_variants(line: str, rule_id: str) -> None:
    rule = next(r for r in RULES if r.id == rule_id)
    assert rule.search(line)


def test_rules_mapping_form_and_optional_fields() -> None:
    text = "rules:\n" + "\n".join("  " + ln for ln in _pack().splitlines())
    text += "\n    flags: [ignorecase]\n    tags: [a, b]\n    logsource: linux\n"
    (rule,) = parse_pack(text, "x.yml")
    assert rule.flags == ("ignorecase",) and rule.tags == ("a", "b")
    assert rule.logsource == {"product": "linux"}
    assert rule.search("BOOM")


def test_bad_regex_names_file_rule_and_error() -> None:
    with pytest.raises(RuleError) as err:
        parse_pack(_pack(rid="bad-re", pattern="(unclosed"), "packs/bad.yml")
    msg = str(err.value)
    assert "packs/bad.yml" in msg and "bad-re" in msg
    assert "missing ), unterminated subpattern" in msg


def test_duplicate_id_across_files_names_both(tmp_path: Path) -> None:
    _write(tmp_path, "a.yml", _pack(rid="same"))
    _write(tmp_path, "b.yml", _pack(rid="same"))
    with pytest.raises(RuleError, match=r"b\.yml: rule 'same': duplicate id .*a\.yml"):
        load_rules(str(tmp_path), builtin=False)


def test_duplicate_of_a_shipped_rule(tmp_path: Path) -> None:
    _write(tmp_path, "dup.yml", _pack(rid="sshd-failed-password"))
    with pytest.raises(RuleError, match=r"sshd-failed-password.*duplicate id"):
        load_rules(str(tmp_path))


def test_missing_field() -> None:
    text = _pack(rid="no-title").replace("  title: Test rule\n", "")
    with pytest.raises(RuleError, match=r"x\.yml: rule 'no-title': missing field\(s\): title"):
        parse_pack(text, "x.yml")


def test_unknown_severity() -> None:
    text = _pack(rid="sev").replace("severity: low", "severity: urgent")
    with pytest.raises(RuleError, match="rule 'sev': unknown severity 'urgent'"):
        parse_pack(text, "x.yml")


def test_unknown_flag() -> None:
    text = _pack(rid="flag") + "  flags: [caseless]\n"
    with pytest.raises(RuleError, match=r"rule 'flag': unknown flag.*caseless"):
        parse_pack(text, "x.yml")


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda t: t.replace("'a boom b'", "'no hit'"), "example does not match"),
    (lambda t: t.replace("'nothing here'", "'boom'"), "'nomatch' example matches"),
    (lambda t: t.replace("    nomatch: ['nothing here']\n", ""), "at least one 'match' and one"),
    (lambda t: t + "  extra: 1\n", "unknown field"),
    (lambda t: t.replace("id: ok", "id: Not Valid"), "id must be"),
    (lambda t: t.replace("'boom'", "'x*'"), "matches the empty string"),
])
def test_other_rule_problems(edit, problem: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleError, match=problem):
        parse_pack(edit(_pack(rid="ok")), "x.yml")


def test_pack_must_be_a_list() -> None:
    with pytest.raises(RuleError, match=r"x\.yml: expected a list of rules"):
        parse_pack("id: lonely\n", "x.yml")
    with pytest.raises(RuleError, match=r"x\.yml: invalid YAML"):
        parse_pack("- [unbalanced\n", "x.yml")


def test_rules_path_adds_directories_and_files(tmp_path: Path) -> None:
    _write(tmp_path / "one", "a.yml", _pack(rid="extra-a"))
    _write(tmp_path / "one", "b.yaml", _pack(rid="extra-b"))
    _write(tmp_path / "one", "ignored.txt", "not a pack")
    single = _write(tmp_path / "two", "c.yml", _pack(rid="extra-c"))
    path = os.pathsep.join([str(tmp_path / "one"), str(single)])
    rules = load_rules(path)
    ids = [r.id for r in rules]
    assert ids[-3:] == ["extra-a", "extra-b", "extra-c"]
    assert len(rules) == len(RULES) + 3
    assert rules[-1].origin.endswith("c.yml")


def test_rules_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="rules path does not exist"):
        load_rules(str(tmp_path / "missing"))


def test_field_is_one_named_group_of_fields() -> None:
    """``Rule.field`` (per threshold hit) agrees with ``Rule.fields`` on every example."""
    for rule in load_rules():
        names = {n for rx in rule.compiled for n in rx.groupindex} | {"no_such_group"}
        for line in (*rule.match_examples, *rule.nomatch_examples):
            for name in names:
                assert rule.field(line, name) == rule.fields(line).get(name)


def test_field_counts_count_field_over_lines() -> None:
    """``Rule.field_counts`` (one call per group of threshold hits) counts exactly what
    ``Rule.field`` gives line by line, empty and missing values left out, for rules of one
    pattern (the C-level path) and of several."""
    rules = load_rules()
    assert any(len(r.compiled) == 1 for r in rules) and any(len(r.compiled) > 1 for r in rules)
    for rule in rules:
        lines = [*rule.match_examples, *rule.nomatch_examples] * 2
        names = {n for rx in rule.compiled for n in rx.groupindex} | {"no_such_group"}
        for name in names:
            want = Counter(rule.field(line, name) for line in lines)
            want.pop(None, None)
            want.pop("", None)
            assert rule.field_counts(lines, name) == want, (rule.id, name)


def test_field_counts_leave_out_an_empty_field() -> None:
    (rule,) = parse_pack(_pack(pattern="user=(?P<user>\\w*) ", hit="user=bob x"), "x.yml")
    assert rule.field_counts(["user= a", "user=bob x", "user=bob y", "nothing"], "user") == (
        Counter({"bob": 2}))
