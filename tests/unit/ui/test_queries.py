"""The page's queries on a real SQLite state store: counts, the last 24 hours, lag, breaker, the
failures list and its reason filter, the reverse rows waiting; and the HTML escapes what it shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from cht_bridge.state import Outcome, StateStore
from cht_bridge.state.inbound import InboundLedger, InboundRow
from cht_bridge.state.store import deliveries
from cht_bridge.ui import pages, queries

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)


def ok(doc_id: str, reported: datetime) -> Outcome:
    return Outcome(doc_id, "1-a", True, payload_hash="h", response_status=201, reported_at=reported)


def refused(doc_id: str, reason: str, retryable: bool = False) -> Outcome:
    return Outcome(doc_id, "1-a", False, payload_hash="h", response_status=422, error=reason, retryable=retryable)


def age(store: StateStore, pipeline: str, doc_id: str, days: int) -> None:
    when = datetime.now(UTC) - timedelta(days=days)  # SQLite keeps naive UTC, PostgreSQL an aware time
    with store.engine.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.pipeline == pipeline, deliveries.c.doc_id == doc_id)
            .values(last_attempt_at=when if conn.dialect.name != "sqlite" else when.replace(tzinfo=None))
        )


def test_forward_overview_counts_recent_failures_lag_and_breaker(store):
    store.record("a", [ok("d1", NOW - timedelta(hours=2)), ok("d2", NOW - timedelta(hours=1))])
    store.record("a", [refused("x1", "HTTP 422: rejected: lmp"), refused("x2", "HTTP 503: busy", retryable=True)])
    store.record("a", [refused("old", "HTTP 422: rejected: edd")])
    age(store, "a", "old", days=3)
    store.record("b", [ok("d1", NOW)])
    store.set_breaker("b", True, "destination connection 'emr' failed 10 times in a row")

    out = queries.forward_overview(store, ["a", "b", "c"], now=datetime.now(UTC))
    assert out["a"]["counts"] == {"delivered": 2, "dead": 2, "failed": 1}
    assert out["a"]["recent"] == {"dead": 1, "failed": 1}  # the 3-day-old dead letter is not recent
    assert out["a"]["lag_seconds"] == pytest.approx((datetime.now(UTC) - NOW).total_seconds() + 3600, abs=5)
    assert "breaker" not in out["a"]
    assert out["b"]["breaker"]["open"] and "10 times" in out["b"]["breaker"]["reason"]
    assert out["c"] == {"counts": {}, "recent": {"failed": 0, "dead": 0}, "lag_seconds": None}


def test_failures_are_newest_first_with_their_reasons_and_filter_by_words_of_the_reason(store):
    store.record("a", [refused("x1", "HTTP 422: rejected: lmp_date 100%"), refused("x2", "HTTP 422: rejected: edd")])
    store.record("a", [refused("x3", "HTTP 503: busy", retryable=True), ok("d1", NOW)])
    age(store, "a", "x1", days=1)

    found = queries.failures(store, "a")
    assert found["total"] == 3 and [r["doc_id"] for r in found["rows"]][-1] == "x1"
    assert {r["reason"]: r["count"] for r in found["reasons"]} == {
        "HTTP 422: rejected: lmp_date 100%": 1, "HTTP 422: rejected: edd": 1, "HTTP 503: busy": 1,
    }  # fmt: skip
    assert set(found["rows"][0]) == {"doc_id", "status", "attempts", "failed_runs", "response_status", "reason", "when"}
    assert [r["doc_id"] for r in queries.failures(store, "a", reason="REJECTED")["rows"]] == ["x2", "x1"]
    assert [r["doc_id"] for r in queries.failures(store, "a", reason="100%")["rows"]] == ["x1"]  # % is literal
    assert queries.failures(store, "a", reason="1_0")["total"] == 0  # so is _
    assert [r["doc_id"] for r in queries.failures(store, "a", statuses=("failed",))["rows"]] == ["x3"]


def test_waiting_rows_give_ids_and_reasons_never_the_record(store):
    ledger = InboundLedger(store)
    rows = [
        InboundRow("r", "s1", "v1", "review", record={"name": "Amina"}),
        InboundRow("r", "s2", "v1", "unplaced", record={"name": "Juma"}, reason="no place for area 'X9'"),
        InboundRow("r", "s3", "v1", "failed", record={"name": "Neema"}, reason="HTTP 400: invalid form"),
        InboundRow("r", "s4", "v1", "done"),
    ]
    ledger.receive("r", rows, checkpoint=None, run_id="run1")
    found = queries.waiting_rows(store, "r")
    assert found["totals"] == {"review": 1, "unplaced": 1, "failed": 1}
    assert found["unplaced"][0]["reason"] == "no place for area 'X9'"
    assert "Amina" not in repr(found) and "Juma" not in repr(found)
    overview = queries.reverse_overview(store, ["r"], now=datetime.now(UTC))["r"]
    assert overview["counts"] == {"review": 1, "unplaced": 1, "failed": 1, "done": 1}
    assert overview["recent"] == {"failed": 1} and overview["lag_seconds"] < 60


def test_a_store_without_the_reverse_ledger_has_no_rows_waiting(store):
    assert queries.waiting_rows(store, "r")["totals"] == {}
    assert queries.reverse_overview(store, ["r"])["r"]["counts"] == {}


def test_the_pages_escape_what_they_show(store):
    store.record("a", [refused("<img src=x onerror=alert(1)>", "HTTP 422: <script>alert(1)</script>")])
    html = pages.failures_page("a", queries.failures(store, "a"), "<b>", "both", "/cht-bridge")
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "&lt;b&gt;" in html
