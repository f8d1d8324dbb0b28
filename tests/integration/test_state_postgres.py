"""The state store works unchanged on PostgreSQL, through an Airflow Connection."""

from __future__ import annotations

import uuid

import pytest

from cht_bridge.hooks.state import open_state_store, sqlalchemy_url
from cht_bridge.state import Outcome, StateStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url):
    s = StateStore(sqlalchemy_url(postgres_url))
    yield s
    s.close()


def test_checkpoint_and_ledger_round_trip_on_postgres(store):
    name = f"p_{uuid.uuid4().hex[:8]}"
    assert store.checkpoint(name) is None
    store.record(
        name,
        [Outcome("a", "1-x", True, "h" * 64, 201, "dest-1"), Outcome("b", "1-y", False, error="bad")],
        checkpoint="12-g1AAAAopaque",
    )
    assert store.checkpoint(name) == "12-g1AAAAopaque"
    assert store.delivered_hashes(name, ["a", "b"]) == {"a": "h" * 64}

    store.record(name, [Outcome("a", "2-x", False, "i" * 64, 503, None, "HTTP 503")], checkpoint=[13, "x"])
    row = store.ledger(name, "a")
    assert (row["status"], row["attempts"], row["delivered_hash"], row["destination_id"]) == (
        "failed",
        2,
        "h" * 64,
        "dest-1",
    )
    assert store.checkpoint(name) == [13, "x"]
    assert store.counts(name) == {"failed": 2}
    assert [f["doc_id"] for f in store.failures(name)] == ["a", "b"]


def test_a_failed_batch_write_moves_nothing_on_postgres(store):
    name = f"p_{uuid.uuid4().hex[:8]}"
    store.record(name, [Outcome("a", "1-x", True, "h" * 64)], checkpoint=1)
    with pytest.raises(Exception):  # noqa: B017 - any database error
        store.record(name, [Outcome(None, "1-x", True, "h" * 64)], checkpoint=2)
    assert store.checkpoint(name) == 1


