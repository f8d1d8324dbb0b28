"""One sync run: extract → hydrate → relevant? → map → already sent? → send → record.

Each page of the changes feed is one batch. Three things overlap: the next page is read while
this one is hydrated and mapped, and a mapped batch is delivered while the next is prepared. A
batch ends with one transaction that writes its ledger rows and moves the checkpoint past it, in
feed order; if the destination cannot be reached or refuses the credentials, the error stops the
run before that transaction, so the checkpoint stays where it was and the next run reads the
batch again.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from cht_bridge.destinations.base import Delivery, Destination
from cht_bridge.mapping import Mapped, Mapper, idempotency_key
from cht_bridge.source import CouchClient, Hydrator, Page, iter_pages
from cht_bridge.state import Outcome, StateStore

log = logging.getLogger("cht_bridge.sync")


@dataclass
class RunSummary:
    """Counts for one run: small enough for XCom, and no document content in it."""

    pipeline: str
    read: int = 0
    skipped_design: int = 0
    skipped_info: int = 0
    tombstones: int = 0
    relevant: int = 0
    mapped: int = 0
    sent: int = 0
    unchanged: int = 0
    failed: int = 0
    batches: int = 0
    start_seq: Any = None
    last_seq: Any = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Batch:
    """A mapped page, ready to deliver and record."""

    page: Page
    relevant: int
    mapped: int
    unchanged: int
    deliveries: list[Delivery]
    hashes: dict[str, str]
    outcomes: list[Outcome]  # mapping failures, recorded with the deliveries' outcomes


def run_pipeline(
    pipeline: Any,
    *,
    client: CouchClient,
    destination: Destination,
    store: StateStore,
    mapper: Mapper | None = None,
    logger: logging.Logger = log,
) -> RunSummary:
    """Sync every change since the pipeline's checkpoint, batch by batch."""
    started = time.monotonic()
    own_mapper = mapper is None
    mapper = mapper or Mapper.for_pipeline(pipeline)
    hydrator = Hydrator(client, sandbox=mapper.sandbox)
    since = store.checkpoint(pipeline.name)
    summary = RunSummary(pipeline=pipeline.name, start_seq=since, last_seq=since)
    logger.info("pipeline %s: reading changes of '%s' since %s", pipeline.name, pipeline.cht_db, since or 0)
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver")
    in_flight: Future | None = None
    try:
        for page in iter_pages(client, since if since is not None else 0, pipeline.batch_size, hydrator.load_changes):
            hydrator.fetch()
            mapped = mapper.map_loaded(page.ids)  # runs while the previous batch is delivered
            mapper.sandbox.trim()
            if in_flight is not None:
                # The previous batch is recorded before this one is checked against the ledger,
                # so a document changed twice within a run is compared with its latest delivery.
                in_flight.result()
            batch = _prepare(pipeline.name, page, mapped, store)
            in_flight = sender.submit(_deliver, pipeline.name, batch, destination, store, summary, logger)
        if in_flight is not None:
            in_flight.result()
    finally:
        sender.shutdown(wait=True)
        if own_mapper:
            mapper.close()
        summary.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "pipeline %s done: read=%d relevant=%d sent=%d unchanged=%d failed=%d skipped(design=%d info=%d "
        "deleted=%d) batches=%d seq=%s in %.1fs (%d lookups)",
        pipeline.name, summary.read, summary.relevant, summary.sent, summary.unchanged, summary.failed,
        summary.skipped_design, summary.skipped_info, summary.tombstones, summary.batches,
        summary.last_seq, summary.seconds, hydrator.requests,
    )  # fmt: skip
    return summary


def _prepare(name: str, page: Page, mapped: list[Mapped], store: StateStore) -> _Batch:
    """Keep what is relevant, and drop payloads identical to the last delivered one (as CHT does)."""
    revs = dict(zip(page.ids, page.revs, strict=True))
    relevant = [m for m in mapped if m.relevant or m.error]
    good = [m for m in relevant if m.error is None]
    sent_before = store.delivered_hashes(name, [m.doc_id for m in good])
    changed = [m for m in good if sent_before.get(m.doc_id) != m.payload_hash]
    return _Batch(
        page=page,
        relevant=len(relevant),
        mapped=len(good),
        unchanged=len(good) - len(changed),
        deliveries=[Delivery(m.doc_id, m.body, idempotency_key(name, m.doc_id, m.payload_hash)) for m in changed],
        hashes={m.doc_id: m.payload_hash for m in changed},
        outcomes=[Outcome(m.doc_id, revs.get(m.doc_id), delivered=False, error=m.error) for m in relevant if m.error],
    )


def _deliver(
    name: str, batch: _Batch, destination: Destination, store: StateStore, summary: RunSummary, logger: logging.Logger
) -> None:
    page = batch.page
    revs = dict(zip(page.ids, page.revs, strict=True))
    outcomes = list(batch.outcomes)
    for result in destination.send(batch.deliveries):
        outcomes.append(
            Outcome(
                result.doc_id,
                revs.get(result.doc_id),
                delivered=result.ok,
                payload_hash=batch.hashes[result.doc_id],
                response_status=result.status,
                destination_id=result.destination_id,
                error=result.error,
            )
        )
    store.record(name, outcomes, checkpoint=page.last_seq)

    failed = [o for o in outcomes if not o.delivered]
    sent = len(outcomes) - len(failed)
    summary.read += page.read
    summary.skipped_design += page.design
    summary.skipped_info += page.info
    summary.tombstones += page.tombstones
    summary.relevant += batch.relevant
    summary.mapped += batch.mapped
    summary.sent += sent
    summary.unchanged += batch.unchanged
    summary.failed += len(failed)
    summary.batches += 1
    summary.last_seq = page.last_seq
    logger.info(
        "pipeline %s batch %d: read=%d relevant=%d mapped=%d sent=%d unchanged=%d failed=%d seq=%s",
        name, summary.batches, page.read, batch.relevant, batch.mapped, sent, batch.unchanged,
        len(failed), page.last_seq,
    )  # fmt: skip
    for outcome in failed:
        logger.warning("pipeline %s: document %s failed: %s", name, outcome.doc_id, outcome.error)
