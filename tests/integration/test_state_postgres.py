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
