"""One sync run: extract → hydrate → relevant? → map → select → send → record.

A run is a list of phases (``phases.py``), each a stream of pages processed the same way:

- a scheduled (or plain manual) run first retries the documents earlier runs failed to deliver,
  then reads the changes feed from its checkpoint;
- a backfill reads the reports of a date window (``Window``) instead, and never moves the
  checkpoint; a replay (``replay_documents``) re-sends chosen ledger rows.

Several things overlap: the next pages are read while this one is hydrated, mapped and planned,
the pages planned before it are sent meanwhile, and, for a destination that does not read the
ledger while it sends, a page is recorded while the next is sent (``_process``). A page ends with one
transaction that writes its ledger rows and, for the changes feed, moves the checkpoint past it,
in feed order. If the destination refuses the credentials or its circuit breaker opens, the run
stops before that transaction moves the checkpoint (and sends no page planned after it), so the
next run reads the page again; what was delivered is recorded, and is not sent twice.

The destination is reached only through its contract (``destinations/base.py``): its pre-flight
``check`` once, before any phase (a dry run checks too, so it shows a run bound to fail), then
``send`` and ``deletion``; so any kind fits here.

A dry run goes through the same phases and writes what it would send to a file instead.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from cht_bridge.cht import CouchClient
from cht_bridge.destinations.base import Destination, Result
from cht_bridge.errors import AuthError, CircuitOpenError
from cht_bridge.mapping import Mapper
from cht_bridge.source import Hydrator, Page
from cht_bridge.state import DELETE, KEEP, Outcome, StateStore
from cht_bridge.sync.collector import collecting_less_often
from cht_bridge.sync.dry_run import DryRun
from cht_bridge.sync.phases import MODES, Backfill, Changes, Phase, Replay, RetryPending, Window
from cht_bridge.sync.plan import GONE, NOT_RELEVANT, Batch, plan_page
from cht_bridge.sync.summary import RunSummary, log_batch, log_summary

__all__ = ["GONE", "MODES", "NOT_RELEVANT", "RunContext", "RunSummary", "Window", "replay_documents", "run_pipeline"]

log = logging.getLogger("cht_bridge.sync")


@dataclass
class RunContext:
    """What every phase of one run shares: the resources, the counts, and what failed so far."""

    pipeline: Any
    client: CouchClient
    destination: Destination
    store: StateStore
    mapper: Mapper | None  # None: the run compiles the pipeline's mapping, and closes it at the end
    summary: RunSummary
    dry_run: DryRun | None = None
    log: logging.Logger = log
    hydrator: Hydrator = field(init=False)
    own_mapper: bool = field(init=False)
    tried: dict[str, str | None] = field(default_factory=dict)  # failed in this run: doc id -> payload hash

    def __post_init__(self) -> None:
        self.own_mapper = self.mapper is None
        self.mapper = self.mapper or Mapper.for_pipeline(self.pipeline)
        self.hydrator = Hydrator(self.client, sandbox=self.mapper.sandbox)

    @property
    def name(self) -> str:
        return self.pipeline.name


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
    kind = "backfill" if window else "changes"
    summary = RunSummary(pipeline.name, kind, dry_run is not None, start_seq=since, last_seq=since)
    phases = [Backfill(window, key_salt)] if window else [RetryPending(), Changes(since)]
    return _execute(RunContext(pipeline, client, destination, store, mapper, summary, dry_run, logger), phases)


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
    summary = RunSummary(pipeline=pipeline.name, kind="replay", dry_run=dry_run is not None, retried=len(rows))
    if dry_run is None:
        store.rearm(pipeline.name, [r["doc_id"] for r in rows])
    return _execute(RunContext(pipeline, client, destination, store, mapper, summary, dry_run, logger), [Replay(rows)])


def _execute(ctx: RunContext, phases: list[Phase]) -> RunSummary:
    """Run the phases in order, after the destination's pre-flight check."""
    started, outcome = time.monotonic(), "done"
    try:
        attach = getattr(ctx.destination, "attach", None)  # a kind with state of its own (RapidPro's budget)
        if attach is not None:
            attach(ctx.store, ctx.name)
        ctx.destination.check()  # the pre-flight, once per run: a run bound to fail sends nothing
        with collecting_less_often():  # a few objects per document, in every thread (collector.py)
            for phase in phases:
                _run_phase(ctx, phase)
    except Exception:
        outcome = "stopped"
        raise
    finally:
        if ctx.own_mapper:
            ctx.mapper.close()
        s = ctx.summary
        s.request_retries = ctx.destination.retries
        s.budget_left = getattr(ctx.destination, "budget_left", None)
        s.seconds = round(time.monotonic() - started, 3)
        # How fresh the destination is, whatever this run sent (a backfill sends old reports). Not
        # after a failure: the store may be what failed, and its error must not be hidden.
        newest = ctx.store.newest_delivered(ctx.name) if ctx.dry_run is None and outcome == "done" else None
        if newest is not None:
            s.lag_seconds = round(time.time() - newest.timestamp(), 1)
        log_summary(ctx.log, s, outcome, ctx.hydrator.requests)
    return ctx.summary


