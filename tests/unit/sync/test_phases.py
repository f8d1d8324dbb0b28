"""Each phase's policy on a real SQLite ledger: what it sends, which key it uses, whether the
checkpoint moves, and what a re-send closes; and a page planned into typed per-document plans."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cht_bridge.cht import CouchClient
from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import BaseDestination, Delivery, Result
from cht_bridge.mapping import Mapped, idempotency_key
from cht_bridge.source import Page
from cht_bridge.state import DELETE, KEEP, UPSERT, Outcome, StateStore
from cht_bridge.sync import Backfill, Changes, Replay, RetryPending, RunContext, RunSummary, Window
from cht_bridge.sync.phases import SEND, SKIP, UNCHANGED
from cht_bridge.sync.plan import GONE, NOT_RELEVANT, Plan, plan_page

NAME = "visits"
H1, H2 = "a" * 64, "b" * 64
WINDOW = {"start": datetime(2026, 1, 1, tzinfo=UTC), "end": datetime(2026, 2, 1, tzinfo=UTC)}


class ListDestination(BaseDestination):
    """The contract, recording what it is asked to send; deletes as the base builds them."""

    def __init__(self) -> None:
        self.path = "/visits"
        self.batches: list[list[Delivery]] = []

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        self.batches.append(deliveries)
        return [Result(d.doc_id, True, 201, destination_id=f"x-{d.doc_id}") for d in deliveries]


def remember(store: StateStore, *outcomes: Outcome) -> None:
    store.record(NAME, list(outcomes), KEEP)


def mapped(doc_id: str, digest: str = H1, **kw: Any) -> Mapped:
    return Mapped(doc_id, kw.pop("relevant", True), json.dumps({"id": doc_id}), digest, **kw)


def states(store: StateStore, *ids: str) -> dict:
    return store.states(NAME, ids)


def test_changes_sends_what_is_new_or_changed_and_not_what_the_destination_has(store):
    remember(store, Outcome("same", "1-a", True, H1), Outcome("edited", "1-a", True, H1))
    phase, st = Changes(None), states(store, "same", "edited", "new")
    assert phase.decide(st.get("new"), mapped("new"), {}) == SEND
    assert phase.decide(st["same"], mapped("same", H1), {}) == UNCHANGED
    assert phase.decide(st["edited"], mapped("edited", H2), {}) == SEND
    # failed earlier in this very run with this payload: left for the next run, not sent twice
    assert phase.decide(st.get("new"), mapped("new", H2), {"new": H2}) == SKIP
    assert phase.decide(st.get("new"), mapped("new", H2), {"new": H1}) == SEND


def test_changes_sends_a_document_restored_while_its_delete_is_pending(store):
    remember(store, Outcome("back", "1-a", True, H1))
    remember(store, Outcome("back", "2-d", False, None, 503, error="busy", operation=DELETE))
    assert Changes(0).decide(states(store, "back")["back"], mapped("back", H1), {}) == SEND


def test_backfill_modes_choose_missing_failed_or_all(store):
    remember(
        store,
        Outcome("delivered", "1-a", True, H1),
        Outcome("failed", "1-a", False, H1, 503, error="busy", retryable=True),
        Outcome("dead", "1-a", False, H1, 422, error="refused", retryable=False),
    )
    st = states(store, "delivered", "failed", "dead")
    decisions = {
        mode: [
            Backfill(Window(**WINDOW, mode=mode)).decide(st.get(d), mapped(d), {})
            for d in ("delivered", "failed", "dead", "never")
        ]
        for mode in ("missing", "failed", "all")
    }
    assert decisions == {
        "missing": [SKIP, SEND, SEND, SEND],
        "failed": [SKIP, SEND, SEND, SKIP],
        "all": [SEND, SEND, SEND, SEND],
    }


def test_keys_are_per_payload_salted_only_for_a_deliberate_resend_and_kept_through_retries():
    plain = idempotency_key(NAME, "r1", H1)
    assert Changes(0).key(NAME, mapped("r1")) == plain
    assert Backfill(Window(**WINDOW, mode="missing"), salt="run-1").key(NAME, mapped("r1")) == plain
    salted = Backfill(Window(**WINDOW, mode="all"), salt="run-1").key(NAME, mapped("r1"))
    assert salted != plain and salted == Backfill(Window(**WINDOW, mode="all"), salt="run-1").key(NAME, mapped("r1"))
    assert salted != Backfill(Window(**WINDOW, mode="all"), salt="run-2").key(NAME, mapped("r1"))
    row = {"doc_id": "r1", "payload_hash": H1, "idempotency_key": salted, "operation": UPSERT}
    for phase in (Replay([row]), RetryPending()):
        phase.rows = [row]
        assert phase.key(NAME, mapped("r1", H1)) == salted  # the same payload again: the key it was sent with
        assert phase.key(NAME, mapped("r1", H2)) == idempotency_key(NAME, "r1", H2)  # a new payload: a new key
        assert phase.decide(None, mapped("r1"), {"r1": H1}) == SEND  # asked for: always sent


def test_only_the_changes_feed_moves_the_checkpoint():
    page = Page(3, 0, 0, 0, ["a"], ["1-a"], "7-xyz", [])
    assert Changes(0).checkpoint(page) == "7-xyz"
    assert Changes(0).checkpoint(Page(0, 0, 0, 0, [], [], None, [])) is KEEP  # never back to null
    for phase in (Backfill(Window(**WINDOW)), Replay([]), RetryPending()):
        assert phase.checkpoint(page) is KEEP
    assert Changes(None).label == "changes" and Backfill(Window(**WINDOW, mode="failed")).label == "backfill:failed"
    assert (RetryPending().label, Replay([]).label) == ("retry", "replay")


def test_retry_pending_reads_every_pending_row_when_its_turn_comes(store, context):
    remember(store, *[Outcome(f"d{i:04d}", "1-a", False, H1, 503, error="busy") for i in range(1205)])
    remember(store, Outcome("ok", "1-a", True, H1))
    phase = RetryPending()
    assert phase.rows == [] and phase.start(context) is True
    assert len(phase.rows) == 1205 and context.summary.retried == 1205  # past the store's 1000-row pages
    store.record(NAME, [Outcome(f"d{i:04d}", "1-a", True, H1) for i in range(1205)], KEEP)
    assert RetryPending().start(context) is False


@pytest.fixture
def context(store):
    config = {
        "name": NAME, "start_date": "2026-01-01", "cht": {"conn_id": "cht"}, "relevant_to": "true",
        "mapping": {"id": "doc._id"}, "destination": {"conn_id": "emr", "path": "/visits"},
        "deletes": {"action": "send", "body": {"void": "{destination_id}"}},
    }  # fmt: skip
    pipeline = parse_pipeline(config, file="visits.yaml")
    client = CouchClient("http://127.0.0.1:9", "medic", None, conn_id="cht")  # never read here
    ctx = RunContext(pipeline, client, ListDestination(), store, None, RunSummary(NAME))
    yield ctx
    ctx.mapper.close()


def page(ids: list[str], **kw: Any) -> Page:
    return Page(
        len(ids), 0, 0, 0, ids, ["1-a"] * len(ids), kw.pop("last_seq", None), [], [1767225600000] * len(ids), **kw
    )


def test_a_changes_page_is_planned_into_typed_plans_and_deletes_of_what_arrived(context, store):
    remember(store, Outcome("gone-delivered", "1-a", True, H1, 201, "x-9"), Outcome("unchanged", "1-a", True, H1))
    docs = [mapped("new"), mapped("unchanged"), mapped("broken", None, error="boom", retryable=True)]
    docs.append(mapped("other", relevant=False))
    batch = plan_page(
        context, Changes(0), page(["new", "unchanged", "broken", "other"], last_seq="9-z",
                                  deleted=[["gone-delivered", "2-d"], ["gone-never", "2-d"]]), docs,
    )  # fmt: skip
    assert batch.checkpoint == "9-z" and (batch.relevant, batch.mapped, batch.unchanged) == (3, 2, 1)
    assert [d.doc_id for d in batch.deliveries] == ["new", "gone-delivered"]
    key = idempotency_key(NAME, "new", H1)
    assert batch.plans["new"] == Plan("1-a", H1, datetime(2026, 1, 1, tzinfo=UTC), UPSERT, key)
    delete = batch.deliveries[1]
    assert (delete.method, delete.path, json.loads(delete.body)) == (
        "DELETE",
        "/visits/gone-delivered",
        {"void": "x-9"},
    )
    assert batch.plans["gone-delivered"].operation == DELETE and batch.plans["gone-delivered"].payload_hash is None
    (failed,) = batch.outcomes
    assert (failed.doc_id, failed.error, failed.retryable) == ("broken", "boom", True)


def test_a_resend_page_answers_every_row_it_was_asked_for(context):
    docs = [mapped("still"), mapped("irrelevant", relevant=False)]
    batch = plan_page(
        context, Replay([]), page(["still", "irrelevant"], deleted=[["deleted", "3-d"]], missing=["lost"]), docs
    )
    assert batch.checkpoint is KEEP and [d.doc_id for d in batch.deliveries] == ["still"]
    closed = {o.doc_id: o.error for o in batch.outcomes if o.closed}
    assert closed == {"deleted": GONE, "lost": GONE, "irrelevant": NOT_RELEVANT}
