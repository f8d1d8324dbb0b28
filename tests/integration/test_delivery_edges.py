"""Edge cases of delivery found in review: keys that must survive a retry, a delete that must not
win over a restore, an answer that must not hide a refused login, and a backfill page boundary
that must not lose a report."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
import requests

from cht_bridge.cht import CouchClient
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.source import Hydrator, iter_reports_by_date
from cht_bridge.sync import run_pipeline
from standins.receiver import Receiver
from tests.conftest import received, receiver_connection
from tests.integration.dagrun import new_pipeline, run_dag, state_store

pytestmark = pytest.mark.integration

FAST = {"retries": 0, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "breaker_after": 1000}


def pregnancies(cht) -> dict[str, dict]:
    return {d["_id"]: d for d in cht.all_docs() if d.get("form") == "pregnancy"}


def test_a_backfill_resend_that_failed_is_retried_with_its_own_key(cht, receiver, monkeypatch, airflow_db, tmp_path):
    """Mode ``all`` uses new keys; if it fails, the next run's retry must repeat those keys, not
    fall back to the original ones (which the receiver would drop as already seen)."""
    cht.seed(300)
    folder, name = new_pipeline(monkeypatch, tmp_path, cht, receiver_connection(receiver), "salt", delivery=FAST)
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    first_keys = {item["payload"]["report_id"]: item["key"] for item in received(receiver)}

    receiver.configure(fail_rate=1.0, fail_kinds=("503",))
    state, summary = run_dag(
        monkeypatch, folder, name, conf={"start": "2025-01-01", "end": "2027-01-01", "mode": "all"}
    )
    assert state == "success" and summary["failed"] == len(first_keys)
    store = state_store()
    salted = {doc_id: store.ledger(name, doc_id)["idempotency_key"] for doc_id in first_keys}
    assert all(salted[d] != first_keys[d] for d in first_keys)

    receiver.configure(fail_rate=0.0)
    before = len(received(receiver))
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["retried"] == summary["sent"] == len(first_keys)
    resent = {item["payload"]["report_id"]: item["key"] for item in received(receiver)[before:]}
    assert resent == salted  # stored as new by the receiver, under the backfill's own keys


class _Emr(http.server.BaseHTTPRequestHandler):
    """Creates records (201 with an id) and answers deletes with whatever the test scripts."""

    delete_status = 503
    seen: list[tuple[str, str]] = []

    def _answer(self, status: int, body: dict | None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - stdlib naming
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(("POST", payload["report_id"]))
        self._answer(201, {"id": "emr-" + payload["report_id"]})

    def do_DELETE(self):  # noqa: N802 - stdlib naming
        type(self).seen.append(("DELETE", self.path))
        status = type(self).delete_status
        self._answer(status, None if status == 204 else {"error": "not now" if status >= 500 else "no such record"})

    def log_message(self, *args):
        pass


@pytest.fixture
def emr():
    handler = type("Emr", (_Emr,), {"seen": [], "delete_status": 503})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _deletes_pipeline(cht, monkeypatch, tmp_path, url):
    return new_pipeline(
        monkeypatch, tmp_path, cht, json.dumps({"conn_type": "http", "host": url}), "del", delivery=FAST,
        destination={"conn_id": "receiver_test", "path": "/emr/anc"},
        deletes={"action": "send", "path": "/emr/anc/{destination_id}"},
    )  # fmt: skip


def test_a_document_restored_while_its_delete_is_pending_is_sent_and_not_deleted(
    cht, emr, monkeypatch, airflow_db, tmp_path
):
    handler, url = emr
    cht.seed(200)
    folder, name = _deletes_pipeline(cht, monkeypatch, tmp_path, url)
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    doc = next(iter(pregnancies(cht).values()))
    cht.put({**doc, "_deleted": True})
    assert run_dag(monkeypatch, folder, name)[0] == "success"  # DELETE → 503: pending
    store = state_store()
    assert (store.ledger(name, doc["_id"])["status"], store.ledger(name, doc["_id"])["operation"]) == (
        "failed",
        "delete",
    )

    cht.put({k: v for k, v in doc.items() if k != "_rev"})  # restored with the same content, a new revision
    handler.seen.clear()
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    assert ("POST", doc["_id"]) in handler.seen  # the restored record is sent again
    row = store.ledger(name, doc["_id"])
    assert (row["status"], row["operation"]) == ("delivered", "upsert")

    handler.delete_status = 204
    handler.seen.clear()
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    assert handler.seen == []  # the old delete is not sent after the restore
    assert store.ledger(name, doc["_id"])["status"] == "delivered"


def test_a_delete_answered_404_is_done(cht, emr, monkeypatch, airflow_db, tmp_path):
    handler, url = emr
    handler.delete_status = 404  # e.g. a retry whose first attempt went through, answer lost
    cht.seed(200)
    folder, name = _deletes_pipeline(cht, monkeypatch, tmp_path, url)
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    doc = next(iter(pregnancies(cht).values()))
    cht.put({**doc, "_deleted": True})
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["deleted"] == 1 and summary["dead_lettered"] == 0
    assert ("DELETE", f"/emr/anc/emr-{doc['_id']}") in handler.seen
    assert state_store().ledger(name, doc["_id"])["status"] == "deleted"


def test_a_refused_login_is_not_hidden_by_a_cht_error_in_the_same_moment(cht, monkeypatch, tmp_path):
    """The destination refuses the credentials while the next CHT page fails: the task must stop
    as for a refused login (no Airflow retry), not as for a CHT outage."""
    from cht_bridge.config import parse_pipeline
    from cht_bridge.destinations import RestDestination
    from cht_bridge.state import StateStore

    cht.seed(300)

    class Slow401(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - stdlib naming
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.5)  # long enough for the next page to fail first
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow401)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class SecondPageFails(CouchClient):
        def changes_text(self, since, limit):
            if since not in (0, "0"):
                raise SourceError(f"CHT connection '{self.conn_id}': ConnectionError on GET /_changes")
            return super().changes_text(since, limit)

    config = {
        "name": "auth_first", "start_date": "2026-01-01", "cht": {"conn_id": "cht_test", "db": cht.db},
        "relevant_to": "doc.type === 'data_record'", "mapping": {"id": "doc._id"},
        "destination": {"conn_id": "emr", "path": "/in"}, "batch_size": 100,
    }  # fmt: skip
    pipeline = parse_pipeline(config, file="test")
    client = SecondPageFails(cht.url, cht.db, cht.user, conn_id="cht_test")
    destination = RestDestination(
        requests.Session(), f"http://127.0.0.1:{server.server_address[1]}", "/in", conn_id="emr"
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with pytest.raises(AuthError) as err:
            run_pipeline(pipeline, client=client, destination=destination, store=store)
        assert isinstance(err.value.__cause__, SourceError)  # both are in the traceback
        assert store.checkpoint("auth_first") is None
    finally:
        destination.close()
        store.close()
        server.shutdown()


def test_a_backfill_page_boundary_loses_no_report_when_the_boundary_report_is_deleted(cht):
    cht.seed(300)
    start, end = 0, int(time.time() * 1000)
    expected = {d["_id"] for d in cht.all_docs() if d.get("type") == "data_record" and d.get("form")}
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    hydrator = Hydrator(client)
    seen: list[str] = []
    pages = 0

    def load(text: str, after):
        nonlocal pages
        page = hydrator.load_page(text, json.dumps({"after": after}) if after else None)
        pages += 1
        if pages == 1:  # the row the next page starts from disappears before it is read
            last = cht.get(page.ids[-1])
            cht.put({**last, "_deleted": True})
        seen.extend(page.ids)
        return page

    for _ in iter_reports_by_date(client, start, end, 25, load):
        pass
    assert pages > 3
    assert sorted(seen) == sorted(expected)  # every report once: none skipped, none twice


def test_a_pending_document_deleted_or_no_longer_relevant_is_closed_not_dead(cht, monkeypatch, airflow_db, tmp_path):
    """Nothing is left to send for them, so they leave the retries without waiting for a person."""
    cht.seed(200)
    rx = Receiver(tmp_path / "rx", credentials={"username": "u", "password": "p"}, reject_field="flag",
                  reject_status=503).start()  # fmt: skip
    rx.credentials = {"username": "u", "password": "p"}
    try:
        mapping = {"report_id": "doc._id", "flag": {"path": "doc.fields.flag", "optional": True}}
        folder, name = new_pipeline(
            monkeypatch, tmp_path, cht, receiver_connection(rx), "closed", mapping=mapping, delivery=FAST
        )
        gone, moved = list(pregnancies(cht).values())[:2]
        for doc in (gone, moved):
            cht.put({**cht.get(doc["_id"]), "fields": {**doc["fields"], "flag": "busy"}})
        state, summary = run_dag(monkeypatch, folder, name)
        assert state == "success" and summary["failed"] == 2

        cht.put({**cht.get(gone["_id"]), "_deleted": True})
        cht.put({**cht.get(moved["_id"]), "form": "delivery"})  # no longer relevant to this pipeline
        state, summary = run_dag(monkeypatch, folder, name)
        assert state == "success" and summary["retried"] == 2 and summary["closed"] == 2
        store = state_store()
        assert store.ledger(name, gone["_id"])["last_error"].startswith("the document was deleted from CHT")
        assert "no longer relevant" in store.ledger(name, moved["_id"])["last_error"]
        assert {store.ledger(name, d["_id"])["status"] for d in (gone, moved)} == {"closed"}
        assert store.pending(name) == [] and store.select(name) == []  # not retried, not a dead letter
    finally:
        rx.stop()