def test_open_state_store_from_an_airflow_connection(postgres_url, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PG_STATE", postgres_url.replace("postgresql://", "postgres://"))
    monkeypatch.setenv("CHT_BRIDGE_STATE_CONN_ID", "pg_state")
    store = open_state_store(None)
    try:
        assert store.engine.dialect.name == "postgresql"
        name = f"p_{uuid.uuid4().hex[:8]}"
        store.record(name, [], checkpoint=7)
        assert store.checkpoint(name) == 7
    finally:
        store.close()


def test_dead_letters_pending_replay_selection_and_lag_on_postgres(store):
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    name = f"p_{uuid.uuid4().hex[:8]}"
    reported = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    counts = store.record(
        name,
        [
            Outcome("ok", "1-a", True, "h" * 64, 201, reported_at=reported),
            Outcome("busy", "1-b", False, "i" * 64, 503, error="HTTP 503"),
            Outcome("bad", "1-c", False, "j" * 64, 400, error="HTTP 400: no", retryable=False),
        ],
    )
    assert counts == {"delivered": 1, "failed": 1, "dead": 1}
    assert store.checkpoint(name) is None  # outcomes without a checkpoint keep it
    assert [p["doc_id"] for p in store.pending(name)] == ["busy"]
    assert store.record(name, [Outcome("busy", "1-b", False, "i" * 64, 503, error="HTTP 503")], dead_after=2) == {
        "dead": 1
    }
    now = datetime.now(UTC)
    assert [r["doc_id"] for r in store.select(name, since=now - timedelta(minutes=5))] == ["bad", "busy"]
    store.rearm(name, ["busy"])
    assert store.ledger(name, "busy")["failures"] == 0
    assert store.newest_delivered(name) == reported
    with store.engine.connect() as conn:
        dead = conn.execute(text("SELECT doc_id FROM cht_bridge_dead_letters WHERE pipeline = :p"), {"p": name})
        assert sorted(r.doc_id for r in dead) == ["bad", "busy"]


def test_inbound_ledger_round_trip_on_postgres(store):
    from cht_bridge.state.inbound import DONE, RECEIVED, REVIEW, InboundLedger, InboundRow

    ledger, name = InboundLedger(store), f"r_{uuid.uuid4().hex[:8]}"
    rows = [InboundRow(name, i, "v1", RECEIVED, record={"person": {"name": "x"}}) for i in ("b", "a")]
    ledger.receive(name, rows, {"lastUpdated": "2026-11-20T10:00:00.123Z"}, "run-1")
    ledger.receive(name, rows[:1], {"lastUpdated": "2026-11-21T10:00:00Z"}, "run-2")  # a re-read adds nothing
    assert ledger.checkpoint(name) == {"lastUpdated": "2026-11-21T10:00:00Z"}
    assert [r.source_id for r in ledger.rows(name, [RECEIVED])] == ["b", "a"]  # the list's order
    row = ledger.get(name, "a", "v1")
    row.status, row.candidates, row.probability = REVIEW, [{"id": "p-1", "probability": 0.5, "reason": "r"}], 0.5
    ledger.save(row)
    assert ledger.review_keys(name) == [["a", "v1"]]
    row.status, row.person_id, row.report_id = DONE, "p-1", "r-1"
    ledger.save(row)
    assert ledger.get(name, "a", "v1").record is None and ledger.counts(name) == {RECEIVED: 1, DONE: 1}


def test_waiting_inbound_rows_keep_their_record_until_a_newer_version_replaces_them_on_postgres(store):
    from cht_bridge.state.inbound import FAILED, RECEIVED, SKIPPED, UNPLACED, InboundLedger, InboundRow

    ledger, name = InboundLedger(store), f"r_{uuid.uuid4().hex[:8]}"
    ledger.receive(name, [InboundRow(name, i, "v1", RECEIVED, record={"place": "X"}) for i in ("a", "b")], 1, None)
    for source_id, status in (("a", UNPLACED), ("b", FAILED)):
        row = ledger.get(name, source_id, "v1")
        row.status = status
        ledger.save(row, "run-1")
        assert ledger.get(name, source_id, "v1").record == {"place": "X"}
    superseded: list[tuple[str, str]] = []
    ledger.receive(name, [InboundRow(name, "a", "v2", RECEIVED, record={"place": "Y"})], 2, "run-2", superseded)
    assert superseded == [("a", "v1")]
    old = ledger.get(name, "a", "v1")
    assert (old.status, old.record, old.run_id) == (SKIPPED, None, "run-2")
    assert ledger.counts(name) == {SKIPPED: 1, FAILED: 1, RECEIVED: 1}


def test_the_retired_indexes_are_dropped_and_references_are_found_on_postgres(store):
    from sqlalchemy import inspect, text

    with store.engine.begin() as conn:  # as a ledger made by the previous version has them
        conn.execute(
            text("CREATE INDEX IF NOT EXISTS ix_cht_bridge_delivery_status ON cht_bridge_delivery (pipeline, status)")
        )
        conn.execute(
            text(
                "CREATE INDEX IF NOT EXISTS ix_cht_bridge_delivery_destination_id ON cht_bridge_delivery (destination_id)"
            )
        )
    reopened = StateStore(store.url)
    try:
        indexes = {i["name"]: i for i in inspect(reopened.engine).get_indexes("cht_bridge_delivery")}
        assert not {"ix_cht_bridge_delivery_status", "ix_cht_bridge_delivery_destination_id"} & set(indexes)
        assert "ix_cht_bridge_delivery_unsettled" in indexes
        assert not {"ix_cht_bridge_delivery_recent", "ix_cht_bridge_delivery_reported"} & set(indexes)
        with reopened.engine.connect() as conn:
            ddl = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_cht_bridge_delivery_reference'")
            ).scalar_one()
        assert ddl.endswith("WHERE ((destination_id)::text ~~ '%/%'::text)"), ddl  # partial: references only
        name = f"p_{uuid.uuid4().hex[:8]}"
        reopened.record(
            name,
            [
                Outcome("a", "1-x", True, "h" * 64, 201, "Patient/p1"),
                Outcome("b", "1-y", True, "h" * 64, 201, "rcv-1"),
                Outcome("c", "1-z", False, error="bad"),
            ],
        )
        assert reopened.counts(name) == {"delivered": 2, "failed": 1}
        asked = ["Patient/p1", "rcv-1", "Patient/none", "none"]
        assert reopened.delivered_destination_ids(asked, [name]) == {"Patient/p1"}  # only references are asked
    finally:
        reopened.close()