def _run_phase(ctx: RunContext, phase: Phase) -> None:
    if not phase.start(ctx):
        return
    if phase.deletes:
        batch = Batch(phase, Page(0, 0, 0, 0, [], [], None, []), KEEP)
        for r in phase.deletes:
            batch.delete(ctx, r["doc_id"], r["doc_rev"], r["destination_id"])
        _deliver(ctx, batch)
    _process(ctx, phase, phase.pages(ctx))


#: Planned pages not yet recorded, for a destination whose ``send`` reads the ledger: one is sent
#: and recorded while the next waits, so the sender goes from one page to the next without waiting
#: for the main thread; each costs a page's payloads in memory.
QUEUED = 2
#: The same for a destination that does not read the ledger while it sends: one page recorded, the
#: next sent meanwhile, a third waiting (one more planned page in memory).
QUEUED_OVERLAPPED = 3


@dataclass
class _InFlight:
    """A planned page handed to the send and record threads."""

    ids: set[str]  # every document whose ledger row it may read or write (``_documents``)
    sent: Future  # the destination's results; None when not sent because a page before it failed
    recorded: Future  # True once its transaction is committed; raises its send's or its record's error


def _process(ctx: RunContext, phase: Phase, pages: Iterator[Page]) -> None:
    """The pipelined loop: a page is read, mapped and planned while the pages before it are sent and recorded.

    A page is planned against the ledger before the previous one is recorded only when none of its
    documents is in a page not yet recorded (recording writes the rows of its own documents and
    nothing else), so a document changed twice within a run is still compared with its latest
    delivery. One thread sends the pages in order, another records them in order. For a destination
    that reads the ledger while it sends (``reads_ledger_while_sending``, the default) a page is sent
    only once the page before it is recorded, as one thread did before; for one that does not, a page
    is sent while the page before it is recorded, but not before the one before that is recorded, so
    a ledger that fails stops the run with at most the page being sent meanwhile unrecorded (read and
    sent again, with the same keys, by the next run). No page is sent after one that failed.
    """
    overlap = ctx.dry_run is None and not getattr(ctx.destination, "reads_ledger_while_sending", True)
    depth, lag = (QUEUED_OVERLAPPED, 2) if overlap else (QUEUED, 1)
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver")
    recorder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record")
    queued: deque[_InFlight] = deque()  # oldest first
    try:
        for page in pages:
            mapped = ctx.mapper.map_batch(ctx.hydrator.hydrated(page))  # while earlier pages are delivered
            ctx.mapper.sandbox.trim()
            ids = _documents(page)
            while queued and (len(queued) >= depth or any(not ids.isdisjoint(q.ids) for q in queued)):
                queued.popleft().recorded.result()
            batch = plan_page(ctx, phase, page, mapped)
            previous = queued[-1] if queued else None
            gate = queued[-lag].recorded if len(queued) >= lag else None  # recorded before this one is sent
            sent = sender.submit(_send_after, previous.sent if previous else None, gate, ctx, batch)
            recorded = recorder.submit(_record_after, previous.recorded if previous else None, sent, ctx, batch)
            queued.append(_InFlight(ids, sent, recorded))
        while queued:
            queued.popleft().recorded.result()
    except BaseException as exc:
        # If CHT failed here while the destination refused the credentials or broke the
        # circuit in the sender, the destination's error decides what Airflow does next
        # (no retry after a refused login), so it must not be lost behind this one.
        sender.shutdown(wait=True)
        recorder.shutdown(wait=True)
        # A page's send may have been refused while the page before it failed to be recorded: its
        # record then never reads that answer, so the sends are looked at too.
        for q in queued:
            for stage in (q.recorded, q.sent):
                sent_error = None if stage.cancelled() else stage.exception()
                if isinstance(sent_error, (AuthError, CircuitOpenError)) and sent_error is not exc:
                    raise sent_error from exc
        raise
    finally:
        sender.shutdown(wait=True)
        recorder.shutdown(wait=True)
        close = getattr(pages, "close", None)
        if close is not None:
            close()


