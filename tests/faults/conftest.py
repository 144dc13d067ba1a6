"""Print the fault-injection table after the run: what was sent, counted, lost, duplicated."""

from __future__ import annotations

import pytest

from tests.faults.cluster import RESULTS

COLUMNS = ("fault", "sent", "counted", "lost", "duplicated", "redeliveries absorbed")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    widths = [max(len(c), *(len(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]))
                            for r in RESULTS)) for c in COLUMNS]
    terminalreporter.section("fault injection: lines per fault")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in RESULTS:
        cells = [f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in COLUMNS]
        terminalreporter.write_line("  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))))
