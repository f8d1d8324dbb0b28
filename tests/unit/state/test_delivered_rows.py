"""A batch of plain deliveries (the common batch) is written on SQLite with a statement of its own,
which binds 9 parameters a row instead of 17 (``store._UPSERT_DELIVERED_SQLITE``): its rows must be
the rows the general statement writes, column for column, for new documents and for documents the
ledger already holds (failed before, delivered before, without a date or a destination id)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from cht_bridge.state.store import DELETE, DELIVERED, Outcome, deliveries, newest_reported

TIMES = ("first_attempt_at", "last_attempt_at", "delivered_at")
WHEN = datetime(2026, 11, 3, 8, 30, 15, 250_000, tzinfo=UTC)


def delivered(doc_id: str, n: int, *, reported: datetime | None = WHEN, dest: str | None = "d") -> Outcome:
    at = None if reported is None else reported + timedelta(minutes=n)
    return Outcome(
        doc_id,
        f"{n}-r",
        True,
        f"hash{n}",
        201,
        None if dest is None else f"{dest}{n}",
        None,
        True,
        "upsert",
        at,
        f"k{n}",
    )


def rows(store, pipeline: str) -> dict[str, dict]:
    with store.engine.connect() as conn:
        found = conn.execute(select(deliveries).where(deliveries.c.pipeline == pipeline)).mappings().all()
    return {r["doc_id"]: dict(r) for r in found}


def statements(store) -> list[tuple[str, int]]:
    """(statement, parameters per row) of every ledger upsert the store sends from now on."""
    seen: list[tuple[str, int]] = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO cht_bridge_delivery"):
            seen.append((statement, len(parameters[0] if executemany else parameters)))

    event.listen(store.engine, "before_cursor_execute", before)
    return seen


def history(store, pipeline: str) -> None:
    """Rows the batch then meets: failed twice, delivered with a date and an id, deleted."""
    failure = Outcome("was-failed", "1-a", False, "old", 500, None, "boom", True)
    store.record(pipeline, [failure])
    store.record(pipeline, [failure])
    store.record(pipeline, [delivered("was-delivered", 0), delivered("kept-date", 0)])
    store.record(pipeline, [Outcome("was-deleted", "3-z", True, None, 200, "d9", None, True, DELETE)])


@pytest.mark.parametrize("extra", ["a failure", "a delete"])
def test_plain_deliveries_are_stored_as_the_general_statement_stores_them(store, extra):
    """The same batch on two pipelines: alone (the plain statement) and with one outcome that is not a
    plain delivery (the whole batch through the general statement, as before)."""
    batch = [
        delivered("new-1", 1),
        delivered("was-failed", 2),
        delivered("was-delivered", 3, dest=None),  # keeps the destination id it had
        delivered("kept-date", 4, reported=None),  # keeps the reported date it had
        delivered("was-deleted", 5),
        delivered("new-2", 6, reported=WHEN + timedelta(days=20)),  # the newest: the freshness
    ]
    odd = {
        "a failure": Outcome("other", "1-o", False, "h", 400, None, "refused", False),
        "a delete": Outcome("other", "1-o", True, None, 200, "x", None, True, DELETE),
    }[extra]
    for pipeline in ("plain", "general"):
        history(store, pipeline)
    seen = statements(store)
    store.record("plain", batch)
    store.record("general", [*batch, odd])
    assert [n for _, n in seen] == [9, 17]
    plain, general = rows(store, "plain"), rows(store, "general")
    general.pop("other")
    assert plain.keys() == general.keys() == {b.doc_id for b in batch}
    for doc_id, row in plain.items():
        other = general[doc_id]
        assert {k: v for k, v in row.items() if k not in (*TIMES, "pipeline")} == {
            k: v for k, v in other.items() if k not in (*TIMES, "pipeline")
        }, doc_id
        assert row["last_attempt_at"] == row["delivered_at"]
    assert plain["was-failed"]["attempts"] == 3 and plain["was-failed"]["failures"] == 0
    assert plain["was-failed"]["last_error"] is None and plain["was-failed"]["delivered_hash"] == "hash2"
    assert plain["was-delivered"]["destination_id"] == "d0"
    assert plain["kept-date"]["reported_at"] == WHEN.replace(tzinfo=None)
    assert plain["was-deleted"]["status"] == DELIVERED and plain["was-deleted"]["operation"] == "upsert"
    assert plain["was-failed"]["first_attempt_at"] < plain["was-failed"]["last_attempt_at"]
    with store.engine.connect() as conn:
        fresh = newest_reported(conn, ["plain", "general"])
    assert fresh["plain"] == fresh["general"] == WHEN + timedelta(days=20, minutes=6)


@pytest.mark.parametrize(
    "odd",
    [
        delivered("é-not-ascii", 1),  # fits, but only ``fits`` can say so
        delivered("x" * 300, 1),  # too long: kept under a short id
        Outcome("nul-rev", "1-\x00", True, "h", 201, None, None, True, "upsert", WHEN, "k"),
        Outcome("long-dest", "1-a", True, "h", 201, "y" * 300, None, True, "upsert", WHEN, "k"),
    ],
    ids=["non-ascii", "long-id", "nul-rev", "long-destination-id"],
)
def test_a_value_the_plain_check_cannot_vouch_for_goes_through_the_general_path(store, odd):
    seen = statements(store)
    store.record("p", [delivered("a", 2), odd])
    assert [n for _, n in seen] == [17]
    assert len(rows(store, "p")) == 2 and store.counts("p") == {DELIVERED: 2}
