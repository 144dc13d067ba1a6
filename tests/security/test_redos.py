"""ReDoS: nested quantifiers are detected so a rule that must run on ``re`` can be refused."""

from __future__ import annotations

import pytest

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
