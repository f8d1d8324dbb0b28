"""The state store on a real SQLite file: opaque checkpoints, the delivery ledger, and the single
transaction that moves both."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.exc import IntegrityError

from cht_bridge.state.store import DEAD, DELETE, DELETED, DELIVERED, FAILED, KEEP, Outcome, StateStore
from tests.stores import open_at_once

PIPE = "pregnancies"
COUCH3_SEQ = "12-g1AAAAH5eJyF0EEKwjAQBdDfmvmHtXbmvTu4g6lFZvN0"


def ok(doc_id: str, h: str = "h1", rev: str = "1-a", dest_id: str | None = None) -> Outcome:
    return Outcome(doc_id, rev, delivered=True, payload_hash=h, response_status=201, destination_id=dest_id)


def failed(doc_id: str, h: str = "h2", rev: str = "2-b", status: int | None = 500, error: str = "boom") -> Outcome:
    return Outcome(doc_id, rev, delivered=False, payload_hash=h, response_status=status, error=error)


# -- checkpoint ---------------------------------------------------------------------------------------


def test_checkpoint_is_none_before_the_first_batch(store):
    assert store.checkpoint(PIPE) is None


@pytest.mark.parametrize("seq", [0, 42, COUCH3_SEQ, [12, "g1AAAA"], "now"])
def test_checkpoint_round_trips_opaque_values_verbatim(store, seq):
    store.record(PIPE, [], checkpoint=seq)
    got = store.checkpoint(PIPE)
    assert got == seq and type(got) is type(seq)


def test_checkpoint_moves_forward_and_is_per_pipeline(store):
    store.record(PIPE, [], checkpoint=10)
    store.record(PIPE, [], checkpoint=COUCH3_SEQ)
    store.record("other", [], checkpoint=3)
    assert store.checkpoint(PIPE) == COUCH3_SEQ
    assert store.checkpoint("other") == 3


# -- one transaction ------------------------------------------------------------------------------------


def test_a_broken_ledger_row_rolls_back_the_whole_batch(store):
    store.record(PIPE, [ok("earlier")], checkpoint=7)
    broken = Outcome(None, "1-x", delivered=True, payload_hash="h")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        store.record(PIPE, [ok("a"), broken, ok("b")], checkpoint=8)
    assert store.checkpoint(PIPE) == 7
    assert store.ledger(PIPE, "a") is None and store.ledger(PIPE, "b") is None
    assert store.counts(PIPE) == {DELIVERED: 1}


def test_a_checkpoint_that_cannot_be_written_rolls_back_the_ledger_rows(store):
    """The checkpoint is written after the ledger rows: a failure there must undo them too."""
    store.record(PIPE, [], checkpoint=7)
    with pytest.raises(TypeError):
        store.record(PIPE, [ok("a"), failed("b")], checkpoint=object())  # not JSON
    assert store.checkpoint(PIPE) == 7
    assert store.ledger(PIPE, "a") is None and store.ledger(PIPE, "b") is None


# -- ledger -----------------------------------------------------------------------------------------------


def test_first_delivery_row(store):
    store.record(PIPE, [ok("a", "h1", dest_id="emr-1")], checkpoint=1)
    row = store.ledger(PIPE, "a")
    assert row["status"] == DELIVERED and row["attempts"] == 1
    assert row["payload_hash"] == row["delivered_hash"] == "h1"
    assert row["destination_id"] == "emr-1" and row["response_status"] == 201
    assert row["last_error"] is None and row["delivered_at"] is not None and row["doc_rev"] == "1-a"


def test_a_failed_attempt_after_a_delivery_keeps_what_was_delivered(store):
    store.record(PIPE, [ok("a", "h1", dest_id="emr-1")], checkpoint=1)
    delivered_at = store.ledger(PIPE, "a")["delivered_at"]
    store.record(PIPE, [failed("a", "h2", status=503, error="HTTP 503: busy")], checkpoint=2)

    row = store.ledger(PIPE, "a")
    assert row["status"] == FAILED and row["attempts"] == 2
    assert row["delivered_hash"] == "h1"  # the last successful payload still counts as sent
    assert row["payload_hash"] == "h2" and row["doc_rev"] == "2-b"
    assert row["destination_id"] == "emr-1"
    assert row["response_status"] == 503 and row["last_error"] == "HTTP 503: busy"
    assert row["delivered_at"] == delivered_at
    assert store.delivered_hashes(PIPE, ["a"]) == {"a": "h1"}


def test_a_later_success_clears_the_error(store):
    store.record(PIPE, [failed("a", "h1")], checkpoint=1)
    assert store.ledger(PIPE, "a")["delivered_hash"] is None
    store.record(PIPE, [ok("a", "h1", dest_id="emr-9")], checkpoint=2)
    row = store.ledger(PIPE, "a")
    assert row["status"] == DELIVERED and row["attempts"] == 2 and row["last_error"] is None
    assert row["delivered_hash"] == "h1" and row["destination_id"] == "emr-9"


def test_delivered_hashes_returns_only_delivered_documents(store):
    store.record(PIPE, [ok("a", "ha"), failed("b"), ok("c", "hc")], checkpoint=1)
    store.record("other", [ok("d", "hd")], checkpoint=1)
    assert store.delivered_hashes(PIPE, ["a", "b", "c", "d", "unknown"]) == {"a": "ha", "c": "hc"}
    assert store.delivered_hashes(PIPE, []) == {}


def test_delivered_hashes_works_for_more_than_500_ids(store):
    outcomes = [ok(f"doc{i:04d}", f"h{i}") if i % 3 else failed(f"doc{i:04d}") for i in range(1200)]
    store.record(PIPE, outcomes, checkpoint=1)
    asked = (f"doc{i:04d}" for i in range(1300))  # any iterable, with unknown ids too
    got = store.delivered_hashes(PIPE, asked)
    assert got == {f"doc{i:04d}": f"h{i}" for i in range(1200) if i % 3}
    assert len(got) == 800


def test_counts_and_failures(store):
    store.record(PIPE, [ok("a"), ok("b"), failed("c", error="HTTP 422: bad age", status=422)], checkpoint=1)
    store.record(PIPE, [failed("d", error="mapping: no field", status=None)], checkpoint=2)
    store.record("other", [failed("x")], checkpoint=1)
    assert store.counts(PIPE) == {DELIVERED: 2, FAILED: 2}
    assert store.counts("nothing-yet") == {}

    fails = store.failures(PIPE)
    assert [f["doc_id"] for f in fails] == ["d", "c"]  # most recent first
    assert fails[1] == {"doc_id": "c", "status": "failed", "response_status": 422, "last_error": "HTTP 422: bad age"}
    assert store.failures(PIPE, limit=1) == fails[:1]


def test_two_stores_on_one_file_see_each_others_writes(db_url):
    writer, reader = StateStore(db_url), StateStore(db_url)
    try:
        writer.record(PIPE, [ok("a", "h1")], checkpoint=COUCH3_SEQ)
        assert reader.checkpoint(PIPE) == COUCH3_SEQ
        assert reader.delivered_hashes(PIPE, ["a"]) == {"a": "h1"}
        reader.record(PIPE, [failed("b")], checkpoint=[1, "x"])
        assert writer.checkpoint(PIPE) == [1, "x"]
        assert writer.counts(PIPE) == {DELIVERED: 1, FAILED: 1}
    finally:
        writer.close()
        reader.close()


def test_reopening_the_file_keeps_everything(db_url):
    first = StateStore(db_url)
    first.record(PIPE, [ok("a", "h1")], checkpoint=9)
    first.close()
    again = StateStore(db_url)
    try:
        assert again.checkpoint(PIPE) == 9 and again.delivered_hashes(PIPE, ["a"]) == {"a": "h1"}
    finally:
        again.close()


# -- default location -------------------------------------------------------------------------------------


def test_open_state_store_without_a_connection_uses_airflow_home(tmp_path, monkeypatch):
    from cht_bridge.hooks.state import open_state_store

    home = tmp_path / "airflow-home"
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    s = open_state_store(None)
    try:
        path = home / "cht_bridge" / "state.db"
        assert s.url == f"sqlite:///{path}"
        s.record(PIPE, [ok("a")], checkpoint=1)
        assert path.is_file()
    finally:
        s.close()
    reopened = StateStore(f"sqlite:///{path}")
    try:
        assert reopened.checkpoint(PIPE) == 1
    finally:
        reopened.close()


# -- retries and dead letters ------------------------------------------------------------------------


def test_a_retryable_failure_stays_pending_until_dead_after_runs(store):
    for run in range(1, 4):
        counts = store.record(PIPE, [failed("a")], dead_after=3)
        row = store.ledger(PIPE, "a")
        assert row["failures"] == run
        if run < 3:
            assert counts == {FAILED: 1} and row["status"] == FAILED
            assert [p["doc_id"] for p in store.pending(PIPE)] == ["a"]
    assert counts == {DEAD: 1} and row["status"] == DEAD and row["last_error"] == "boom"
    assert store.pending(PIPE) == []


def test_a_permanent_failure_is_dead_at_once_and_a_delivery_resets_the_count(store):
    bad = Outcome(
        "a", "1-a", delivered=False, payload_hash="h", response_status=400, error="HTTP 400: no", retryable=False
    )
    assert store.record(PIPE, [bad, failed("b")]) == {DEAD: 1, FAILED: 1}
    store.record(PIPE, [ok("b", "hb")])
    row = store.ledger(PIPE, "b")
    assert row["status"] == DELIVERED and row["failures"] == 0 and row["delivered_hash"] == "hb"
    assert store.failures(PIPE) == [
        {"doc_id": "a", "status": DEAD, "response_status": 400, "last_error": "HTTP 400: no"}
    ]


def test_record_without_a_checkpoint_keeps_it(store):
    store.record(PIPE, [ok("a")], checkpoint=5)
    store.record(PIPE, [ok("b")], checkpoint=KEEP)
    store.record(PIPE, [ok("c")])
    assert store.checkpoint(PIPE) == 5 and store.counts(PIPE) == {DELIVERED: 3}


def test_pending_pages_by_doc_id(store):
    store.record(PIPE, [failed(f"d{i:02}") for i in range(7)] + [ok("x")])
    first = store.pending(PIPE, limit=4)
    rest = store.pending(PIPE, after=first[-1]["doc_id"], limit=4)
    assert [p["doc_id"] for p in first + rest] == [f"d{i:02}" for i in range(7)]
    assert first[0] == {
        "doc_id": "d00", "doc_rev": "2-b", "operation": "upsert", "destination_id": None, "payload_hash": "h2",
        "idempotency_key": None,
    }  # fmt: skip


def test_select_by_status_id_and_time_then_rearm(store):
    store.record(PIPE, [Outcome(i, "1", False, "h", 400, error="no", retryable=False) for i in "abc"] + [failed("d")])
    assert [r["doc_id"] for r in store.select(PIPE)] == ["a", "b", "c"]
    assert [r["doc_id"] for r in store.select(PIPE, statuses=[FAILED, DEAD], doc_ids=["b", "d"])] == ["b", "d"]
    now = datetime.now(UTC)
    assert len(store.select(PIPE, since=now - timedelta(minutes=1), until=now + timedelta(minutes=1))) == 3
    assert store.select(PIPE, since=now + timedelta(minutes=1)) == []
    store.record(PIPE, [failed("d")], dead_after=2)
    assert store.ledger(PIPE, "d")["status"] == DEAD
    store.rearm(PIPE, ["d"])
    assert store.ledger(PIPE, "d")["failures"] == 0
    assert store.record(PIPE, [failed("d")], dead_after=2) == {FAILED: 1}  # a fresh count after a replay


def test_a_sent_delete_forgets_the_delivered_hash(store):
    store.record(PIPE, [ok("a", "h1", dest_id="emr-1")])
    store.record(PIPE, [Outcome("a", "2-del", True, response_status=204, operation=DELETE)])
    row = store.ledger(PIPE, "a")
    assert row["status"] == DELETED and row["delivered_hash"] is None and row["destination_id"] == "emr-1"
    assert store.states(PIPE, ["a"])["a"].operation == DELETE


def test_newest_delivered_is_the_latest_reported_date_delivered(store):
    t1, t2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, 12, tzinfo=UTC)
    assert store.newest_delivered(PIPE) is None
    store.record(PIPE, [Outcome("a", "1", True, "h", reported_at=t1), Outcome("b", "1", False, "h", reported_at=t2)])
    assert store.newest_delivered(PIPE) == t1


def test_dead_letters_view_lists_dead_rows(store):
    store.record(PIPE, [Outcome("a", "1", False, "h", 422, error="HTTP 422: bad", retryable=False), ok("b")])
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT pipeline, doc_id, last_error FROM cht_bridge_dead_letters")).all()
    assert [tuple(r) for r in rows] == [(PIPE, "a", "HTTP 422: bad")]


def test_a_ledger_from_the_previous_version_is_migrated(db_url):
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE cht_bridge_delivery (pipeline VARCHAR(200) NOT NULL, doc_id VARCHAR(255) NOT NULL, "
                "doc_rev VARCHAR(100), status VARCHAR(20) NOT NULL, payload_hash VARCHAR(64), "
                "delivered_hash VARCHAR(64), attempts INTEGER NOT NULL, response_status INTEGER, "
                "destination_id VARCHAR(255), last_error TEXT, first_attempt_at DATETIME NOT NULL, "
                "last_attempt_at DATETIME NOT NULL, delivered_at DATETIME, PRIMARY KEY (pipeline, doc_id))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO cht_bridge_delivery VALUES ('p', 'old', '1-a', 'failed', 'h', NULL, 3, 500, NULL, "
                "'HTTP 500', '2026-01-01 00:00:00', '2026-01-01 00:00:00', NULL)"
            )
        )
    engine.dispose()
    migrated = StateStore(db_url)
    try:
        row = migrated.ledger("p", "old")
        assert row["failures"] == 0 and row["operation"] == "upsert" and row["status"] == FAILED
        assert migrated.record("p", [failed("old")], dead_after=1) == {DEAD: 1}
    finally:
        migrated.close()


def test_a_closed_failure_leaves_the_retries_and_is_not_a_dead_letter(store):
    from cht_bridge.state import CLOSED

    store.record(PIPE, [failed("a")])
    assert store.record(PIPE, [Outcome("a", None, False, error="deleted in CHT", closed=True)]) == {CLOSED: 1}
    assert store.pending(PIPE) == [] and store.select(PIPE, statuses=["dead", "failed"]) == []
    assert store.ledger(PIPE, "a")["last_error"] == "deleted in CHT"


def test_delivered_destination_ids_answers_across_pipelines_for_delivered_rows_only(store):
    store.record("patients", [Outcome("a", "1-a", True, destination_id="Patient/x")])
    store.record("patients", [Outcome("b", "1-b", False, destination_id="Patient/y", error="HTTP 422")])
    store.record("referrals", [Outcome("r", "1-r", True, destination_id="ServiceRequest/z")])
    asked = ["Patient/x", "Patient/y", "ServiceRequest/z", "Patient/nobody"] + [f"Patient/{i}" for i in range(600)]
    assert store.delivered_destination_ids(asked) == {"Patient/x", "ServiceRequest/z"}
    assert store.delivered_destination_ids([]) == set()


def test_a_destination_sees_only_what_pipelines_to_its_own_connection_delivered(store):
    # The same deterministic Patient/x delivered to OpenMRS says nothing about the HAPI server.
    store.record("openmrs_patients", [Outcome("a", "1-a", True, destination_id="Patient/x")])
    store.record("hapi_patients", [Outcome("b", "1-b", True, destination_id="Patient/y")])
    hapi = store.for_destination("hapi_referrals", ["hapi_patients"])
    assert hapi.delivered_destination_ids(["Patient/x", "Patient/y"]) == {"Patient/y"}
    assert store.for_destination("openmrs_referrals", ["openmrs_patients"]).delivered_destination_ids(
        ["Patient/x", "Patient/y"]
    ) == {"Patient/x"}
    assert store.delivered_destination_ids(["Patient/x"], pipelines=[]) == set()


def test_last_delivered_is_the_key_of_the_last_successful_delivery_of_this_pipeline(store):
    from cht_bridge.mapping.hashing import idempotency_key

    store.record("referrals", [Outcome("r1", "1-r", True, "h1", destination_id="ServiceRequest/s")])
    store.record("referrals", [Outcome("r2", "1-r", False, "h2", error="HTTP 503", retryable=True)])
    store.record("others", [Outcome("r3", "1-r", True, "h3")])
    last = store.for_destination("referrals").last_delivered(["r1", "r2", "r3"])
    assert last == {"r1": idempotency_key("referrals", "r1", "h1")}


def test_the_peers_of_a_destination_ledger_are_found_once_and_only_when_asked(store):
    asked = []

    def find():
        asked.append(1)
        return ["hapi_patients"]

    store.record("hapi_patients", [Outcome("b", "1-b", True, destination_id="Patient/y")])
    ledger = store.for_destination("hapi_referrals", find)
    assert asked == []  # a kind that never asks never reads the pipeline files
    assert ledger.delivered_destination_ids(["Patient/y"]) == {"Patient/y"}
    assert ledger.delivered_destination_ids(["Patient/y"]) == {"Patient/y"} and asked == [1]


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 3, 1, 7, 8, 9, tzinfo=UTC),
        datetime(2026, 3, 1, 7, 8, 9, 120000, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 8, 9, 5, tzinfo=timezone(timedelta(hours=3))),  # the same instant, +03:00
        datetime(2026, 3, 1, 7, 8, 9),  # naive: taken as UTC
    ],
)
def test_reported_dates_are_stored_as_sqlalchemy_writes_utc_on_sqlite(store, when):
    # ``record`` writes a row's times as text straight to the driver (a UTC shortcut for the
    # common case); the text must be what SQLAlchemy writes and reads back, for every timezone.
    store.record(PIPE, [Outcome("a", "1", True, "h", reported_at=when)])
    expected = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).replace(tzinfo=None)
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT reported_at FROM cht_bridge_delivery WHERE doc_id = 'a'")).scalar()
    assert stored == expected.isoformat(" ")
    assert store.ledger(PIPE, "a")["reported_at"] == expected
    assert store.newest_delivered(PIPE) == expected.replace(tzinfo=UTC)


def test_states_of_many_ids_in_chunks_with_duplicates_and_ids_no_row_can_hold(store):
    store.record(PIPE, [ok(f"d{i:04d}", h=f"h{i}") for i in range(0, 1200, 2)] + [failed("d0001")])
    asked = [f"d{i:04d}" for i in range(1200)] + ["d0002", "x" * 300, "nul\x00id", "é-accent"]
    states = store.states(PIPE, asked)
    assert set(states) == {f"d{i:04d}" for i in range(0, 1200, 2)} | {"d0001"}
    assert states["d0002"].delivered_hash == "h2" and states["d0002"].status == DELIVERED
    assert states["d0001"].status == FAILED and states["d0001"].delivered_hash is None
    assert store.states("other-pipeline", asked) == {}


def test_a_batch_is_written_in_id_order_but_one_document_twice_keeps_its_order(store):
    # ``record`` sorts a batch's rows by id for the index; the sort is stable, so a document that
    # appears twice is written in the order given, and the later outcome is the one that stays.
    store.record(PIPE, [ok("z"), failed("m", error="first"), ok("a"), ok("m", h="h9")])
    row = store.ledger(PIPE, "m")
    assert row["status"] == DELIVERED and row["delivered_hash"] == "h9" and row["attempts"] == 2
    store.record(PIPE, [ok("b", h="h3"), failed("b", error="later")])
    row = store.ledger(PIPE, "b")
    assert row["status"] == FAILED and row["last_error"] == "later" and row["delivered_hash"] == "h3"
    assert store.counts(PIPE) == {DELIVERED: 3, FAILED: 1}


def test_the_retired_indexes_are_dropped_and_their_queries_use_the_new_ones(db_url):
    StateStore(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:  # a ledger made by the previous version has them
        conn.execute(text("CREATE INDEX ix_cht_bridge_delivery_status ON cht_bridge_delivery (pipeline, status)"))
        conn.execute(text("CREATE INDEX ix_cht_bridge_delivery_destination_id ON cht_bridge_delivery (destination_id)"))
    engine.dispose()
    store = StateStore(db_url)
    try:
        names = {i["name"] for i in inspect(store.engine).get_indexes("cht_bridge_delivery")}
        assert not {"ix_cht_bridge_delivery_status", "ix_cht_bridge_delivery_destination_id"} & names
        assert {"ix_cht_bridge_delivery_unsettled", "ix_cht_bridge_delivery_reference"} <= names
        store.record(PIPE, [ok("a"), failed("b")])
        assert store.counts(PIPE) == {DELIVERED: 1, FAILED: 1}
        # every row from the primary key's index, the rest from the partial index (status_counts)
        plan = _plan(store, "SELECT count(*) FROM cht_bridge_delivery WHERE pipeline = ?")
        assert "USING COVERING INDEX sqlite_autoindex_cht_bridge_delivery_1" in plan
        plan = _plan(
            store,
            "SELECT status, count(*) FROM cht_bridge_delivery WHERE pipeline = ? AND status <> 'delivered' "
            "GROUP BY status",
        )
        assert "USING COVERING INDEX ix_cht_bridge_delivery_unsettled" in plan
    finally:
        store.close()


def test_tasks_opening_an_old_ledger_at_once_all_bring_it_up_to_date(db_url):
    StateStore(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:  # a ledger made by the previous version: old indexes, no reference index
        conn.execute(text("DROP INDEX ix_cht_bridge_delivery_reference"))
        conn.execute(text("CREATE INDEX ix_cht_bridge_delivery_status ON cht_bridge_delivery (pipeline, status)"))
    engine.dispose()
    assert open_at_once(db_url) == []
    names = {i["name"] for i in inspect(create_engine(db_url)).get_indexes("cht_bridge_delivery")}
    assert "ix_cht_bridge_delivery_reference" in names and "ix_cht_bridge_delivery_status" not in names


def test_only_references_are_indexed_and_only_references_are_looked_up(store):
    store.record(PIPE, [ok("a", dest_id="Patient/p1"), ok("b", dest_id="rcv-123"), failed("c")])
    store.record("other", [ok("d", dest_id="Patient/p2")])
    asked = ["Patient/p1", "rcv-123", "Patient/p2", "Patient/none", "none"]
    # "rcv-123" was delivered, but it is no reference: answering it would read every delivered row
    assert store.delivered_destination_ids(asked, [PIPE]) == {"Patient/p1"}
    assert store.delivered_destination_ids(asked) == {"Patient/p1", "Patient/p2"}
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        assert store.delivered_destination_ids(["urn:uuid:1", "rcv-123", "x" * 50], [PIPE]) == set()
        assert store.delivered_destination_ids(["Patient/p1"], [PIPE]) == {"Patient/p1"}
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert len(statements) == 1  # the ids without a "/" asked for nothing
    with store.engine.connect() as conn:
        (ddl,) = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_cht_bridge_delivery_reference'"
        ).one()
        assert ddl.endswith("WHERE destination_id LIKE '%/%'")  # a partial index: random ids are not in it
    plan = _plan(
        store,
        "SELECT destination_id FROM cht_bridge_delivery WHERE status = 'delivered' "
        "AND destination_id IN ('Patient/p1') AND destination_id LIKE '%/%' AND pipeline IN (?)",
    )
    # the lookup a FHIR destination makes reads that index alone, not every delivered row of the pipeline
    assert "COVERING INDEX ix_cht_bridge_delivery_reference" in plan


def _plan(store: StateStore, query: str) -> str:
    """SQLite's plan of ``query`` (its one parameter is ``PIPE``), as one line."""
    with store.engine.connect() as conn:
        return " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + query, (PIPE,)).all())
