"""Batch analysis jobs: one report over a whole uploaded file, computed in chunks.

Flow: the gateway cuts the upload into chunks on line boundaries (:mod:`.split`) and stores
them in Redis; the Celery task (:mod:`.tasks`) turns each chunk into *partial statistics*
with a profile (:mod:`.logs` or :mod:`.chat`, via :func:`analyze`); the gateway folds the
partials in chunk order with the one associative :func:`merge` and turns the result into a
report (:func:`finalize`), rendered by :mod:`.text` or sent as JSON.

Everything here but :mod:`.tasks` is pure Python with no Celery, Redis or Hyperscan import,
so the gateway and the client can use it, and tests can run it directly.
"""

from workers.analysis.merge import empty, merge, merge_all
from workers.analysis.report import analyze, finalize
from workers.analysis.split import Splitter, split_bytes

__all__ = ["Splitter", "analyze", "empty", "finalize", "merge", "merge_all", "split_bytes"]
