"""How often Python's cycle collector runs while a sync run moves documents.

A run allocates a few container objects per document in every thread (the mapped result, its
delivery and plan, the destination's answer, the ledger outcome), and most of them live for a
page (two pages in flight: one mapped while the other is delivered). With CPython's default
threshold a young-generation collection starts every 700 net allocations, so a page of 2,000
documents starts dozens of collections, each of which moves the page's live objects one
generation older, and every tenth an older-generation pass over everything the page holds; every
so often a full collection walks the whole heap (Airflow's, SQLAlchemy's and the V8 bridge's
modules as well). Measured on the benchmark (50k documents, 2 cores): ~0.1 s of the worker's
~2.4 s of CPU was the collector, ~2 µs per document; with a young-generation threshold of 10,000
it was ~0.02 s, the worker's peak RSS unchanged.

Nothing in a run relies on the collector (reference counting frees what has no cycle at once);
a larger threshold only lets cyclic garbage wait for up to 10,000 allocations instead of 700.
The threshold is raised for the run and put back after it, so the task's process is left as it
was; a caller that already collects less often, or has the collector off, is left alone.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Net allocations between young-generation collections during a run (CPython's default: 700).
RUN_THRESHOLD = 10_000


@contextmanager
def collecting_less_often(threshold: int = RUN_THRESHOLD) -> Iterator[None]:
    """Raise the young-generation threshold to ``threshold`` for the block, and restore it after.

    The older generations keep their thresholds (each still every 10 collections of the one below).
    Nested or overlapping blocks (two runs in one process) leave the outermost to restore it.
    """
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] >= threshold:
        yield
        return
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == threshold:  # unless something else set its own since
            gc.set_threshold(*before)
