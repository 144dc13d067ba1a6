"""count_newlines: the fast newline count agrees with str.count on any text, str or bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logsig.newlines import count_newlines, nth_newline


@pytest.mark.parametrize("text", ["", "a", "\n", "a\nb", "\n\n\nx\n", "é\nü\n", "\r\n\r\n",
                                  "x" * 5000 + "\n" + "y" * 3, "\udcff\n", "\u2028\n"])
def test_agrees_with_count(text: str) -> None:
    assert count_newlines(text) == text.count("\n")
    assert count_newlines(text.encode("utf-8", "surrogatepass")) == text.count("\n")


@given(st.text(alphabet=st.sampled_from("ab\n\r é\x00"), max_size=300))
def test_any_text(text: str) -> None:
    assert count_newlines(text) == text.count("\n")
    assert count_newlines(text.encode()) == text.count("\n")


@given(st.text(alphabet=st.sampled_from("ab\n"), max_size=300), st.integers(1, 300))
def test_nth_newline_is_where_the_nth_newline_is(text: str, n: int) -> None:
    data = text.encode()
    places = [i for i, ch in enumerate(data) if ch == 10]
    if n <= len(places):
        assert nth_newline(data, n) == places[n - 1]
    else:
        with pytest.raises(ValueError):
            nth_newline(data, n)


def test_nth_newline_with_lines_of_very_different_lengths() -> None:
    data = b"x" * 10_000 + b"\n" + b"\n" * 50 + b"y" * 3 + b"\n"
    places = [i for i, ch in enumerate(data) if ch == 10]
    assert [nth_newline(data, n) for n in range(1, len(places) + 1)] == places
