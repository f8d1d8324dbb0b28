"""Read a list from a JSON REST endpoint (an EMR's own API, a registry export), page by page.

Three paging styles cover the APIs met so far:

* ``{"type": "cursor", "param": "cursor", "next": "next_cursor"}``: each answer names the cursor
  of the next page (dotted path ``next`` in the body; null or missing at the end). The checkpoint
  is the cursor to resume from: the next page's cursor, or, after the last page, the cursor that
  fetched it, so the next run re-reads that page (the ledger skips what it saw) and then
  whatever was appended after it;
* ``{"type": "offset", "param": "offset", "limit_param": "limit", "page_size": 100}``: the
  checkpoint is the offset after the last item read; a page shorter than ``page_size`` is the
  last one;
* ``{"type": "none"}``: one request returns the whole list; there is nothing to resume from, so
  the checkpoint stays ``None`` and every run reads the whole list (the ledger skips unchanged
  items).

A read stops with a ``SourceError`` on a cursor that repeats one handed out before, a page that
repeats the page before it, or after ``max_pages`` pages (``reverse.sources.paging``); the pages
before the error keep their checkpoints.

``items`` is the dotted path of the item list in an answer (``"data.results"``, or ``""`` when
the answer is the list itself). An item's version is ``version_field`` when given, else a hash
of the item, so any change to an item makes it new for the ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import requests

from cht_bridge.errors import ConfigError, SourceError
from cht_bridge.http.read import READ_RETRY, Reader
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.reverse.model import DEFAULT_MAX_PAGES, checked_paging
from cht_bridge.reverse.sources.base import SourcePage, SourceRecord, content_hash, dotted
from cht_bridge.reverse.sources.paging import PageGuard

log = logging.getLogger(__name__)


class JsonRestSource:
    """Pages of items from a JSON REST list endpoint (``base_url`` + ``path``)."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        path: str,
        items: str,
        id_field: str,
        version_field: str | None = None,
        paging: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float = 30,
        conn_id: str = "(no connection)",
        *,
        retry: RetryPolicy = READ_RETRY,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        self.max_pages = max_pages
        self.url = base_url.rstrip("/") + "/" + path.lstrip("/")
        self.items = items
        self.id_field = id_field
        self.version_field = version_field
        self.paging, problems = checked_paging(paging or {"type": "none"})
        if problems:
            raise ConfigError(
                f"REST source '{conn_id}'", [f"paging.{key}: {m}" if key else f"paging: {m}" for key, m in problems]
            )
        self.params = dict(params or {})
        self.conn_id = conn_id
        self.reader = Reader(
            session,
            conn_id=conn_id,
            system="REST source",
            timeout=timeout,
            retry=retry,
            headers={"Accept": "application/json"},
        )

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]:
        """Read from ``checkpoint`` (a cursor or an offset; ``None``: from the start) to the end."""
        kind = self.paging["type"]
        if kind == "cursor":
            yield from self._cursor_pages(checkpoint)
        elif kind == "offset":
            yield from self._offset_pages(int(checkpoint or 0))
        else:
            yield SourcePage(self._records(self._get(dict(self.params))), None)

    def _cursor_pages(self, cursor: Any | None) -> Iterator[SourcePage]:
        guard = self._guard()
        guard.restart(cursor)
        while True:
            guard.before_read()
            params = dict(self.params)
            if cursor is not None:
                params[self.paging["param"]] = cursor
            body = self._get(params)
            records = self._records(body)
            guard.after_read(records)
            following = dotted(body, self.paging["next"])
            if following in (None, ""):
                yield SourcePage(records, cursor)
                return
            try:
                guard.follow(following, "next cursor")
            except SourceError:  # the page is good; a repeating cursor is no place to resume from
                yield SourcePage(records, cursor)
                raise
            yield SourcePage(records, following)
            cursor = following

    def _offset_pages(self, offset: int) -> Iterator[SourcePage]:
        """Offsets are ours and grow with each full page, so they cannot repeat; a server that ignores
        the offset sends the same page again, which the guard refuses."""
        size = int(self.paging.get("page_size", 100))
        guard = self._guard()
        while True:
            guard.before_read()
            params = dict(self.params)
            params[self.paging["param"]] = offset
            params[self.paging["limit_param"]] = size
            records = self._records(self._get(params))
            guard.after_read(records)
            offset += len(records)
            yield SourcePage(records, offset)
            if len(records) < size:
                return

    def _guard(self) -> PageGuard:
        return PageGuard(f"REST source '{self.conn_id}'", self.max_pages)

    def _get(self, params: dict[str, Any]) -> Any:
        return self.reader.get_json(self.url, params)

    def _records(self, body: Any) -> list[SourceRecord]:
        items = dotted(body, self.items)
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            where = f"'{self.items}'" if self.items else "the top level"
            raise SourceError(f"REST source '{self.conn_id}': no list of objects at {where} of the answer")
        records, without_id = [], 0
        for item in items:
            digest = content_hash(item)
            item_id = dotted(item, self.id_field)
            if item_id in (None, ""):
                # Still usable (matching goes by name, phone…); keyed by content, so a re-read is a duplicate.
                without_id += 1
                item_id = f"sha256:{digest}"
            version = dotted(item, self.version_field) if self.version_field else None
            records.append(SourceRecord(str(item_id), str(version if version not in (None, "") else digest), item))
        if without_id:
            log.warning("REST source '%s': %d item(s) without '%s'", self.conn_id, without_id, self.id_field)
        log.info("REST source '%s': page with %d item(s)", self.conn_id, len(records))
        return records