def test_tasks_opening_an_old_ledger_at_once_take_turns_on_postgres(store):
    from sqlalchemy import inspect, text

    from tests.stores import open_at_once

    with store.engine.begin() as conn:  # as the previous version left it: no reference index yet
        conn.execute(text("DROP INDEX IF EXISTS ix_cht_bridge_delivery_reference"))
    assert open_at_once(store.url) == []
    assert "ix_cht_bridge_delivery_reference" in {
        i["name"] for i in inspect(store.engine).get_indexes("cht_bridge_delivery")
    }


def test_durable_marks_are_plain_transactions_on_postgres(store):
    """On PostgreSQL a commit is flushed while synchronous_commit is on: ``durable`` changes nothing
    else, commits its writes and rolls them back on an error."""
    from cht_bridge.state.inbound import PERSON_SENT, RECEIVED, InboundLedger, InboundRow
    from cht_bridge.state.rapidpro import RapidProState

    with store.durable() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        assert conn.in_transaction()
    ledger, name = InboundLedger(store), f"r_{uuid.uuid4().hex[:8]}"
    ledger.receive(name, [InboundRow(name, "a", "v1", RECEIVED, record={"person": {"name": "x"}})], 1, None)
    row = ledger.get(name, "a", "v1")
    row.status = PERSON_SENT
    ledger.save(row, "run-1")
    assert ledger.get(name, "a", "v1").status == PERSON_SENT
    state = RapidProState(store)
    state.intend(name, "ref-1", [("k1", "doc-1")])
    assert state.intended(name, ["k1"])["k1"][:2] == ("ref-1", None)
    with pytest.raises(RuntimeError, match="boom"), store.durable() as conn:
        conn.exec_driver_sql("DELETE FROM cht_bridge_rapidpro_start WHERE pipeline = %s", (name,))
        raise RuntimeError("boom")
    assert set(state.intended(name, ["k1"])) == {"k1"}


