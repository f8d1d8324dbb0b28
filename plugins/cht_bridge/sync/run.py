"""One sync run: extract → hydrate → relevant? → map → select → send → record.

A run has up to two phases, each a stream of pages processed the same way:

- a scheduled (or plain manual) run first retries the documents earlier runs failed to deliver,
  then reads the changes feed from its checkpoint;
- a backfill reads the reports of a date window (``Window``) instead, and never moves the
  checkpoint; a replay (``replay_documents``) re-sends chosen ledger rows.

Three things overlap: the next page is read while this one is hydrated and mapped, and a mapped
page is delivered while the next is prepared. A page ends with one transaction that writes its
ledger rows and, for the changes feed, moves the checkpoint past it, in feed order. If the
destination refuses the credentials or its circuit breaker opens, the run stops before that
transaction moves the checkpoint, so the next run reads the page again; what was delivered is
recorded, and is not sent twice.

A dry run goes through the same phases and writes what it would send to a file instead.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from cht_bridge.cht import CouchClient
from cht_bridge.destinations.base import Delivery, Destination, Result
from cht_bridge.errors import AuthError, CircuitOpenError, ParamError, SourceError
from cht_bridge.mapping import Mapped, Mapper, idempotency_key
from cht_bridge.source import Hydrator, Page, iter_changes, iter_documents, iter_reports_by_date
from cht_bridge.state import CLOSED, DEAD, DELETE, DELETED, FAILED, KEEP, UPSERT, LedgerState, Outcome, StateStore
from cht_bridge.state.store import refusal
from cht_bridge.sync.dry_run import DryRun

log = logging.getLogger("cht_bridge.sync")

MODES = ("missing", "failed", "all")
GONE = "the document was deleted from CHT before it could be delivered"
NOT_RELEVANT = "its current revision is no longer relevant to the pipeline (relevant_to is false)"


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


@dataclass
class RunSummary:
    """Counts for one run: small enough for XCom, and no document content in it.

    ``unchanged`` were not sent because the destination has that exact payload already;
    ``skipped`` were left out by a backfill's mode; ``retried`` are documents of earlier runs
    tried again, ``request_retries`` requests repeated inside this run; ``failed`` stay pending
    for the next run and ``dead_lettered`` wait for a person; ``closed`` were pending but need no
    more sending (deleted in CHT, or no longer relevant). ``lag_seconds`` is now minus the
    ``reported_date`` of the newest delivered document (CouchDB keeps no change time).
    """

    pipeline: str
    kind: str = "changes"  # changes | backfill | replay
    dry_run: bool = False
    read: int = 0
    skipped_design: int = 0
    skipped_info: int = 0
    tombstones: int = 0
    filtered: int = 0
    relevant: int = 0
    mapped: int = 0
    sent: int = 0
    unchanged: int = 0
    skipped: int = 0
    retried: int = 0
    request_retries: int = 0
    failed: int = 0
    dead_lettered: int = 0
    closed: int = 0
    deleted: int = 0
    batches: int = 0
    start_seq: Any = None
    last_seq: Any = None
    lag_seconds: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Batch:
    """A mapped page, ready to deliver and record."""

    phase: str
    page: Page
    checkpoint: Any  # KEEP, or the seq to store with the batch
    relevant: int = 0
    mapped: int = 0
    unchanged: int = 0
    skipped: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    meta: dict[str, tuple] = field(default_factory=dict)  # doc id -> (rev, hash, reported_at, operation, key)
    outcomes: list[Outcome] = field(default_factory=list)  # decided without sending: mapping errors, gone docs


class _Run:
    """The state of one run, shared by its phases."""

    def __init__(
        self,
        pipeline: Any,
        *,
        client: CouchClient,
        destination: Destination,
        store: StateStore,
        mapper: Mapper,
        summary: RunSummary,
        dry_run: DryRun | None,
        key_salt: str | None,
        logger: logging.Logger,
    ) -> None:
        self.pipeline = pipeline
        self.name = pipeline.name
        self.client = client
        self.destination = destination
        self.store = store
        self.mapper = mapper
        self.hydrator = Hydrator(client, sandbox=mapper.sandbox)
        self.summary = summary
        self.dry_run = dry_run
        self.key_salt = key_salt  # set when documents are re-sent on purpose (backfill mode "all")
        self.log = logger
        self.tried: dict[str, str | None] = {}  # failed in this run: doc id -> payload hash
        self.last_keys: dict[str, tuple[str, str]] = {}  # rows resent: doc id -> (payload hash, key last used)

    # -- phases ------------------------------------------------------------------------------

    def retry_pending(self) -> None:
        """Try again what earlier runs failed to deliver, before any new change."""
        rows: list[dict] = []
        while True:
            chunk = self.store.pending(self.name, after=rows[-1]["doc_id"] if rows else None, limit=1000)
            if not chunk:
                break
            rows.extend(chunk)
        if rows:
            self.log.info(
                "pipeline %s: retrying %d documents that earlier runs could not deliver", self.name, len(rows)
            )
            self.summary.retried += len(rows)
            self.resend(rows, "retry")

    def resend(self, rows: list[dict], phase: str) -> None:
        """Send ledger rows again: deletes as deletes, the rest from CHT's current revision."""
        deletes = [r for r in rows if r["operation"] == DELETE]
        if deletes:
            page = Page(0, 0, 0, 0, [], [], None, [])
            batch = _Batch(phase, page, KEEP)
            for r in deletes:
                self._add_delete(batch, r["doc_id"], r["doc_rev"], r["destination_id"])
            self._deliver(batch)
        ids = [r["doc_id"] for r in rows if r["operation"] != DELETE]
        self.last_keys = {r["doc_id"]: (r["payload_hash"], r["idempotency_key"]) for r in rows if r["idempotency_key"]}
        self.process(iter_documents(self.client, ids, self.pipeline.batch_size, self.hydrator.load_page), phase)

    def changes(self, since: Any) -> None:
        self.log.info("pipeline %s: reading changes of '%s' since %s", self.name, self.pipeline.cht_db, since or 0)
        position = [since if since is not None else 0]  # where the page being read starts

        def load(text: str) -> Page:
            page = self.hydrator.load_changes(text)
            position[0] = page.last_seq
            return page

        pages = iter_changes(self.client, position[0], self.pipeline.batch_size, load)
        self.process(_at_seq(pages, position), "changes")

    def backfill(self, window: Window) -> None:
        self.log.info("pipeline %s: backfill of reports %s", self.name, json.dumps(window.describe()))
        load_filtered = lambda text, after: self.hydrator.load_page(text, window.filter_json(after))  # noqa: E731
        pages = iter_reports_by_date(
            self.client, _ms(window.start), _ms(window.end), self.pipeline.batch_size, load_filtered
        )
        self.process(pages, f"backfill:{window.mode}")

    # -- the pipelined loop --------------------------------------------------------------------

    def process(self, pages: Iterator[Page], phase: str) -> None:
        sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver")
        in_flight: Future | None = None
        try:
            for page in pages:
                self.hydrator.fetch()
                mapped = self.mapper.map_loaded(page.ids)  # runs while the previous batch is delivered
                self.mapper.sandbox.trim()
                if in_flight is not None:
                    # The previous batch is recorded before this one is checked against the ledger,
                    # so a document changed twice within a run is compared with its latest delivery.
                    in_flight.result()
                batch = self._prepare(phase, page, mapped)
                in_flight = sender.submit(self._deliver, batch)
            if in_flight is not None:
                in_flight.result()
        except BaseException as exc:
            # If CHT failed here while the destination refused the credentials or broke the
            # circuit in the sender, the destination's error decides what Airflow does next
            # (no retry after a refused login), so it must not be lost behind this one.
            sender.shutdown(wait=True)
            sent_error = in_flight.exception() if in_flight is not None and not in_flight.cancelled() else None
            if isinstance(sent_error, (AuthError, CircuitOpenError)) and sent_error is not exc:
                raise sent_error from exc
            raise
        finally:
            sender.shutdown(wait=True)

    def _prepare(self, phase: str, page: Page, mapped: list[Mapped]) -> _Batch:
        """Decide per document: send, skip (and why), or record a failure without sending."""
        # A changes page without last_seq is refused when loaded; the checkpoint never goes back to null.
        checkpoint = page.last_seq if phase == "changes" and page.last_seq is not None else KEEP
        batch = _Batch(phase, page, checkpoint)
        info = {
            doc_id: (rev, t)
            for doc_id, rev, t in zip(page.ids, page.revs, page.times or [None] * len(page.ids), strict=True)
        }
        relevant = [m for m in mapped if m.relevant or m.error]
        good = [m for m in relevant if m.error is None]
        batch.relevant, batch.mapped = len(relevant), len(good)
        states = self.store.states(self.name, [m.doc_id for m in good] + [d[0] for d in page.deleted])
        for m in relevant:
            rev, t = info[m.doc_id]
            refused = refusal(m.doc_id, rev, _time(t))  # an id the ledger cannot hold: never sent
            if refused is not None:
                batch.outcomes.append(refused)
                continue
            if m.error is not None:
                # A refused mapping fails the same way for the same revision: dead until it changes.
                # A snippet stopped for time or memory may pass next time (a starved worker): retried.
                batch.outcomes.append(
                    Outcome(m.doc_id, rev, False, error=m.error, retryable=m.retryable, reported_at=_time(t))
                )
                continue
            decision = self._decide(phase, states.get(m.doc_id), m)
            if decision == "send":
                key = self._key(phase, m)
                batch.deliveries.append(Delivery(m.doc_id, m.body, key))
                batch.meta[m.doc_id] = (rev, m.payload_hash, _time(t), UPSERT, key)
            elif decision == "unchanged":
                batch.unchanged += 1
            else:
                batch.skipped += 1
        if phase in ("retry", "replay"):
            # Every row asked for gets an answer, or it would be retried for ever.
            gone = [d[0] for d in page.deleted] + page.missing
            batch.outcomes += [Outcome(doc_id, None, False, error=GONE, closed=True) for doc_id in gone]
            batch.outcomes += [
                Outcome(m.doc_id, info[m.doc_id][0], False, error=NOT_RELEVANT, closed=True)
                for m in mapped
                if not (m.relevant or m.error)
            ]
        elif self.pipeline.deletes.action == "send":
            for doc_id, rev in page.deleted:
                state = states.get(doc_id)
                # only what arrived (or a delete still pending) has something to delete there
                if state is not None and (
                    state.delivered_hash or (state.operation == DELETE and state.status != DELETED)
                ):
                    self._add_delete(batch, doc_id, rev, state.destination_id)
        return batch

    def _key(self, phase: str, m: Mapped) -> str:
        """The idempotency key: the one last used for this very payload when it is tried again."""
        last = self.last_keys.get(m.doc_id) if phase in ("retry", "replay") else None
        if last is not None and last[0] == m.payload_hash:
            return last[1]  # e.g. a backfill's deliberate re-send keeps its own key through retries
        salt = f":{self.key_salt}" if self.key_salt and phase == "backfill:all" else ""
        return idempotency_key(self.name, m.doc_id, m.payload_hash + salt)

    def _decide(self, phase: str, state: LedgerState | None, m: Mapped) -> str:
        delivered = state.delivered_hash if state is not None else None
        if phase == "changes":
            if state is not None and state.operation == DELETE and state.status != DELETED:
                return "send"  # restored in CHT while its delete is pending: it must exist there
            if delivered == m.payload_hash:
                return "unchanged"
            if self.tried.get(m.doc_id, "-") == m.payload_hash:
                return "skip"  # failed earlier in this run with this payload: the next run retries it
            return "send"
        if phase in ("retry", "replay"):
            return "send"  # a person or an earlier failure asked for it; the key makes a repeat harmless
        if phase == "backfill:missing":
            return "skip" if delivered else "send"
        if phase == "backfill:failed":
            return "send" if state is not None and state.status in (FAILED, DEAD) else "skip"
        return "send"  # backfill:all

    def _add_delete(self, batch: _Batch, doc_id: str, rev: str | None, destination_id: str | None) -> None:
        """The pipeline's delete request for a document deleted in CHT."""
        rules = self.pipeline.deletes
        fill = {"doc_id": doc_id, "destination_id": destination_id or doc_id}
        in_path = {name: quote(value, safe="") for name, value in fill.items()}  # an id may hold '/' or '?'
        path = _fill(rules.path or self.pipeline.destination.path.rstrip("/") + "/{doc_id}", in_path)
        body = None if rules.body is None else json.dumps(_fill(rules.body, fill))
        key = idempotency_key(self.name, doc_id, f"delete:{rev or ''}")
        batch.deliveries.append(Delivery(doc_id, body, key, method=rules.method, path=path))
        batch.meta[doc_id] = (rev, None, None, DELETE, key)

    # -- send and record -------------------------------------------------------------------------

    def _deliver(self, batch: _Batch) -> None:
        if self.dry_run is not None:
            self.dry_run.add(batch.deliveries, batch.outcomes)
            self._count(batch, batch.outcomes, {}, sent=0)
            return
        try:
            results = self.destination.send(batch.deliveries)
        except CircuitOpenError as exc:
            # Keep what was delivered; the checkpoint stays, so the rest of the page is read again.
            # Failures are not recorded: an outage must not use up a document's dead_after.
            batch.checkpoint = KEEP
            batch.outcomes = [o for o in batch.outcomes if o.delivered]
            self._record(batch, [r for r in exc.results if r.ok])
            raise
        self._record(batch, results)

    def _record(self, batch: _Batch, results: list[Result]) -> None:
        outcomes = list(batch.outcomes)
        for r in results:
            rev, digest, reported_at, operation, key = batch.meta[r.doc_id]
            if operation == DELETE and not r.ok and r.status in (404, 410):
                r = replace(r, ok=True)  # already gone there, e.g. a retry after a lost answer
            outcomes.append(
                Outcome(
                    r.doc_id,
                    rev,
                    r.ok,
                    digest,
                    r.status,
                    r.destination_id,
                    r.error,
                    r.retryable,
                    operation,
                    reported_at,
                    key,
                )
            )
        counts = self.store.record(self.name, outcomes, batch.checkpoint, dead_after=self.pipeline.delivery.dead_after)
        for o in outcomes:
            if not o.delivered:
                self.tried[o.doc_id] = o.payload_hash
        sent = sum(1 for r in results if r.ok and batch.meta[r.doc_id][3] != DELETE)
        self._count(batch, outcomes, counts, sent)

    def _count(self, batch: _Batch, outcomes: list[Outcome], counts: dict[str, int], sent: int) -> None:
        s, page, dry = self.summary, batch.page, self.dry_run is not None
        s.read += page.read
        s.skipped_design += page.design
        s.skipped_info += page.info
        s.tombstones += page.tombstones
        s.filtered += page.filtered
        s.relevant += batch.relevant
        s.mapped += batch.mapped
        s.unchanged += batch.unchanged
        s.skipped += batch.skipped
        s.batches += 1
        s.sent += sent
        s.deleted += counts.get(DELETED, 0)
        s.failed += counts.get(FAILED, 0)
        s.dead_lettered += counts.get(DEAD, 0)
        s.closed += counts.get(CLOSED, 0)
        if batch.checkpoint is not KEEP and not dry:
            s.last_seq = batch.checkpoint
        failed = [o for o in outcomes if not o.delivered]
        self.log.info(
            "pipeline %s %s batch %d: read=%d relevant=%d mapped=%d %s=%d unchanged=%d skipped=%d failed=%d seq=%s",
            self.name, batch.phase, s.batches, page.read, batch.relevant, batch.mapped,
            "would_send" if dry else "sent", len(batch.deliveries) if dry else sent, batch.unchanged, batch.skipped,
            len(failed), "(kept)" if batch.checkpoint is KEEP or dry else batch.checkpoint,
        )  # fmt: skip
        for o in failed:
            self.log.warning("pipeline %s: document %s failed: %s", self.name, o.doc_id, o.error)


