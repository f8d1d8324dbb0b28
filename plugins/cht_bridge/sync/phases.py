"""The phases of a sync run: which pages each reads and what it does with every document in them.

A phase owns its policy, so the run's loop is the same for all of them:

- ``pages``: the stream of pages it reads (pending rows, the changes feed, a date window);
- ``decide``: send, ``unchanged`` (the destination has this payload) or ``skip``;
- ``key``: the idempotency key, which is the one last used when a payload is tried again;
- ``checkpoint``: where the changes checkpoint moves with a page (only the changes feed moves it);
- ``closes_unasked``: whether a row asked for but gone from CHT, or no longer relevant, is closed
  (retry and replay must answer every row they were given, or it would be retried for ever).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cht_bridge.errors import ParamError, SourceError
from cht_bridge.mapping import Mapped, idempotency_key
from cht_bridge.source import Page, iter_changes, iter_documents, iter_reports_by_date
from cht_bridge.state import DEAD, DELETE, DELETED, FAILED, KEEP, LedgerState

if TYPE_CHECKING:
    from cht_bridge.sync.run import RunContext

MODES = ("missing", "failed", "all")
SEND, UNCHANGED, SKIP = "send", "unchanged", "skip"


@dataclass(frozen=True)
class Window:
    """A backfill: reports with ``start <= reported_date < end``.

    ``forms`` and ``places`` (place uuids anywhere in the submitter's lineage) narrow it;
    ``mode`` says which of them are sent: ``missing`` (never delivered), ``failed`` (failed or
    dead in the ledger) or ``all`` (every one, even if the destination has it already).
    """

    start: datetime
    end: datetime
    forms: tuple[str, ...] = ()
    places: tuple[str, ...] = ()
    mode: str = "missing"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParamError(f"mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if self.end <= self.start:
            raise ParamError(f"the window is empty: end {self.end.isoformat()} is not after start")

    def filter_json(self, after: list[Any] | None = None) -> str | None:
        """The page filter for the sandbox: forms, places, and the row a view page resumes after."""
        wanted = {"forms": list(self.forms), "places": list(self.places), "after": after}
        wanted = {k: v for k, v in wanted.items() if v}
        return json.dumps(wanted) if wanted else None

    def describe(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "forms": list(self.forms),
            "places": list(self.places),
            "mode": self.mode,
        }


class Phase:
    """One stream of pages and the policy for its documents (the base: send everything, keep the checkpoint)."""

    label = "phase"  # as the batch log lines name it
    closes_unasked = False

    def start(self, ctx: RunContext) -> bool:
        """Called when the phase's turn comes; False when it has nothing to do."""
        return True

    @property
    def deletes(self) -> list[dict]:
        """Ledger rows whose pending delete is sent again before the pages (only a re-send has them)."""
        return []

    def pages(self, ctx: RunContext) -> Iterator[Page]:
        raise NotImplementedError

    def decide(self, state: LedgerState | None, m: Mapped, tried: dict[str, str | None]) -> str:
        return SEND

    def key(self, pipeline: str, m: Mapped) -> str:
        return idempotency_key(pipeline, m.doc_id, m.payload_hash)

    def checkpoint(self, page: Page) -> Any:
        return KEEP


class Changes(Phase):
    """The changes feed from the checkpoint; each page moves the checkpoint past it."""

    label = "changes"

    def __init__(self, since: Any) -> None:
        self.since = since if since is not None else 0

    def pages(self, ctx: RunContext) -> Iterator[Page]:
        ctx.log.info("pipeline %s: reading changes of '%s' since %s", ctx.name, ctx.pipeline.cht_db, self.since or 0)
        position = [self.since]  # where the page being read starts

        def load(text: str) -> Page:
            page = ctx.hydrator.load_changes(text)
            position[0] = page.last_seq
            return page

        return _at_seq(iter_changes(ctx.client, position[0], ctx.pipeline.batch_size, load), position)

    def decide(self, state: LedgerState | None, m: Mapped, tried: dict[str, str | None]) -> str:
        if state is not None and state.operation == DELETE and state.status != DELETED:
            return SEND  # restored in CHT while its delete is pending: it must exist there
        if state is not None and state.delivered_hash == m.payload_hash:
            return UNCHANGED
        if tried.get(m.doc_id, "-") == m.payload_hash:
            return SKIP  # failed earlier in this run with this payload: the next run retries it
        return SEND

    def checkpoint(self, page: Page) -> Any:
        # A changes page without last_seq is refused when loaded; the checkpoint never goes back to null.
        return page.last_seq if page.last_seq is not None else KEEP


class Backfill(Phase):
    """The reports of a date window; the mode says which are sent. ``salt`` renews the keys of mode ``all``."""

    def __init__(self, window: Window, salt: str | None = None) -> None:
        self.window = window
        self.salt = salt if window.mode == "all" else None
        self.label = f"backfill:{window.mode}"

    def pages(self, ctx: RunContext) -> Iterator[Page]:
        window = self.window
        ctx.log.info("pipeline %s: backfill of reports %s", ctx.name, json.dumps(window.describe()))
        load: Callable[[str, Any], Page] = lambda text, after: ctx.hydrator.load_page(text, window.filter_json(after))  # noqa: E731
        return iter_reports_by_date(ctx.client, _ms(window.start), _ms(window.end), ctx.pipeline.batch_size, load)

    def decide(self, state: LedgerState | None, m: Mapped, tried: dict[str, str | None]) -> str:
        if self.window.mode == "missing":
            return SKIP if state is not None and state.delivered_hash else SEND
        if self.window.mode == "failed":
            return SEND if state is not None and state.status in (FAILED, DEAD) else SKIP
        return SEND

    def key(self, pipeline: str, m: Mapped) -> str:
        salt = f":{self.salt}" if self.salt else ""
        return idempotency_key(pipeline, m.doc_id, m.payload_hash + salt)


class Resend(Phase):
    """Ledger rows sent again from CHT's current revision (deletes as deletes): every one is answered.

    A person or an earlier failure asked for each, so each is sent; the key last used for the same
    payload is kept (e.g. a backfill's deliberate re-send keeps its own key through retries).
    """

    closes_unasked = True

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    @property
    def rows(self) -> list[dict]:
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict]) -> None:
        self._rows = rows
        self.last_keys = {r["doc_id"]: (r["payload_hash"], r["idempotency_key"]) for r in rows if r["idempotency_key"]}

    @property
    def deletes(self) -> list[dict]:
        return [r for r in self.rows if r["operation"] == DELETE]

    def pages(self, ctx: RunContext) -> Iterator[Page]:
        ids = [r["doc_id"] for r in self.rows if r["operation"] != DELETE]
        return iter_documents(ctx.client, ids, ctx.pipeline.batch_size, ctx.hydrator.load_page)

    def key(self, pipeline: str, m: Mapped) -> str:
        last = self.last_keys.get(m.doc_id)
        if last is not None and last[0] == m.payload_hash:
            return last[1]
        return super().key(pipeline, m)


class RetryPending(Resend):
    """What earlier runs failed to deliver, before any new change."""

    label = "retry"

    def __init__(self) -> None:
        super().__init__([])  # read when the phase starts: the pending rows as they are then

    def start(self, ctx: RunContext) -> bool:
        rows: list[dict] = []
        while chunk := ctx.store.pending(ctx.name, after=rows[-1]["doc_id"] if rows else None, limit=1000):
            rows.extend(chunk)
        self.rows = rows
        if rows:
            ctx.log.info("pipeline %s: retrying %d documents that earlier runs could not deliver", ctx.name, len(rows))
            ctx.summary.retried += len(rows)
        return bool(rows)


class Replay(Resend):
    """Rows a person chose (failed or dead letters), sent with the current pipeline file."""

    label = "replay"


def _at_seq(pages: Iterator[Page], position: list[Any]) -> Iterator[Page]:
    """The changes pages, with the seq a page was read after named in any ``SourceError`` reading it."""
    try:
        while True:
            try:
                page = next(pages)
            except StopIteration:
                return
            except SourceError as exc:
                raise SourceError(
                    f"{exc} (the _changes page after seq {json.dumps(position[0])})", exc.status
                ) from None
            yield page
    finally:
        pages.close()


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)
