"""Conversation results from RapidPro / TextIt: the completed runs of chosen flows (``GET /api/v2/runs.json``).

A community member answers a self-screening flow; each completed run becomes a list row for the
reverse pipeline (matched to a CHT person by phone, then written as a report), so the health
worker of the person's area gets a task. Pulling runs is more robust than receiving RapidPro's
webhooks (``destinations.md`` §3.5): a webhook that fails is not retried by RapidPro.

Per flow (``flow=<uuid>``, which the API does not combine with ``contact``), the read asks for runs
modified since the flow's watermark (``after``, inclusive, on ``modified_on``), oldest first
(``reverse=true``: RapidPro's ``ModifiedOnCursorPagination`` ordering), and follows the ``next``
cursor URL page by page (``PageGuard``: a repeated cursor, a repeated page or more than
``max_pages`` pages stop the read; the pages before are kept). Oldest first makes progress
monotonic: after each page the checkpoint ``{flow uuid: newest modified_on of the page}`` is
stored with the page's rows, so a crash or a page limit resumes there. ``after`` is moved back by
``overlap_seconds`` because a run saved in a transaction that committed late can carry an older
``modified_on`` than one already read; the inbound ledger keys rows by (run uuid, ``modified_on``),
so what the overlap reads again adds nothing.

Only runs that ended as completed (``exit_type: completed``) are rows: an active run has not
answered everything yet (when it completes its ``modified_on`` moves, and it is read then), and an
interrupted or expired one never will. A record is the run as RapidPro sends it (``values.<key>``
with ``value``/``category``, ``contact.urn``, ``flow``), plus ``phone``: the number of a ``tel:``
URN (None for other URNs and for workspaces that hide URNs), for the mapping's ``person.phone``.
A ``next`` URL on another origin than the Connection's is refused: credentials go only to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests

from cht_bridge.errors import SourceError
from cht_bridge.http.read import READ_RETRY, Reader
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.reverse.model import DEFAULT_MAX_PAGES
from cht_bridge.reverse.sources.base import SourcePage, SourceRecord
from cht_bridge.reverse.sources.paging import PageGuard

log = logging.getLogger(__name__)

DEFAULT_OVERLAP_SECONDS = 60


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class RapidProRunsSource:
    """Pages of completed runs of ``flows``; the checkpoint is ``{flow uuid: watermark}``."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        flows: list[str],
        *,
        timeout: float = 30,
        conn_id: str = "(no connection)",
        retry: RetryPolicy = READ_RETRY,
        max_pages: int = DEFAULT_MAX_PAGES,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/api/v2/runs.json"
        self.flows = list(flows)
        self.conn_id = conn_id
        self.max_pages = max_pages
        self.overlap = timedelta(seconds=overlap_seconds)
        self.reader = Reader(
            session, conn_id=conn_id, system="RapidPro source", timeout=timeout, retry=retry,
            headers={"Accept": "application/json"},
        )  # fmt: skip
        self.skipped = 0  # runs read that are not completed

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]:
        """Each flow's runs since its watermark in ``checkpoint`` (``None``: all of them)."""
        marks = dict(checkpoint) if isinstance(checkpoint, dict) else {}
        guard = PageGuard(f"RapidPro connection '{self.conn_id}'", self.max_pages)
        for flow in self.flows:
            params: dict[str, Any] | None = {"flow": flow, "reverse": "true", "paths": "false"}
            if marks.get(flow):
                params["after"] = _iso(_parse(marks[flow]) - self.overlap)
            url: str | None = self.url
            guard.restart()
            while url is not None:
                guard.before_read()
                body = self.reader.get_json(url, params)
                if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                    raise SourceError(f"RapidPro connection '{self.conn_id}': a runs page without a results list")
                runs = [run for run in body["results"] if isinstance(run, dict)]
                records = self._records(runs)
                guard.after_read(records)
                newest = max((str(run.get("modified_on")) for run in runs if run.get("modified_on")), default=None)
                if newest is not None and (not marks.get(flow) or _parse(newest) > _parse(marks[flow])):
                    marks[flow] = newest
                following, params = body.get("next"), None
                problem: SourceError | None = None
                if following and urlsplit(following)[:2] != urlsplit(self.base_url)[:2]:
                    problem = SourceError(
                        f"RapidPro connection '{self.conn_id}': the next page is on another origin; stopped "
                        "(the pages before it are kept)"
                    )
                elif following:
                    try:
                        guard.follow(following, "next cursor")
                    except SourceError as exc:  # the page is good; the repeated cursor is not
                        problem = exc
                yield SourcePage(records, dict(marks))
                if problem is not None:
                    raise problem
                url = following or None
        if self.skipped:
            log.info("RapidPro source '%s': %d runs read were not completed (not rows)", self.conn_id, self.skipped)

    def _records(self, runs: list[dict[str, Any]]) -> list[SourceRecord]:
        records = []
        for run in runs:
            if run.get("exit_type") != "completed":
                self.skipped += 1
                continue
            if not run.get("uuid") or not run.get("modified_on"):
                raise SourceError(f"RapidPro connection '{self.conn_id}': a run without uuid or modified_on")
            urn = str((run.get("contact") or {}).get("urn") or "")
            scheme, _, path = urn.partition(":")
            phone = path if scheme == "tel" and any(ch.isdigit() for ch in path) and "*" not in path else None
            records.append(SourceRecord(str(run["uuid"]), str(run["modified_on"]), {**run, "phone": phone}))
        log.info("RapidPro source '%s': page with %d completed runs of %d", self.conn_id, len(records), len(runs))
        return records
