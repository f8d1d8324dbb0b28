"""A page's plan: per document, send (and how it is recorded), leave out, or record without sending.

The phase decides; this module applies the decisions to a mapped page and keeps, per document
sent, a ``Plan`` that says how its answer is written to the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cht_bridge.destinations.base import Delivery
from cht_bridge.mapping import Mapped, idempotency_key
from cht_bridge.source import Page
from cht_bridge.state import DELETE, DELETED, UPSERT, LedgerState, Outcome
from cht_bridge.state.store import refusal
from cht_bridge.sync.phases import SEND, UNCHANGED, Phase

if TYPE_CHECKING:
    from cht_bridge.sync.run import RunContext

GONE = "the document was deleted from CHT before it could be delivered"
NOT_RELEVANT = "its current revision is no longer relevant to the pipeline (relevant_to is false)"


class Plan(NamedTuple):
    """How one document sent in a batch is recorded once the destination answers.

    (A named tuple, not a frozen dataclass: one is made per document sent, and costs a third.)
    """

    rev: str | None
    payload_hash: str | None
    reported_at: datetime | None
    operation: str  # UPSERT or DELETE
    key: str


@dataclass
class Batch:
    """A mapped page, ready to deliver and record."""

    phase: Phase
    page: Page
    checkpoint: Any  # KEEP, or the seq to store with the batch
    relevant: int = 0
    mapped: int = 0
    unchanged: int = 0
    skipped: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)  # doc id -> how its answer is recorded
    outcomes: list[Outcome] = field(default_factory=list)  # decided without sending: mapping errors, gone docs

    def send(self, delivery: Delivery, plan: Plan) -> None:
        self.deliveries.append(delivery)
        self.plans[delivery.doc_id] = plan

    def delete(self, ctx: RunContext, doc_id: str, rev: str | None, destination_id: str | None) -> None:
        """The destination's request for a document deleted in CHT."""
        key = idempotency_key(ctx.name, doc_id, f"delete:{rev or ''}")
        self.send(
            ctx.destination.deletion(doc_id, destination_id, key, ctx.pipeline.deletes),
            Plan(rev, None, None, DELETE, key),
        )


def plan_page(ctx: RunContext, phase: Phase, page: Page, mapped: list[Mapped]) -> Batch:
    """Decide per document: send, skip (and why), or record a failure without sending."""
    batch = Batch(phase, page, phase.checkpoint(page))
    info = dict(zip(page.ids, zip(page.revs, page.times or [None] * len(page.ids), strict=True), strict=True))
    relevant = [m for m in mapped if m.relevant or m.error]
    batch.relevant, batch.mapped = len(relevant), sum(1 for m in relevant if m.error is None)
    states = ctx.store.states(ctx.name, [m.doc_id for m in relevant if m.error is None] + [d[0] for d in page.deleted])
    for m in relevant:
        rev, t = info[m.doc_id]
        _plan_one(ctx, batch, m, rev, _time(t), states.get(m.doc_id))
    if phase.closes_unasked:
        # Every row asked for gets an answer, or it would be retried for ever.
        gone = [d[0] for d in page.deleted] + page.missing
        batch.outcomes += [Outcome(doc_id, None, False, error=GONE, closed=True) for doc_id in gone]
        irrelevant = [m.doc_id for m in mapped if not (m.relevant or m.error)]
        batch.outcomes += [Outcome(i, info[i][0], False, error=NOT_RELEVANT, closed=True) for i in irrelevant]
    elif ctx.pipeline.deletes.action == "send":
        for doc_id, rev in page.deleted:
            if _delivered_there(states.get(doc_id)):
                batch.delete(ctx, doc_id, rev, states[doc_id].destination_id)
    return batch


def _plan_one(
    ctx: RunContext, batch: Batch, m: Mapped, rev: str | None, at: datetime | None, state: LedgerState | None
) -> None:
    refused = refusal(m.doc_id, rev, at)  # an id the ledger cannot hold: never sent
    if refused is not None:
        batch.outcomes.append(refused)
    elif m.error is not None:
        # A refused mapping fails the same way for the same revision: dead until it changes.
        # A snippet stopped for time or memory may pass next time (a starved worker): retried.
        batch.outcomes.append(Outcome(m.doc_id, rev, False, error=m.error, retryable=m.retryable, reported_at=at))
    else:
        decision = batch.phase.decide(state, m, ctx.tried)
        if decision == SEND:
            key = batch.phase.key(ctx.name, m)
            batch.send(Delivery(m.doc_id, m.body, key), Plan(rev, m.payload_hash, at, UPSERT, key))
        elif decision == UNCHANGED:
            batch.unchanged += 1
        else:
            batch.skipped += 1


def _delivered_there(state: LedgerState | None) -> bool:
    """Only what arrived (or a delete still pending) has something to delete at the destination."""
    return state is not None and bool(state.delivered_hash or (state.operation == DELETE and state.status != DELETED))


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)
