"""A run's counts, and the log lines that report them (tests and operators grep these lines)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cht_bridge.state import CLOSED, DEAD, DELETED, FAILED, KEEP, Outcome
from cht_bridge.state.store import WAITING

if TYPE_CHECKING:
    from cht_bridge.sync.plan import Batch


@dataclass
class RunSummary:
    """Counts for one run: small enough for XCom, and no document content in it.

    ``unchanged`` were not sent because the destination has that exact payload already;
    ``skipped`` were left out by a backfill's mode; ``retried`` are documents of earlier runs
    tried again, ``request_retries`` requests repeated inside this run; ``failed`` stay pending
    for the next run and ``dead_lettered`` wait for a person; ``closed`` were pending but need no
    more sending (deleted in CHT, or no longer relevant). ``lag_seconds`` is now minus the
    ``reported_date`` of the newest delivered document (CouchDB keeps no change time).
    ``waiting`` were not sent because the destination's request budget was spent (not failures:
    the next run sends them first); ``budget_left`` is that budget's requests per endpoint group
    the next run may send (a destination with no budget: ``None``).
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
    waiting: int = 0
    budget_left: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, batch: Batch, counts: dict[str, int], sent: int, dry: bool) -> None:
        """Count a recorded batch (``counts`` are the ledger's statuses written for it)."""
        page = batch.page
        self.read += page.read
        self.skipped_design += page.design
        self.skipped_info += page.info
        self.tombstones += page.tombstones
        self.filtered += page.filtered
        self.relevant += batch.relevant
        self.mapped += batch.mapped
        self.unchanged += batch.unchanged
        self.skipped += batch.skipped
        self.batches += 1
        self.sent += sent
        self.deleted += counts.get(DELETED, 0)
        self.failed += counts.get(FAILED, 0)
        self.dead_lettered += counts.get(DEAD, 0)
        self.closed += counts.get(CLOSED, 0)
        self.waiting += counts.get(WAITING, 0)
        if batch.checkpoint is not KEEP and not dry:
            self.last_seq = batch.checkpoint


def log_batch(logger: logging.Logger, s: RunSummary, batch: Batch, outcomes: list[Outcome], sent: int) -> None:
    page, dry = batch.page, s.dry_run
    failed = [o for o in outcomes if not o.delivered]
    logger.info(
        "pipeline %s %s batch %d: read=%d relevant=%d mapped=%d %s=%d unchanged=%d skipped=%d failed=%d seq=%s",
        s.pipeline, batch.phase.label, s.batches, page.read, batch.relevant, batch.mapped,
        "would_send" if dry else "sent", len(batch.deliveries) if dry else sent, batch.unchanged, batch.skipped,
        len(failed), "(kept)" if batch.checkpoint is KEEP or dry else batch.checkpoint,
    )  # fmt: skip
    for o in failed:
        logger.warning("pipeline %s: document %s failed: %s", s.pipeline, o.doc_id, o.error)


def log_summary(logger: logging.Logger, s: RunSummary, outcome: str, lookups: int) -> None:
    logger.info(
        "pipeline %s %s%s %s: read=%d relevant=%d sent=%d unchanged=%d skipped=%d retried=%d (request retries=%d) "
        "failed=%d dead_lettered=%d closed=%d deleted=%d; not processed: design=%d info=%d tombstones=%d filtered=%d; "
        "batches=%d seq=%s lag=%s in %.1fs (%d lookups)",
        s.pipeline, s.kind, " (dry run)" if s.dry_run else "", outcome, s.read, s.relevant, s.sent, s.unchanged,
        s.skipped, s.retried, s.request_retries, s.failed, s.dead_lettered, s.closed, s.deleted, s.skipped_design,
        s.skipped_info, s.tombstones, s.filtered, s.batches, s.last_seq,
        "n/a" if s.lag_seconds is None else f"{s.lag_seconds:.0f}s", s.seconds, lookups,
    )  # fmt: skip
    if s.waiting or s.budget_left is not None:
        logger.info(
            "pipeline %s: %d documents wait for the destination's request budget (not failures; the next run "
            "sends them first); budget left for the next run: %s",
            s.pipeline, s.waiting, s.budget_left,
        )  # fmt: skip
