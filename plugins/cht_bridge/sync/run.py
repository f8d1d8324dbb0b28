"""One sync run: extract → hydrate → relevant? → map → already sent? → send → record.

Each page of the changes feed is one batch. A batch ends with one transaction that writes its
ledger rows and moves the checkpoint past it; if the destination cannot be reached or refuses
the credentials, the error propagates before that transaction, so the checkpoint stays where
it was and the next run reads the batch again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from cht_bridge.destinations.base import Delivery, Destination
from cht_bridge.mapping import Mapper, idempotency_key
from cht_bridge.source import CouchClient, Hydrator, iter_changes, select
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
    hydrator = Hydrator(client)
    since = store.checkpoint(pipeline.name)
    summary = RunSummary(pipeline=pipeline.name, start_seq=since, last_seq=since)
    logger.info("pipeline %s: reading changes of '%s' since %s", pipeline.name, pipeline.cht_db, since or 0)
    try:
        for page in iter_changes(client, since if since is not None else 0, pipeline.batch_size):
            _run_batch(pipeline, page.results, page.last_seq, hydrator, mapper, destination, store, summary, logger)
    finally:
        if own_mapper:
            mapper.close()
        summary.seconds = round(time.monotonic() - started, 3)
    logger.info(
        "pipeline %s done: read=%d relevant=%d sent=%d unchanged=%d failed=%d skipped(design=%d info=%d "
        "deleted=%d) batches=%d seq=%s in %.1fs",
        pipeline.name,
        summary.read,
        summary.relevant,
        summary.sent,
        summary.unchanged,
        summary.failed,
        summary.skipped_design,
        summary.skipped_info,
        summary.tombstones,
        summary.batches,
        summary.last_seq,
        summary.seconds,
    )
    return summary


def _run_batch(
    pipeline: Any,
    rows: list[dict],
    last_seq: Any,
    hydrator: Hydrator,
    mapper: Mapper,
    destination: Destination,
    store: StateStore,
    summary: RunSummary,
    logger: logging.Logger,
) -> None:
    chosen = select(rows)
    hydrator.remember(chosen.docs)
    mapped = mapper.map(hydrator.hydrate(chosen.docs))
    revs = {doc["_id"]: doc.get("_rev") for doc in chosen.docs}

    relevant = [m for m in mapped if m.relevant or m.error]
    good = [m for m in relevant if m.error is None]
    sent_before = store.delivered_hashes(pipeline.name, [m.doc_id for m in good])
    changed = [m for m in good if sent_before.get(m.doc_id) != m.payload_hash]

    outcomes = [Outcome(m.doc_id, revs.get(m.doc_id), delivered=False, error=m.error) for m in relevant if m.error]
    deliveries = [Delivery(m.doc_id, m.body, idempotency_key(pipeline.name, m.doc_id, m.payload_hash)) for m in changed]
    hashes = {m.doc_id: m.payload_hash for m in changed}
    for result in destination.send(deliveries):
        outcomes.append(
            Outcome(
                result.doc_id,
                revs.get(result.doc_id),
                delivered=result.ok,
                payload_hash=hashes[result.doc_id],
                response_status=result.status,
                destination_id=result.destination_id,
                error=result.error,
            )
        )
    store.record(pipeline.name, outcomes, checkpoint=last_seq)

    failed = [o for o in outcomes if not o.delivered]
    batch = {
        "read": len(rows),
        "relevant": len(relevant),
        "mapped": len(good),
        "sent": len(outcomes) - len(failed),
        "unchanged": len(good) - len(changed),
        "failed": len(failed),
    }
    summary.read += batch["read"]
    summary.skipped_design += chosen.design
    summary.skipped_info += chosen.info
    summary.tombstones += chosen.tombstones
    summary.relevant += batch["relevant"]
    summary.mapped += batch["mapped"]
    summary.sent += batch["sent"]
    summary.unchanged += batch["unchanged"]
    summary.failed += batch["failed"]
    summary.batches += 1
    summary.last_seq = last_seq
    logger.info(
        "pipeline %s batch %d: read=%d relevant=%d mapped=%d sent=%d unchanged=%d failed=%d seq=%s",
        pipeline.name,
        summary.batches,
        batch["read"],
        batch["relevant"],
        batch["mapped"],
        batch["sent"],
        batch["unchanged"],
        batch["failed"],
        last_seq,
    )
    for outcome in failed:
        logger.warning("pipeline %s: document %s failed: %s", pipeline.name, outcome.doc_id, outcome.error)