def run_pipeline(
    pipeline: Any,
    *,
    client: CouchClient,
    destination: Destination,
    store: StateStore,
    mapper: Mapper | None = None,
    window: Window | None = None,
    dry_run: DryRun | None = None,
    key_salt: str | None = None,
    logger: logging.Logger = log,
) -> RunSummary:
    """Sync a pipeline: earlier failures, then every change since its checkpoint; or a backfill window.

    ``key_salt`` (the Airflow run id) makes the idempotency keys of a backfill in mode ``all``
    new, so a receiver that remembers keys accepts the deliberate re-send; a retry of the same
    run repeats them.
    """
    since = store.checkpoint(pipeline.name)
    summary = RunSummary(
        pipeline=pipeline.name, kind="backfill" if window else "changes", dry_run=dry_run is not None,
        start_seq=since, last_seq=since,
    )  # fmt: skip

    def phases(run: _Run) -> None:
        if window is not None:
            run.backfill(window)
        else:
            run.retry_pending()
            run.changes(since)

    return _execute(pipeline, phases, summary, client, destination, store, mapper, dry_run, key_salt, logger)


def replay_documents(
    pipeline: Any,
    rows: list[dict],
    *,
    client: CouchClient,
    destination: Destination,
    store: StateStore,
    mapper: Mapper | None = None,
    dry_run: DryRun | None = None,
    logger: logging.Logger = log,
) -> RunSummary:
    """Send ledger rows (failed or dead letters a person chose) again, with the current pipeline file.

    Each gets a fresh count of failed runs, so a replay that fails retryably is retried by the
    next scheduled runs before it is dead again.
    """
    summary = RunSummary(pipeline=pipeline.name, kind="replay", dry_run=dry_run is not None)
    summary.retried = len(rows)
    if dry_run is None:
        store.rearm(pipeline.name, [r["doc_id"] for r in rows])
    return _execute(
        pipeline,
        lambda run: run.resend(rows, "replay"),
        summary,
        client,
        destination,
        store,
        mapper,
        dry_run,
        None,
        logger,
    )


