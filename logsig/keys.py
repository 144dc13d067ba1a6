"""Every Redis key logsig writes, defined once. The README's key table mirrors this module.

All keys start with ``KEY_PREFIX`` (default ``logsig``) so several deployments or test runs
can share one Redis server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "logsig"

    @property
    def totals(self) -> str:
        """Hash: ``lines``, ``batches``, ``chunks``, ``matches``, ``bytes``, ``duplicates``."""
        return f"{self.prefix}:totals"

    @property
    def signatures(self) -> str:
        """Hash: rule id -> number of matching lines, all agents."""
        return f"{self.prefix}:sig"

    @property
    def agents(self) -> str:
        """Hash: agent host -> number of lines received from it."""
        return f"{self.prefix}:agents"

    def agent(self, host: str) -> str:
        """Hash: rule id -> matching lines from one agent host."""
        return f"{self.prefix}:agent:{host}"

    def minute(self, ts: float) -> str:
        """Hash per UTC minute of ingestion: ``_lines`` and rule id -> matches. Expires."""
        return f"{self.prefix}:minute:{time.strftime('%Y%m%d%H%M', time.gmtime(ts))}"

    @property
    def matches(self) -> str:
        """Stream, capped: recent matches (rule, severity, agent, source, line, time)."""
        return f"{self.prefix}:matches"

    @property
    def rules(self) -> str:
        """Hash: rule id -> JSON {title, severity}, written by workers at start-up."""
        return f"{self.prefix}:rules"

    def chunk(self, chunk_id: str) -> str:
        """String with TTL: marks a chunk as counted, so a redelivery counts nothing."""
        return f"{self.prefix}:chunk:{chunk_id}"
