"""Rows of the security table (printed by conftest.py after the run)."""

from __future__ import annotations

RESULTS: list[dict[str, object]] = []
"""One row per attack: ``attack``, ``tried``, ``refused``, ``outcome``."""

COLUMNS = ("attack", "tried", "refused", "outcome")


def record(attack: str, tried: int, refused: int, outcome: str) -> None:
    RESULTS.append({"attack": attack, "tried": tried, "refused": refused, "outcome": outcome})
