"""Whole pipeline DAGs run with ``dag.test()`` against a real local CouchDB-protocol server and the
real demo receiver: what arrives, what is skipped, what the ledger and checkpoint say."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from cht_bridge.destinations.rest import RestDestination
from standins.receiver import Receiver
from tests.conftest import received, receiver_connection
from tests.integration.dagrun import new_pipeline, run_dag, state_store, write_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def world(cht, receiver, monkeypatch, airflow_db, tmp_path):
    """A seeded CHT, the receiver, the Connections, and a pipeline name unique to the test."""
    cht.seed(400)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "preg")
    return cht, receiver, folder, name


def pregnancies(cht) -> dict[str, dict]:
    return {d["_id"]: d for d in cht.all_docs() if d.get("type") == "data_record" and d.get("form") == "pregnancy"}


def test_first_run_sends_every_relevant_doc_once_and_a_second_run_sends_nothing(world, monkeypatch):
    cht, receiver, folder, name = world
    expected = pregnancies(cht)
    assert len(expected) > 50

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    items = received(receiver)
    ids = Counter(item["payload"]["report_id"] for item in items)
    assert set(ids) == set(expected)
    assert set(ids.values()) == {1}
    assert summary["sent"] == len(expected) and summary["failed"] == 0 and summary["relevant"] == len(expected)
    assert summary["batches"] >= 4  # 400+ changes in pages of 100

    # Hydrated values made it into the payloads exactly as CHT would hydrate them.
    sample = next(i["payload"] for i in items)
    report = expected[sample["report_id"]]
    assert sample["patient"]["cht_id"] == report["fields"]["patient_uuid"]
    assert sample["chw"]["id"] == report["contact"]["_id"]
    assert sample["facility"]["name"] == cht.get(report["contact"]["parent"]["_id"])["name"]

    # XCom holds counts and seqs only.
    assert set(summary) == {
        "pipeline", "kind", "dry_run", "read", "skipped_design", "skipped_info", "tombstones", "filtered",
        "relevant", "mapped", "sent", "unchanged", "skipped", "retried", "request_retries", "failed",
        "dead_lettered", "closed", "deleted", "batches", "start_seq", "last_seq", "lag_seconds", "seconds",
        "waiting", "budget_left",
    }  # fmt: skip
    assert summary["waiting"] == 0 and summary["budget_left"] is None  # no request budget on a REST destination
    # Lag: now minus the reported date of the newest delivered document.
    newest_s = max(d["reported_date"] for d in expected.values()) / 1000
    assert abs(summary["lag_seconds"] - (time.time() - newest_s)) < 120
    assert summary["skipped_design"] == 1 and summary["skipped_info"] > 0 and summary["tombstones"] > 0

    store = state_store()
    row = store.ledger(name, sample["report_id"])
    assert row["status"] == "delivered" and row["response_status"] == 201 and row["attempts"] == 1
    assert row["destination_id"].startswith("rcv-") and len(row["delivered_hash"]) == 64
    assert store.checkpoint(name) == cht.last_seq()

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["read"] == 0 and summary["sent"] == 0
    assert len(received(receiver)) == len(items)
    assert receiver.stats()["duplicates"] == 0


def test_editing_a_mapped_field_resends_that_doc_only_and_an_unmapped_edit_sends_nothing(world, monkeypatch):
    cht, receiver, folder, name = world
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    before = len(received(receiver))
    mapped_edit, unmapped_edit = list(pregnancies(cht).values())[:2]
    mapped_edit["fields"]["anc_visits"] += 5
    unmapped_edit["fields"]["notes"] = "seen at home"
    cht.put(mapped_edit, unmapped_edit)

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert (summary["read"], summary["relevant"], summary["sent"], summary["unchanged"]) == (2, 2, 1, 1)
    new = received(receiver)[before:]
    assert [i["payload"]["report_id"] for i in new] == [mapped_edit["_id"]]
    assert new[0]["payload"]["anc_visits"] == mapped_edit["fields"]["anc_visits"]
    row = state_store().ledger(name, mapped_edit["_id"])
    assert row["attempts"] == 2 and row["doc_rev"].startswith(str(int(mapped_edit["_rev"].split("-")[0]) + 1) + "-")


def test_a_doc_that_fails_its_mapping_is_recorded_with_its_reason_while_the_others_arrive(world, monkeypatch):
    cht, receiver, folder, name = world
    broken = dict(next(iter(pregnancies(cht).values())))
    broken.pop("_rev")
    broken["_id"] = "broken-pregnancy"
    broken["fields"] = {k: v for k, v in broken["fields"].items() if k != "lmp_date"}
    cht.put(broken)

    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["failed"] == 0 and summary["sent"] == len(pregnancies(cht)) - 1
    assert "broken-pregnancy" not in {i["payload"]["report_id"] for i in received(receiver)}
    row = state_store().ledger(name, "broken-pregnancy")
    # the same revision would fail the same way: a dead letter at once, until the doc or mapping changes
    assert summary["dead_lettered"] == 1 and row["status"] == "dead" and row["delivered_hash"] is None
    assert row["last_error"] == (
        f"Mapping error for '{name}/lmp_date' on source document 'broken-pregnancy': "
        "cannot find 'doc.fields.lmp_date' on source document"
    )


def test_the_checkpoint_does_not_move_past_a_batch_that_was_not_handled(world, monkeypatch):
    cht, receiver, folder, name = world
    fast = {"backoff_seconds": 0.01, "max_backoff_seconds": 0.05}
    write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db}, delivery=fast)
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    store = state_store()
    first_checkpoint = store.checkpoint(name)
    template = next(iter(pregnancies(cht).values()))
    new_docs = [{**{k: v for k, v in template.items() if k != "_rev"}, "_id": f"new-preg-{i:03d}"} for i in range(250)]
    cht.put(*new_docs)
    handled_seq = cht.last_seq(since=first_checkpoint, limit=100)

    # The receiver goes away after the first batch of the next run: connection refused.
    real_send = RestDestination.send
    calls = []

    def send_then_stop(self, deliveries):
        results = real_send(self, deliveries)
        calls.append(len(deliveries))
        receiver.stop()
        return results

    monkeypatch.setattr(RestDestination, "send", send_then_stop)
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    assert len(calls) == 1
    assert store.checkpoint(name) == handled_seq  # batch 1 recorded; batch 2 not handled, not passed
    rows = [store.ledger(name, f"new-preg-{i:03d}") for i in range(250)]
    assert sum(1 for r in rows if r and r["status"] == "delivered") == 100
    assert all(r["status"] == "failed" for r in rows[100:] if r)  # tried before the breaker opened: pending

    monkeypatch.setattr(RestDestination, "send", real_send)
    port = int(receiver.url.rsplit(":", 1)[1])
    with Receiver(receiver.received_path.parent, port=port, credentials=receiver.credentials) as back:
        state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] == 150
    counts = Counter(i["payload"]["report_id"] for i in received(back))
    assert all(counts[d["_id"]] == 1 for d in new_docs)
    assert store.checkpoint(name) == cht.last_seq()


def test_batch_mode_sends_arrays_with_per_item_idempotency_keys(world, monkeypatch):
    cht, receiver, folder, name = world
    destination = {
        "conn_id": "receiver_test",
        "path": "/batch",
        "auth": {"type": "basic"},
        "mode": "batch",
        "batch_size": 40,
    }
    write_pipeline(folder, name, cht={"conn_id": "cht_test", "db": cht.db}, destination=destination)
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    expected = pregnancies(cht)
    stats = receiver.stats()
    assert stats["items"] == len(expected) == summary["sent"]
    assert stats["requests"] < len(expected) / 10  # arrays, not one request per document
    keys = [i["key"] for i in received(receiver)]
    assert len(set(keys)) == len(keys) == len(expected)
    assert all(state_store().ledger(name, doc_id)["status"] == "delivered" for doc_id in expected)


def test_wrong_cht_password_fails_fast_naming_the_connection(world, monkeypatch, capfd):
    cht, receiver, folder, name = world
    wrong = "not-the-password-" + uuid.uuid4().hex
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection(password=wrong))
    from cht_bridge.cht.couch import CouchClient

    requests_made = []
    real = CouchClient.request_json

    def counting(self, method, url, **kwargs):
        requests_made.append(url)
        return real(self, method, url, **kwargs)

    monkeypatch.setattr(CouchClient, "request_json", counting)
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    assert len(requests_made) <= 2
    text = "".join(capfd.readouterr())
    assert "refused the credentials of Airflow connection 'cht_test' (HTTP 401)" in text
    assert wrong not in text
    assert receiver.stats()["requests"] == 0


def test_wrong_destination_password_stops_the_run_without_recording_failures(world, monkeypatch, capfd):
    cht, receiver, folder, name = world
    receiver.credentials = {**receiver.credentials, "password": "wrong-" + uuid.uuid4().hex}
    monkeypatch.setenv("AIRFLOW_CONN_RECEIVER_TEST", receiver_connection(receiver))
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    text = "".join(capfd.readouterr())
    assert "refused the credentials of Airflow connection 'receiver_test' (HTTP 401)" in text
    assert receiver.credentials["password"] not in text
    assert state_store().checkpoint(name) is None
    assert receiver.stats()["unauthorized"] == 1  # the first request goes alone; nothing after the refusal
    assert state_store().counts(name) == {}