def _documents(page: Page) -> set[str]:
    """Every document whose ledger row a page may read or write."""
    return {*page.ids, *page.missing, *(d[0] for d in page.deleted)}


def _went_through(stage: Future | None) -> bool:
    """Did this earlier stage (a page's send or record) finish, neither failed nor skipped? Waits for it.

    A skipped stage returns None (a send) or False (a record).
    """
    if stage is None:
        return True
    if stage.cancelled() or stage.exception() is not None:
        return False
    return stage.result() is not None and stage.result() is not False


def _send_after(previous: Future | None, gate: Future | None, ctx: RunContext, batch: Batch) -> list[Result] | None:
    """Send ``batch`` unless an earlier page failed (its error stops the run; this page is read again).

    ``previous`` is the previous page's send; ``gate`` the record this send waits for. None: not sent.
    """
    if not (_went_through(previous) and _went_through(gate)):
        return None
    return _send(ctx, batch)


def _record_after(previous: Future | None, sent: Future, ctx: RunContext, batch: Batch) -> bool:
    """Record what ``batch``'s send answered, unless the page before it was not recorded."""
    if not _went_through(previous):
        return False
    return _record_answer(ctx, batch, sent.result)


def _send(ctx: RunContext, batch: Batch) -> list[Result]:
    return [] if ctx.dry_run is not None else ctx.destination.send(batch.deliveries)


def _deliver(ctx: RunContext, batch: Batch) -> None:
    """Send a batch and record the answers, in this thread."""
    _record_answer(ctx, batch, lambda: _send(ctx, batch))


def _record_answer(ctx: RunContext, batch: Batch, answer: Callable[[], list[Result] | None]) -> bool:
    """Record the destination's results for ``batch`` (``answer`` gives them or raises its error).

    False when the batch was not sent (a page before it failed): nothing is recorded.
    """
    try:
        results = answer()
    except CircuitOpenError as exc:
        # Keep what was delivered; the checkpoint stays, so the rest of the page is read again.
        # Failures are not recorded: an outage must not use up a document's dead_after.
        batch.checkpoint = KEEP
        batch.outcomes = [o for o in batch.outcomes if o.delivered]
        _record(ctx, batch, [r for r in exc.results if r.ok])
        raise
    if results is None:
        return False
    _record(ctx, batch, results)
    return True


def _record(ctx: RunContext, batch: Batch, results: list[Result]) -> None:
    if ctx.dry_run is not None:
        ctx.dry_run.add(batch.deliveries, batch.outcomes)
        ctx.summary.add(batch, {}, 0, dry=True)
        log_batch(ctx.log, ctx.summary, batch, batch.outcomes, 0)
        return
    outcomes = batch.outcomes + [_outcome(batch, r) for r in results]
    counts = ctx.store.record(ctx.name, outcomes, batch.checkpoint, dead_after=ctx.pipeline.delivery.dead_after)
    for o in outcomes:
        if not o.delivered:
            ctx.tried[o.doc_id] = o.payload_hash
    sent = sum(1 for r in results if r.ok and batch.plans[r.doc_id].operation != DELETE)
    ctx.summary.add(batch, counts, sent, dry=False)
    log_batch(ctx.log, ctx.summary, batch, outcomes, sent)


def _outcome(batch: Batch, r: Result) -> Outcome:
    """A destination's answer for one document, as the ledger records it."""
    plan = batch.plans[r.doc_id]
    if plan.operation == DELETE and not r.ok and r.status in (404, 410):
        r = replace(r, ok=True)  # already gone there, e.g. a retry after a lost answer
    return Outcome(
        r.doc_id, plan.rev, r.ok, plan.payload_hash, r.status, r.destination_id, r.error, r.retryable,
        plan.operation, plan.reported_at, plan.key, deferred=r.deferred,
    )  # fmt: skip