def _execute(
    pipeline: Any,
    phases: Any,
    summary: RunSummary,
    client: CouchClient,
    destination: Destination,
    store: StateStore,
    mapper: Mapper | None,
    dry_run: DryRun | None,
    key_salt: str | None,
    logger: logging.Logger,
) -> RunSummary:
    started = time.monotonic()
    own_mapper = mapper is None
    mapper = mapper or Mapper.for_pipeline(pipeline)
    run = _Run(
        pipeline, client=client, destination=destination, store=store, mapper=mapper, summary=summary,
        dry_run=dry_run, key_salt=key_salt, logger=logger,
    )  # fmt: skip
    outcome = "done"
    try:
        phases(run)
    except Exception:
        outcome = "stopped"
        raise
    finally:
        if own_mapper:
            mapper.close()
        summary.request_retries = getattr(destination, "retries", 0)
        summary.seconds = round(time.monotonic() - started, 3)
        # How fresh the destination is, whatever this run sent (a backfill sends old reports). Not
        # after a failure: the store may be what failed, and its error must not be hidden.
        newest = store.newest_delivered(pipeline.name) if dry_run is None and outcome == "done" else None
        if newest is not None:
            summary.lag_seconds = round(time.time() - newest.timestamp(), 1)
        _log_summary(logger, summary, outcome, run.hydrator.requests)
    return summary


