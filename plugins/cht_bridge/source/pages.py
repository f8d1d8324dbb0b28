"""Page through ``_changes``, one page ahead of the caller.

While the caller hydrates, maps and delivers one page, the next is already being read in a
background thread, so the CHT server and our worker work at the same time instead of taking turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cht_bridge.source.couch import CouchClient


@dataclass(frozen=True)
class Page:
    """One loaded page: what it held, the documents to process, and the seq to resume after it."""

    read: int
    design: int
    info: int
    tombstones: int
    ids: list[str]
    revs: list[str | None]
    last_seq: Any
    refs: list[Any]


def iter_pages(client: CouchClient, since: Any, limit: int, load: Callable[[str], Page]) -> Iterator[Page]:
    """Yield loaded pages until the feed is drained.

    ``load`` turns the page text into a ``Page``; as soon as it has, the next page is requested,
    unless this one was short (pouchdb-server sends no ``pending``, so a short page is the end).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="changes") as pool:
        future = pool.submit(client.changes_text, since, limit)
        while future is not None:
            page = load(future.result())
            future = pool.submit(client.changes_text, page.last_seq, limit) if page.read >= limit else None
            yield page
