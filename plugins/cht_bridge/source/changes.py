"""Page through ``_changes`` and sort each page into documents worth mapping and the rest.

While the caller maps and delivers one page, the next is already being read in a background
thread: the CHT server and our worker then work at the same time instead of taking turns.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cht_bridge.source.couch import ChangesPage, CouchClient


@dataclass
class Selection:
    """The documents of one page that a pipeline should see, and what was skipped and why."""

    docs: list[dict] = field(default_factory=list)
    design: int = 0
    info: int = 0
    tombstones: int = 0


def iter_changes(client: CouchClient, since: Any, limit: int) -> Iterator[ChangesPage]:
    """Yield pages until the feed is drained, reading one page ahead.

    The end is a page shorter than ``limit``: pouchdb-server sends no ``pending`` field.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="changes") as pool:
        future = pool.submit(client.changes, since, limit)
        while True:
            page = future.result()
            last = len(page.results) < limit
            if not last:
                future = pool.submit(client.changes, page.last_seq, limit)
            yield page
            if last:
                return


def select(results: list[dict]) -> Selection:
    """Keep the documents CHT's Sentinel would process: no design docs, infodocs or deletions."""
    out = Selection()
    for row in results:
        doc_id = row.get("id", "")
        if doc_id.startswith("_design/"):
            out.design += 1
        elif doc_id.endswith("-info"):
            out.info += 1
        elif row.get("deleted") or not row.get("doc") or row["doc"].get("_deleted"):
            out.tombstones += 1
        else:
            out.docs.append(row["doc"])
    return out