def test_an_old_ledger_gets_its_freshness_and_loses_the_full_indexes_on_postgres(postgres_url):
    """A ledger the previous version made (freshness read through ``_reported``, failures through
    ``_recent``, no freshness table), opened by six tasks at once: filled once from its rows, the
    old indexes dropped, the page's answers as the previous version's SQL gives them."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, inspect, text

    from cht_bridge.state.store import REPORTED_INDEX
    from cht_bridge.ui import queries
    from tests.stores import as_the_previous_version_left_it, open_at_once

    admin = create_engine(sqlalchemy_url(postgres_url), isolation_level="AUTOCOMMIT")
    database = f"old_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    admin.dispose()
    url = sqlalchemy_url(postgres_url).rsplit("/", 1)[0] + f"/{database}"
    t0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    store = StateStore(url)
    store.record("p", [Outcome("a", "1", True, "h", 201, reported_at=t0 + timedelta(days=3))])
    store.record("p", [Outcome("b", "1", True, "h", 201, reported_at=t0), Outcome("c", "1", False, error="x")])
    store.record("p", [Outcome("a", "2", False, "h", 503, error="HTTP 503", reported_at=t0 + timedelta(days=3))])
    store.record("q", [Outcome("z", "1", False, "h", 422, error="HTTP 422", retryable=False)])
    with store.engine.connect() as conn:
        counts = conn.execute(text("SELECT pipeline, status, count(*) FROM cht_bridge_delivery GROUP BY 1, 2")).all()
    store.close()
    as_the_previous_version_left_it(url)
    assert open_at_once(url) == []
    store = StateStore(url)
    try:
        names = {i["name"] for i in inspect(store.engine).get_indexes("cht_bridge_delivery")}
        assert "ix_cht_bridge_delivery_unsettled" in names
        assert not {REPORTED_INDEX, "ix_cht_bridge_delivery_recent"} & names
        assert store.newest_delivered("p") == t0  # "a" is no longer delivered: the rows said t0
        assert store.newest_delivered("q") is None
        overview = queries.forward_overview(store, ["p", "q"])
        expected: dict[str, dict[str, int]] = {"p": {}, "q": {}}
        for pipeline, status, n in counts:
            expected[pipeline][status] = n
        assert {name: overview[name]["counts"] for name in ("p", "q")} == expected
        assert overview["p"]["recent"] == {"failed": 2, "dead": 0}
        assert overview["q"]["recent"] == {"failed": 0, "dead": 1}
        assert [r["doc_id"] for r in queries.failures(store, "p")["rows"]] == ["a", "c"]
        assert "delivered" in inspect(store.engine).get_view_definition("cht_bridge_dead_letters")  # remade
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT pipeline, doc_id FROM cht_bridge_dead_letters")).all() == [("q", "z")]
        store.record("p", [Outcome("d", "1", True, "h", 201, reported_at=t0 + timedelta(days=1))])
        assert store.newest_delivered("p") == t0 + timedelta(days=1)
    finally:
        store.close()


def _new_database(postgres_url: str) -> str:
    """The URL of a new, empty database on the test server (for a ledger of its own shape)."""
    from sqlalchemy import create_engine, text

    admin = create_engine(sqlalchemy_url(postgres_url), isolation_level="AUTOCOMMIT")
    database = f"db_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {database}"))
    admin.dispose()
    return sqlalchemy_url(postgres_url).rsplit("/", 1)[0] + f"/{database}"


def test_an_open_that_fills_the_freshness_does_not_deadlock_a_batch_being_recorded_on_postgres(postgres_url):
    """A previous-version task made ``_reported`` again during a rolling upgrade; a new-version task
    opens the ledger (fills the freshness, drops the index) while another records a batch: the
    batch holds the ledger and wants its freshness row; the fill must not hold that row while it
    waits for the ledger (DROP INDEX)."""
    import threading
    import time
    from datetime import UTC, datetime

    from sqlalchemy import create_engine, event, text

    from cht_bridge.state.store import REPORTED_INDEX

    url = _new_database(postgres_url)
    store = StateStore(url)
    store.record("p", [Outcome("a", "1", True, reported_at=datetime(2026, 1, 1, tzinfo=UTC))])
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE INDEX {REPORTED_INDEX} ON cht_bridge_delivery (pipeline, status, reported_at)"))
    engine.dispose()
    opened: list[BaseException | None] = []

    def open_store() -> None:
        try:
            StateStore(url).close()
            opened.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            opened.append(exc)

    threads: list[threading.Thread] = []

    def mid_batch(_conn, _cursor, statement, *_args) -> None:
        if statement.startswith("INSERT INTO cht_bridge_delivery") and not threads:
            threads.append(threading.Thread(target=open_store))
            threads[0].start()
            time.sleep(2)  # the open fills the freshness and asks for the ledger while this batch holds it

    event.listen(store.engine, "after_cursor_execute", mid_batch)
    try:
        store.record("p", [Outcome("b", "1", True, reported_at=datetime(2026, 2, 1, tzinfo=UTC))])
        threads[0].join(timeout=60)
        assert opened == [None]
        assert store.newest_delivered("p") == datetime(2026, 2, 1, tzinfo=UTC)
    finally:
        store.close()


def test_counts_are_one_snapshot_while_another_task_commits_on_postgres(postgres_url):
    from tests.unit.state.test_ledger_indexes import counts_while_a_batch_commits

    read, after = counts_while_a_batch_commits(sqlalchemy_url(postgres_url), f"p_{uuid.uuid4().hex[:8]}")
    assert after == {"failed": 15}
    assert read in ({"failed": 10}, {"failed": 15})


def test_replay_of_both_statuses_with_forty_thousand_ids_on_postgres(store):
    name = f"p_{uuid.uuid4().hex[:8]}"
    store.record(name, [Outcome("d1", "1", False, error="x"), Outcome("d2", "1", False, error="x", retryable=False)])
    ids = [f"x{i}" for i in range(40_000)] + ["d1", "d2"]
    assert [r["doc_id"] for r in store.select(name, statuses=["failed", "dead"], doc_ids=ids)] == ["d1", "d2"]
