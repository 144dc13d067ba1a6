"""Print what the security suite tried and how each attempt ended, after the run."""

from __future__ import annotations

import pytest

from tests.security.report import COLUMNS, RESULTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    widths = [max(len(c), *(len(str(r[c])) for r in RESULTS)) for c in COLUMNS]
    terminalreporter.section("security: what was tried and refused")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in RESULTS:
        cells = [str(row[c]) for c in COLUMNS]
        terminalreporter.write_line("  ".join(
            cell.rjust(w) if c in ("tried", "refused") else cell.ljust(w)
            for c, cell, w in zip(COLUMNS, cells, widths, strict=True)))
