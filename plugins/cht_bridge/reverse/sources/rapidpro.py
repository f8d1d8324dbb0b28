"""Conversation results from RapidPro / TextIt: the completed runs of chosen flows (``GET /api/v2/runs.json``).

A community member answers a self-screening flow; each completed run becomes a list row for the
reverse pipeline (matched to a CHT person by phone, then written as a report), so the health
worker of the person's area gets a task. Pulling runs is more robust than receiving RapidPro's
webhooks (``destinations.md`` §3.5): a webhook that fails is not retried by RapidPro.

Per flow (``flow=<uuid>``, which the API does not combine with ``contact``), the read asks for runs
modified since the flow's watermark (``after``, inclusive, on ``modified_on``), oldest first
(``reverse=true``: RapidPro's ``ModifiedOnCursorPagination`` ordering), and follows the ``next``
cursor URL page by page (``PageGuard`` per flow: a repeated cursor or a repeated page stops that
flow's read; the pages before are kept). The flows take turns, a page each, and ``max_pages``
bounds the pages of one run in all: a backlog on one flow (thousands of runs after a bulk start)
spreads over runs instead of failing the task or keeping the flows after it from being read. Oldest
first makes progress monotonic: after each page the checkpoint ``{flow uuid: newest modified_on
read}`` is stored with the page's rows. A flow whose read stopped before its last page (the page
budget, a crash) is stored as ``{"modified_on": …, "more": true}`` and the next run goes on from
exactly there. After a whole read ``after`` is moved back by ``overlap_seconds``, because a run
saved in a transaction that committed late can carry an older ``modified_on`` than one already
read; the inbound ledger keys rows by (run uuid, ``modified_on``), so what the overlap reads again
adds nothing, and a completed run read again under a newer ``modified_on`` is taken as already
received (``once_per_id``): one run, one report. (A resumed read has no overlap, so an overlap
window holding more runs than a run reads cannot hold the flow in place for ever.)

Only runs that ended as completed (``exit_type: completed``) are rows: an active run has not
answered everything yet (when it completes its ``modified_on`` moves, and it is read then), and an
interrupted or expired one never will. A record is the run as RapidPro sends it (``values.<key>``
with ``value``/``category``, ``contact.urn``, ``flow``), plus ``phone``: the number of a ``tel:``
URN (None for other URNs and for workspaces that hide URNs), for the mapping's ``person.phone``.
A ``next`` URL on another origin than the Connection's (``http.origin.origin``: scheme, host and
port, parsed), or with user-info, is refused: credentials go only to the Connection's origin.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from cht_bridge.errors import SourceError
from cht_bridge.http.origin import has_userinfo, origin
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


def _watermark(mark: Any) -> tuple[str | None, bool]:
    """A flow's stored watermark and whether its read stopped before its last page."""
    if isinstance(mark, dict):
        return (str(mark["modified_on"]) if mark.get("modified_on") else None), bool(mark.get("more"))
    return (str(mark) if mark else None), False


@dataclass
class _FlowRead:
    """Where one flow's read of this run stands: the next request, and its own repeat guard."""

    flow: str
    url: str
    params: dict[str, Any] | None
    guard: PageGuard


