"""Fewer passes of Python's cycle collector while a run streams pages.

A page keeps a few objects per document alive until it is recorded (mapped results, deliveries,
plans, outcomes: about ten thousand at 2,000 documents), so with CPython's default threshold (700
more objects allocated than freed) the collector ran about 7 times per page and walked every object
the worker holds, its imports included, in each pass that reached the older generations: about 2 µs
per document in ``bench/``, none of which found anything, since what a page makes is freed by
reference counting once it is recorded. While a run is in progress the youngest generation's
threshold is raised to ``THRESHOLD``; a cycle left behind is still collected once that many objects
are outstanding, so memory stays bounded, and the threshold is put back when the last run ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Objects allocated and not yet freed before the youngest generation is collected during a run.
THRESHOLD = 50_000

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's first threshold for the duration (nested and concurrent runs share it)."""
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            if _saved[0] != 0:  # 0: the collector is off; leave it so
                gc.set_threshold(max(THRESHOLD, _saved[0]), *_saved[1:])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)
