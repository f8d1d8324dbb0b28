"""Backfills by reported date and dry runs, as whole DAG runs triggered with Params: which reports a
window selects in each mode, that the changes checkpoint never moves, and that a dry run sends
nothing and writes its would-be payloads to a file."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete

from cht_bridge.state.store import Outcome, deliveries
from standins.receiver import Receiver
from tests.conftest import received, receiver_connection
from tests.integration.dagrun import new_pipeline, run_dag, state_store

pytestmark = pytest.mark.integration

MARCH = {"start": "2026-03-01", "end": "2026-04-01"}


def _ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def synced(cht, receiver, monkeypatch, airflow_db, tmp_path):
    """A seeded CHT whose pregnancy reports were all delivered by a normal run."""
    cht.seed(600)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "backfill")
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] > 0
    reports = {d["_id"]: d for d in cht.all_docs() if d.get("form") == "pregnancy"}
    march = {i for i, d in reports.items() if _ms(MARCH["start"]) <= d["reported_date"] < _ms(MARCH["end"])}
    assert 5 < len(march) < len(reports) / 3, "the seed must spread pregnancies over the year"
    return cht, receiver, folder, name, reports, march


def _clear_ledger(name: str, doc_ids: set[str]) -> None:
    store = state_store()
    with store.engine.begin() as conn:
        conn.execute(delete(deliveries).where(deliveries.c.pipeline == name, deliveries.c.doc_id.in_(doc_ids)))


def _fresh_receiver(receiver, monkeypatch, tmp_path) -> Receiver:
    """A receiver with no memory of earlier keys, so what a backfill sends is stored as new."""
    fresh = Receiver(tmp_path / f"rx-{uuid.uuid4().hex[:6]}", credentials=receiver.credentials).start()
    fresh.credentials = receiver.credentials
    monkeypatch.setenv("AIRFLOW_CONN_RECEIVER_TEST", receiver_connection(fresh))
    return fresh


def test_a_month_in_missing_mode_sends_only_that_months_undelivered_reports(synced, monkeypatch, tmp_path):
    cht, receiver, folder, name, reports, march = synced
    store = state_store()
    checkpoint = store.checkpoint(name)
    cleared_in_march = set(sorted(march)[::2])
    cleared_elsewhere = set(sorted(set(reports) - march)[:5])
    _clear_ledger(name, cleared_in_march | cleared_elsewhere)

    fresh = _fresh_receiver(receiver, monkeypatch, tmp_path)
    try:
        state, summary = run_dag(monkeypatch, folder, name, conf=MARCH)
        got = Counter(item["payload"]["report_id"] for item in received(fresh))
    finally:
        fresh.stop()
    assert state == "success"
    assert set(got) == cleared_in_march and set(got.values()) == {1}
    assert summary["kind"] == "backfill" and summary["sent"] == len(cleared_in_march)
    assert summary["skipped"] == len(march) - len(cleared_in_march)  # delivered before: not missing
    assert summary["relevant"] == len(march)
    assert store.checkpoint(name) == checkpoint  # a backfill never moves the changes checkpoint
    newest_s = max(d["reported_date"] for d in reports.values()) / 1000
    assert abs(summary["lag_seconds"] - (time.time() - newest_s)) < 120  # the destination's freshness, not March's
    assert all(store.ledger(name, i)["status"] == "delivered" for i in cleared_in_march)
    assert all(store.ledger(name, i) is None for i in cleared_elsewhere)  # outside the window: untouched


def test_failed_mode_sends_only_failed_and_dead_reports_of_the_window(synced, monkeypatch, tmp_path):
    cht, receiver, folder, name, reports, march = synced
    store = state_store()
    failed_ids, dead_ids = sorted(march)[:2], sorted(march)[2:4]
    outside = sorted(set(reports) - march)[:2]
    store.record(name, [Outcome(i, None, False, "x" * 64, 503, error="HTTP 503") for i in failed_ids + outside])
    store.record(name, [Outcome(i, None, False, "y" * 64, 400, error="HTTP 400", retryable=False) for i in dead_ids])

    fresh = _fresh_receiver(receiver, monkeypatch, tmp_path)
    try:
        state, summary = run_dag(monkeypatch, folder, name, conf={**MARCH, "mode": "failed"})
        got = {item["payload"]["report_id"] for item in received(fresh)}
    finally:
        fresh.stop()
    assert state == "success" and got == set(failed_ids + dead_ids) and summary["sent"] == 4
    assert all(store.ledger(name, i)["status"] == "delivered" for i in failed_ids + dead_ids)
    assert all(store.ledger(name, i)["status"] == "failed" for i in outside)


def test_all_mode_resends_the_window_with_new_keys_and_places_narrow_it(synced, monkeypatch, tmp_path):
    cht, receiver, folder, name, reports, march = synced
    place = Counter(reports[i]["contact"]["parent"]["_id"] for i in march).most_common(1)[0][0]
    in_place = {i for i in march if reports[i]["contact"]["parent"]["_id"] == place}
    before = {item["key"] for item in received(receiver)}

    state, summary = run_dag(monkeypatch, folder, name, conf={**MARCH, "mode": "all", "places": [place]})
    assert state == "success" and summary["sent"] == len(in_place) > 0
    assert summary["filtered"] > 0  # reports of other places were read but not processed
    new = [item for item in received(receiver) if item["key"] not in before]
    # A deliberate re-send: the keys are new, so a receiver that remembers keys still takes them.
    assert sorted(item["payload"]["report_id"] for item in new) == sorted(in_place)

    # The same window with a form that this pipeline does not map selects nothing.
    state, summary = run_dag(monkeypatch, folder, name, conf={**MARCH, "mode": "all", "forms": ["immunization"]})
    assert state == "success" and summary["relevant"] == 0 and summary["sent"] == 0


def test_a_dry_run_backfill_sends_nothing_and_writes_its_payloads_to_a_file(synced, monkeypatch):
    cht, receiver, folder, name, reports, march = synced
    store = state_store()
    requests_before = receiver.stats()["requests"]
    ledger_before = {i: store.ledger(name, i) for i in march}
    checkpoint = store.checkpoint(name)

    state, summary = run_dag(
        monkeypatch, folder, name, conf={**MARCH, "mode": "all", "dry_run": True, "dry_run_payloads": 3}
    )
    assert state == "success" and summary["dry_run"] is True
    assert receiver.stats()["requests"] == requests_before
    assert {i: store.ledger(name, i) for i in march} == ledger_before and store.checkpoint(name) == checkpoint
    artifact = json.loads(Path(summary["artifact"]).read_text(encoding="utf-8"))
    assert artifact["would_send"] == len(march) == summary["relevant"]
    assert len(artifact["payloads"]) == 3 and {p["doc_id"] for p in artifact["payloads"]} <= march
    assert artifact["payloads"][0]["payload"]["report_id"] == artifact["payloads"][0]["doc_id"]
    assert artifact["selection"]["mode"] == "all" and artifact["selection"]["start"].startswith("2026-03-01")


def test_a_dry_run_of_the_changes_feed_sends_nothing_and_keeps_the_checkpoint(
    cht, receiver, monkeypatch, airflow_db, tmp_path, capfd
):
    cht.seed(200)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "dry")
    pregnancies = {d["_id"] for d in cht.all_docs() if d.get("form") == "pregnancy"}

    state, summary = run_dag(monkeypatch, folder, name, conf={"dry_run": True})
    assert state == "success" and receiver.stats()["requests"] == 0
    store = state_store()
    assert store.checkpoint(name) is None and store.counts(name) == {}
    artifact = json.loads(Path(summary["artifact"]).read_text(encoding="utf-8"))
    assert artifact["would_send"] == len(pregnancies) and len(artifact["payloads"]) == 20
    assert summary["artifact"] in "".join(capfd.readouterr())  # the log says where the file is

    state, summary = run_dag(monkeypatch, folder, name)  # switched on for real: everything goes
    assert state == "success" and summary["sent"] == len(pregnancies)


def test_params_that_contradict_each_other_fail_the_task_plainly(
    cht, receiver, monkeypatch, airflow_db, tmp_path, capfd
):
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "params")
    state, _ = run_dag(monkeypatch, folder, name, conf={"start": "2026-03-01"})
    assert state == "failed"
    assert "Params 'start' and 'end' go together" in "".join(capfd.readouterr())
    state, _ = run_dag(monkeypatch, folder, name, conf={"start": "2026-04-01", "end": "2026-03-01"})
    assert state == "failed"
    assert "the window is empty" in "".join(capfd.readouterr())
    assert state_store().checkpoint(name) is None
