"""Agents: follow files, stdin or a generator and ship the lines to the gateway in batches.

``agents.runner.run`` is the ``logsig agent`` entry point; ``generate_lines`` gives the
demo and benchmarks the same realistic traffic the ``--generate`` source sends.
"""

from agents.batcher import Batcher
from agents.block import Block
from agents.generator import GeneratorSource, generate_lines, iter_lines
from agents.registry import Registry
from agents.runner import run

__all__ = ["Batcher", "Block", "GeneratorSource", "Registry", "generate_lines", "iter_lines",
           "run"]
