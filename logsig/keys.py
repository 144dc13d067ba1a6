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
        """Hash: ``lines``, ``batches``, ``chunks``, ``matches``, ``bytes``, ``duplicates``,
        ``alerts`` (threshold alerts raised), ``truncated`` (lines cut at MAX_LINE_BYTES)."""
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
        """Stream, capped: one entry per rule per segment (rule, severity, agent, source, time,
        count, lines: a sample of the matching lines)."""
        return f"{self.prefix}:matches"

    @property
    def rules(self) -> str:
        """Hash: rule id -> JSON {title, severity}, written by workers at start-up."""
        return f"{self.prefix}:rules"

    def counted(self, gateway_id: str) -> str:
        """List: ids of chunks the workers have recorded, pushed by the result script for the
        gateway process ``gateway_id`` that acks them end to end. Expires an hour after the
        last push, so a gateway that is gone leaves nothing behind."""
        return f"{self.prefix}:counted:{gateway_id}"

    def batch(self, batch_id: str) -> str:
        """String with TTL (``CHUNK_TTL``): a packed batch waiting for its scan task (the
        task carries only this key). Deleted by the script that records the batch."""
        return f"{self.prefix}:batch:{batch_id}"

    def chunk(self, chunk_id: str) -> str:
        """String with TTL: marks a chunk as counted, so a redelivery counts nothing."""
        return f"{self.prefix}:chunk:{chunk_id}"

    def windows(self, rule_id: str) -> str:
        """Hash per threshold rule: key value (e.g. a source address) -> the log times of the
        key's latest matches, oldest first, space-separated, at most the rule's ``count`` of
        them (enough to decide every crossing exactly); times older than the rule's window
        are dropped on every hit. One generation (the rule's window plus an hour) old, it
        becomes :meth:`previous_windows`; a key not hit since is forgotten a generation
        later."""
        return f"{self.prefix}:windows:{rule_id}"

    def previous_windows(self, rule_id: str) -> str:
        """The rule's windows of the generation before: read for keys the current hash lacks."""
        return f"{self.prefix}:windows:{rule_id}:previous"

    @property
    def alerts(self) -> str:
        """Stream, capped: threshold alerts (rule, severity, key, count, window, first, last,
        agent), one per crossing."""
        return f"{self.prefix}:alerts"

    def analysis_chunk(self, job_id: str, index: int) -> str:
        """String with TTL: the bytes of chunk ``index`` of an uploaded file (``logsig
        analyze``), written by the gateway, read by the worker that analyzes it, deleted by the
        gateway when the job ends; the TTL (ANALYZE_TIMEOUT + 60 s) covers a crashed gateway."""
        return f"{self.prefix}:analysis:{job_id}:{index}"

    def analysis_results(self, job_id: str) -> str:
        """Hash with TTL: chunk index -> msgpack answer of the worker that analyzed it (the
        partial statistics, or an error); the first answer per chunk wins (HSETNX). Read and
        deleted by the gateway when the job ends."""
        return f"{self.prefix}:analysis-results:{job_id}"

    def analysis_inbox(self, gateway_id: str) -> str:
        """List with TTL: wake-up notes (msgpack ``[job id, chunk index]``) pushed by workers
        after writing an answer, popped by the gateway process ``gateway_id`` whose clients
        wait for them. Expires when that gateway is gone."""
        return f"{self.prefix}:analysis-inbox:{gateway_id}"
