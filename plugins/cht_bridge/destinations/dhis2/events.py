"""Read the events DHIS2 holds for a program: ``GET /api/tracker/events``, page by page (§1.6).

The parameter names and the answer's shape depend on the server's version (``GET
/api/system/info``): up to 2.40 ``ouMode`` and ``{"instances": [...]}``, from 2.41 ``orgUnitMode``
and ``{"pager": ..., "events": [...]}`` (2.41 refuses a request that gives both names). Every read
has the HTTP layer's deadline and size cap (``http.read.Reader``); the loop has a bound on pages
and refuses a page that repeats the previous one (a server ignoring ``page``), so a hostile or
broken server cannot hold the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cht_bridge.errors import SourceError
from cht_bridge.http.read import Reader

PAGE_SIZE = 500
MAX_PAGES = 20_000  # 10 million events a program: far beyond a CHT deployment's, a bound all the same
FIELDS = "event,orgUnit,occurredAt,status,program"


def server_version(reader: Reader, api_url: str) -> tuple[int, int]:
    """(2, minor) from ``/api/system/info``'s ``version`` ("2.40.3")."""
    info = reader.get_json(f"{api_url}/system/info")
    try:
        major, minor = (int(part) for part in str(info.get("version", "")).split(".")[:2])
    except (AttributeError, ValueError):
        raise SourceError(f"DHIS2 connection '{reader.conn_id}': /api/system/info gave no version") from None
    return major, minor


def read_events(
    reader: Reader,
    api_url: str,
    program: str,
    *,
    occurred_after: str | None = None,
    occurred_before: str | None = None,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
) -> Iterator[dict[str, Any]]:
    """Every event of ``program`` in the user's org units (``ACCESSIBLE``), optionally within occurred dates.

    :raises SourceError: a page repeats the one before, or there are more than ``max_pages``.
    """
    version = server_version(reader, api_url)
    mode = "orgUnitMode" if version >= (2, 41) else "ouMode"
    params: dict[str, Any] = {"program": program, mode: "ACCESSIBLE", "pageSize": page_size, "fields": FIELDS}
    if occurred_after:
        params["occurredAfter"] = occurred_after
    if occurred_before:
        params["occurredBefore"] = occurred_before
    previous: list[str] | None = None
    for page in range(1, max_pages + 1):
        body = reader.get_json(f"{api_url}/tracker/events", {**params, "page": page})
        items = body.get("events", body.get("instances")) if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise SourceError(f"DHIS2 connection '{reader.conn_id}': /api/tracker/events page {page} has no event list")
        uids = [str(e.get("event")) for e in items if isinstance(e, dict)]
        if items and uids == previous:
            raise SourceError(
                f"DHIS2 connection '{reader.conn_id}': /api/tracker/events page {page} repeats page {page - 1}"
            )
        previous = uids
        yield from (e for e in items if isinstance(e, dict))
        if len(items) < page_size:
            return
    raise SourceError(f"DHIS2 connection '{reader.conn_id}': more than {max_pages} pages of events; stopped")