def _log_summary(logger: logging.Logger, s: RunSummary, outcome: str, lookups: int) -> None:
    logger.info(
        "pipeline %s %s%s %s: read=%d relevant=%d sent=%d unchanged=%d skipped=%d retried=%d (request retries=%d) "
        "failed=%d dead_lettered=%d closed=%d deleted=%d; not processed: design=%d info=%d tombstones=%d filtered=%d; "
        "batches=%d seq=%s lag=%s in %.1fs (%d lookups)",
        s.pipeline, s.kind, " (dry run)" if s.dry_run else "", outcome, s.read, s.relevant, s.sent, s.unchanged,
        s.skipped, s.retried, s.request_retries, s.failed, s.dead_lettered, s.closed, s.deleted, s.skipped_design,
        s.skipped_info, s.tombstones, s.filtered, s.batches, s.last_seq,
        "n/a" if s.lag_seconds is None else f"{s.lag_seconds:.0f}s", s.seconds, lookups,
    )  # fmt: skip


def _at_seq(pages: Iterator[Page], position: list[Any]) -> Iterator[Page]:
    """The changes pages, with the seq a page was read after named in any ``SourceError`` reading it."""
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except SourceError as exc:
            raise SourceError(f"{exc} (the _changes page after seq {json.dumps(position[0])})", exc.status) from None
        yield page


def _fill(template: Any, values: dict[str, str]) -> Any:
    """``{doc_id}`` and ``{destination_id}`` replaced in every string of a JSON template."""
    if isinstance(template, str):
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