class RapidProRunsSource:
    """Pages of completed runs of ``flows``; the checkpoint is ``{flow uuid: watermark}``.

    A flow whose read stopped before its last page (the run's page budget, a crash) has the
    watermark ``{"modified_on": <newest read>, "more": true}``: the next run goes on from exactly
    there, without the overlap, so a backlog always moves forward.
    """

    #: A completed run is final (its answers do not change): if RapidPro touches it later (a new
    #: ``modified_on``), the ledger takes it as already received, so one run makes one report.
    once_per_id = True

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
        if max_pages < len(flows):
            raise ValueError(f"max_pages ({max_pages}) must be at least the number of flows ({len(flows)})")
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
        #: What the read did beyond its pages, for the receive step's counts: runs read that were
        #: not completed, and flows left with more pages for the next run (the page budget).
        self.counts: dict[str, int] = {}

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]:
        """Each flow's runs since its watermark in ``checkpoint`` (``None``: all of them).

        The flows take turns, one page each, until each has read its last page or the run has
        read ``max_pages`` pages in all: a backlog on one flow cannot keep the others from being
        read, and is not an error (its watermark says where the next run goes on). A flow whose
        cursor repeats or leaves the origin stops; the others go on, and the error is raised at
        the end (every page read is kept).
        """
        marks: dict[str, Any] = dict(checkpoint) if isinstance(checkpoint, dict) else {}
        reads = [self._start(flow, marks.get(flow)) for flow in self.flows]
        problems: list[SourceError] = []
        read = 0
        while reads and read < self.max_pages:
            for current in list(reads):
                if read >= self.max_pages:
                    break
                read += 1
                page, problem = self._page(current, marks)
                if problem is not None:
                    problems.append(problem)
                    reads.remove(current)
                elif current.url == "":
                    reads.remove(current)
                yield page
        self.counts = {"runs_not_completed": self.skipped, "flows_with_more": len(reads)}
        if self.skipped:
            log.info("RapidPro source '%s': %d runs read were not completed (not rows)", self.conn_id, self.skipped)
        if reads:
            log.warning(
                "RapidPro source '%s': %d of %d flows have more runs than this run's %d pages "
                "(source.max_pages); each goes on from its checkpoint next run",
                self.conn_id, len(reads), len(self.flows), self.max_pages,
            )  # fmt: skip
        if problems:
            raise problems[0]

    def _start(self, flow: str, mark: Any) -> _FlowRead:
        """The first request of ``flow``'s read: from its watermark, less the overlap after a whole read."""
        params: dict[str, Any] = {"flow": flow, "reverse": "true", "paths": "false"}
        when, more = _watermark(mark)
        if when:
            params["after"] = _iso(_parse(when) if more else _parse(when) - self.overlap)
        guard = PageGuard(f"RapidPro connection '{self.conn_id}'", self.max_pages)
        return _FlowRead(flow, self.url, params, guard)

    def _page(self, current: _FlowRead, marks: dict[str, Any]) -> tuple[SourcePage, SourceError | None]:
        """Read ``current``'s next page; move its watermark; ``current.url`` is "" after its last page."""
        flow = current.flow
        current.guard.before_read()
        body = self.reader.get_json(current.url, current.params)
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise SourceError(f"RapidPro connection '{self.conn_id}': a runs page without a results list")
        runs = [run for run in body["results"] if isinstance(run, dict)]
        records = self._records(runs)
        current.guard.after_read(records)
        following = body.get("next")
        problem: SourceError | None = None
        if following and not isinstance(following, str):
            problem = SourceError(f"RapidPro connection '{self.conn_id}': a runs page whose next is not a URL")
        elif following and (has_userinfo(following) or origin(following) != origin(self.base_url)):
            problem = SourceError(
                f"RapidPro connection '{self.conn_id}': the next page is on another origin; stopped "
                "(the pages before it are kept)"
            )
        elif following:
            try:
                current.guard.follow(following, "next cursor")
            except SourceError as exc:  # the page is good; the repeated cursor is not
                problem = exc
        old, _ = _watermark(marks.get(flow))
        stamps = [str(run["modified_on"]) for run in runs if run.get("modified_on")] + ([old] if old else [])
        try:
            newest = max(stamps, key=_parse, default=None)
        except ValueError:
            raise SourceError(f"RapidPro connection '{self.conn_id}': a run whose modified_on is not a date") from None
        if newest is not None:
            marks[flow] = {"modified_on": newest, "more": True} if following else newest
        current.url, current.params = (following or ""), None
        return SourcePage(records, dict(marks)), problem

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
