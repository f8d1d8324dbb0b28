"""The three ways a run reads CHT, page by page, always one page ahead of the caller.

While the caller hydrates, maps and delivers one page, the next is already being read in a
background thread, so the CHT server and our worker work at the same time instead of taking
turns. A page is the server's answer as text; ``load`` (the hydrator's) turns it into a ``Page``.

- ``iter_changes``: the ``_changes`` feed from a checkpoint (what scheduled runs read);
- ``iter_reports_by_date``: reports whose ``reported_date`` is in a window, from CHT's
  ``medic-client/reports_by_date`` view (backfills; cht.md §3.8);
- ``iter_documents``: given document ids, with ``_all_docs`` (retries and replays).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import SourceError

Load = Callable[[str], "Page"]


@dataclass(frozen=True)
class Page:
    """One loaded page: what it held, the documents to process, and where to resume after it.

    ``ids``, ``revs`` and ``times`` (``reported_date`` in ms) describe the documents to process,
    in order; ``deleted`` holds ``[id, rev]`` of tombstones and ``missing`` the ids a lookup did
    not find. ``last_seq`` resumes a changes feed, ``cursor`` (last ``[key, id]``) a view.
    """

    read: int
    design: int
    info: int
    tombstones: int
    ids: list[str]
    revs: list[str | None]
    last_seq: Any
    refs: list[Any]
    times: list[int | None] = field(default_factory=list)
    deleted: list[list[Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    filtered: int = 0
    cursor: list[Any] | None = None
    rows: int = 0  # rows in the server's answer, to tell a full page from the last one


def _prefetched(
    fetch: Callable[[Any], Any], first: Any, load: Callable[[Any], Page], after: Callable[[Page], Any]
) -> Iterator[Page]:
    """Yield loaded pages; as soon as one is loaded, request the next (``after`` is None at the end)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pages") as pool:
        future = pool.submit(fetch, first)
        while future is not None:
            page = load(future.result())
            position = after(page)
            future = pool.submit(fetch, position) if position is not None else None
            yield page


def iter_changes(client: CouchClient, since: Any, limit: int, load: Load) -> Iterator[Page]:
    """The changes after ``since`` until the feed is drained.

    pouchdb-server sends no ``pending``, so a short page is taken as the end. A full page whose
    ``last_seq`` was already read from (the feed did not move, or went back) would be asked for
    again for ever: the read stops there with a ``SourceError``, before that page, so the
    checkpoint stays at the last page that moved.
    """
    read_from = {_seq_key(since)}

    def after(page: Page) -> Any:
        if page.read < limit:
            return None
        key = _seq_key(page.last_seq)
        if key in read_from:
            raise SourceError(
                f"CHT connection '{client.conn_id}': a full page of {page.read} changes ended at a last_seq "
                "already read from, so the feed would never end; stopped (the pages before it are kept)"
            )
        read_from.add(key)
        return page.last_seq

    return _prefetched(lambda seq: client.changes_text(seq, limit), since, load, after)


def _seq_key(seq: Any) -> str:
    """A seq as a comparable text (CouchDB's are opaque strings, pouchdb's numbers)."""
    return json.dumps(seq, sort_keys=True)


def iter_reports_by_date(
    client: CouchClient, start_ms: int, end_ms: int, limit: int, load: Callable[[str, Any], Page]
) -> Iterator[Page]:
    """Reports with ``start_ms <= reported_date < end_ms``, in date order.

    A page starts at the previous page's last row (its key and doc id), which ``load`` is given
    to drop: ``skip=1`` would skip a different row if that one was deleted or edited meanwhile,
    and ``skip`` alone would make CouchDB walk the index from the start on every page.
    """
    base = {"endkey": json.dumps([end_ms]), "inclusive_end": "false", "include_docs": "true", "limit": limit}

    def fetch(cursor: list[Any] | None) -> tuple[str, list[Any] | None]:
        if cursor is None:
            params = {**base, "startkey": json.dumps([start_ms])}
        else:
            params = {**base, "startkey": json.dumps(cursor[0]), "startkey_docid": cursor[1]}
        return client.view_text("medic-client", "reports_by_date", params), cursor

    return _prefetched(fetch, None, lambda answer: load(*answer), lambda p: p.cursor if p.rows >= limit else None)


def iter_documents(client: CouchClient, ids: list[str], limit: int, load: Load) -> Iterator[Page]:
    """The current revisions of ``ids``, ``limit`` per ``_all_docs`` request."""
    if not ids:
        return iter(())
    starts = iter(range(limit, len(ids), limit))
    return _prefetched(lambda s: client.all_docs_text(ids[s : s + limit]), 0, load, lambda _page: next(starts, None))
