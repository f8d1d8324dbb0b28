"""Durable commits: the marks written before a POST with no idempotency key are fsynced
(``synchronous=FULL`` for their transaction); every other write stays ``NORMAL``.

What SQLite's connection says while each statement runs is read on the same connection, from an
event listener: the value a power loss would meet.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event

from cht_bridge.state import Outcome, StateStore
from cht_bridge.state.inbound import (
    DONE,
    PERSON_SENT,
    READY,
    RECEIVED,
    REPORT_SENT,
    InboundLedger,
    InboundRow,
)
from cht_bridge.state.rapidpro import RapidProState

FULL, NORMAL = 2, 1


@pytest.fixture
def seen(store):
    """(first words of each write statement, ``PRAGMA synchronous`` on its connection as it ran)."""
    found: list[tuple[str, int]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        words = statement.split()
        if words and words[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            value = cursor.connection.execute("PRAGMA synchronous").fetchone()[0]
            found.append((" ".join(words[:3]), value))

    event.listen(store.engine, "before_cursor_execute", record)
    yield found
    event.remove(store.engine, "before_cursor_execute", record)


def synchronous(store: StateStore) -> tuple[int, object]:
    """The pooled connection's setting, and which DB-API connection answered."""
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("PRAGMA synchronous").scalar(), conn.connection.dbapi_connection


def test_a_durable_transaction_runs_full_and_gives_the_connection_back_normal(store) -> None:
    with store.durable() as conn:
        inside = conn.connection.dbapi_connection
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == FULL
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    value, after = synchronous(store)
    assert after is inside and value == NORMAL  # the same pooled connection, restored
    with store.engine.connect() as conn:  # and the write was committed
        assert conn.exec_driver_sql("SELECT x FROM t").scalars().all() == [1]


def test_a_durable_transaction_that_raises_rolls_back_and_restores_normal(store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError, match="boom"), store.durable() as conn:
        inside = conn.connection.dbapi_connection
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    value, after = synchronous(store)
    assert after is inside and value == NORMAL
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0


def test_inbound_marks_are_written_full_and_other_states_normal(store, seen) -> None:
    ledger = InboundLedger(store)
    ledger.receive("p", [InboundRow("p", "a", "1", RECEIVED, record={"person": {"name": "x"}})], 1, None)
    row = ledger.get("p", "a", "1")
    for status in (READY, PERSON_SENT, READY, REPORT_SENT, DONE):
        row.status = status
        ledger.save(row, "run1")
    updates = [value for words, value in seen if words.startswith("UPDATE cht_bridge_inbound")]
    assert updates == [NORMAL, FULL, NORMAL, FULL, NORMAL]
    assert ledger.get("p", "a", "1").status == DONE
    assert synchronous(store)[0] == NORMAL


def test_a_rapidpro_start_intention_is_written_full_and_its_answer_normal(store, seen) -> None:
    state = RapidProState(store)
    state.intend("p", "ref-1", [("k1", "doc-1"), ("k2", "doc-2")])
    state.started("p", "ref-1", "uuid-1")
    state.intend("p", "ref-2", [("k3", "doc-3")])
    state.forget("p", "ref-2")
    writes = [(words.split()[0], value) for words, value in seen if "cht_bridge_rapidpro_start" in words]
    assert writes == [("INSERT", FULL), ("INSERT", FULL), ("UPDATE", NORMAL), ("INSERT", FULL), ("DELETE", NORMAL)]
    assert synchronous(store)[0] == NORMAL


def test_the_forward_ledger_stays_normal(store, seen) -> None:
    store.record("p", [Outcome("d1", "1-a", True, payload_hash="h")], checkpoint="seq-1")
    assert seen and {value for _, value in seen} == {NORMAL}


def test_a_connection_that_cannot_be_restored_is_dropped_not_pooled_full(store) -> None:
    def refuse(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement == "PRAGMA synchronous=NORMAL":
            raise RuntimeError("disk gone")

    event.listen(store.engine, "before_cursor_execute", refuse)
    try:
        with store.durable() as conn:
            inside = conn.connection.dbapi_connection
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    finally:
        event.remove(store.engine, "before_cursor_execute", refuse)
    value, after = synchronous(store)
    assert after is not inside and value == NORMAL  # a fresh connection, set up by the connect hook
    with store.engine.connect() as conn:  # the transaction itself was committed
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
