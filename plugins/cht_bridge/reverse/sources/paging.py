"""Bounds on a source's paging loop, so a server whose pages never end stops the read with a clear error.

A paging loop trusts the server to end it: a FHIR bundle without a next link, a null cursor, a
short page. A broken or hostile server can keep it going for ever in three ways, each with a rule:

* it hands out a next link or cursor it handed out before (or the one just used): the read
  would go round in a circle, so it stops at the repeat;
* it ignores the paging parameter (a misspelt ``paging.param``, a proxy that drops the query) and
  sends the same full page again: a page holding exactly the records of the page before stops it;
* it hands out a fresh link on every page, each page empty or repeating records under new
  positions: no rule can tell that from a long list, so ``source.max_pages`` bounds a run.

The caller (``reverse.run.receive``) stores each page with its checkpoint before it asks for the
next one, so when the error comes every page before it is kept and the next run resumes from the
last good page. Messages name the connection and page numbers, never a link or cursor: their
query values can be patient identifiers.
"""

from __future__ import annotations

from typing import Any

from cht_bridge.errors import SourceError
from cht_bridge.reverse.sources.base import SourceRecord, content_hash


class PageGuard:
    """Counts the pages of one read and refuses a repeated position, a repeated page, or one page too many.

    :param where: who is read, for messages, e.g. ``FHIR connection 'emr_fhir'``.
    :param max_pages: pages one read may fetch (``source.max_pages``).
    """

    def __init__(self, where: str, max_pages: int) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.where = where
        self.max_pages = max_pages
        self.pages = 0
        self._positions: set[str] = set()
        self._last: list[tuple[str, str]] | None = None

    def restart(self, position: Any = None) -> None:
        """The read starts (again) at ``position``: earlier positions and pages no longer count as repeats.

        The page count goes on, so restarts cannot lift the page limit.
        """
        self._positions = {content_hash(position)} if position is not None else set()
        self._last = None

    def before_read(self) -> None:
        """Call before fetching each page.

        :raises SourceError: when ``max_pages`` pages have been read already.
        """
        if self.pages >= self.max_pages:
            raise SourceError(
                f"{self.where}: stopped after {self.pages} pages in one run (source.max_pages): the pages read are "
                "kept and the next run goes on from the last one; raise source.max_pages if the list is this long"
            )

    def after_read(self, records: list[SourceRecord]) -> None:
        """Call with each page's records, before handing the page on.

        :raises SourceError: when a non-empty page holds exactly the records of the page before it.
        """
        self.pages += 1
        keys = [(record.id, record.version) for record in records]
        if keys and keys == self._last:
            raise SourceError(
                f"{self.where}: page {self.pages} holds exactly the records of page {self.pages - 1}, so the "
                "server seems to ignore the paging parameter; stopped (the pages before it are kept)"
            )
        self._last = keys

    def follow(self, position: Any, what: str) -> None:
        """Call with the position of the next page (a next link, a cursor) before fetching it.

        :raises SourceError: when the position was handed out before in this read.
        """
        key = content_hash(position)
        if key in self._positions:
            raise SourceError(
                f"{self.where}: the {what} after page {self.pages} repeats an earlier one, so the pages would "
                "never end; stopped (the pages before it are kept)"
            )
        self._positions.add(key)
