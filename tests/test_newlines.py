"""count_newlines: the fast newline count agrees with str.count on any text, str or bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsig.newlines import count_newlines


@pytest.mark.parametrize("text", ["", "a", "\n", "a\nb", "\n\n\nx\n", "é\nü\n", "\r\n\r\n",
                                  "x" * 5000 + "\n" + "y" * 3, "\udcff\n", "\u2028\n"])
def test_agrees_with_count(text: str) -> None:
    assert count_newlines(text) == text.count("\n")
    assert count_newlines(text.encode("utf-8", "surrogatepass")) == text.count("\n")


@given(st.text(alphabet=st.sampled_from("ab\n\r é\x00"), max_size=300))
def test_any_text(text: str) -> None:
    assert count_newlines(text) == text.count("\n")
    assert count_newlines(text.encode()) == text.count("\n")
