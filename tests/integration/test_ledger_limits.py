"""Ids too long for the ledgers' columns are refused before anything is sent or written to CHT, and
reasons are stored and logged as one line: on SQLite (which stores any length) and on PostgreSQL
(which refuses a longer value at the write, after the batch was delivered)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import uuid

import pytest
import requests

from cht_bridge.state import StateStore
from cht_bridge.state.store import short_id

pytestmark = pytest.mark.integration

LONG_ID = "report-" + "x" * 293  # 300 characters: CouchDB takes it, the ledger's doc_id holds 255
FORGED = "no such facility\n2026-12-04 20:00:00,000 INFO cht_bridge.sync - pipeline p: all documents delivered"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        from cht_bridge.hooks.state import sqlalchemy_url

        url = sqlalchemy_url(request.getfixturevalue("postgres_url"))
    s = StateStore(url)
    yield s
    s.close()


class _Emr(http.server.BaseHTTPRequestHandler):
    """Creates records; answers one with a 300-character id and refuses one with a two-line reason."""

    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - stdlib naming
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(payload["id"])
        status, body = 201, {"id": "emr-" + payload["id"]}
        if payload["id"].startswith("long-answer"):
            body = {"id": "E" * 300}
        elif payload["id"].startswith("refused"):
            status, body = 422, {"error": FORGED}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def emr():
    _Emr.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Emr)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _run(cht, emr, store, name):
    from cht_bridge.cht import CouchClient
    from cht_bridge.config import parse_pipeline
    from cht_bridge.destinations import RestDestination
    from cht_bridge.sync import run_pipeline

    config = {
        "name": name, "start_date": "2026-01-01", "cht": {"conn_id": "cht_test", "db": cht.db},
        "relevant_to": "doc.type === 'data_record'", "mapping": {"id": "doc._id"},
        "destination": {"conn_id": "emr", "path": "/in"}, "batch_size": 100,
        "delivery": {"retries": 0, "backoff_seconds": 0.01},
    }  # fmt: skip
    destination = RestDestination(requests.Session(), emr, "/in", conn_id="emr")
    try:
        return run_pipeline(
            parse_pipeline(config, file="test"),
            client=CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test"),
            destination=destination,
            store=store,
        )
    finally:
        destination.close()


def test_a_too_long_document_id_is_refused_before_sending_and_the_batch_is_recorded(cht, emr, store, caplog):
    report = {"type": "data_record", "form": "x", "reported_date": 1767225600000}
    cht.put(
        {"_id": "ok-1", **report},
        {"_id": LONG_ID, **report},
        {"_id": "long-answer-1", **report},
        {"_id": "refused-1", **report},
    )
    name = f"limits_{uuid.uuid4().hex[:8]}"
    with caplog.at_level(logging.INFO, logger="cht_bridge"):
        summary = _run(cht, emr, store, name)

    assert sorted(_Emr.seen) == ["long-answer-1", "ok-1", "refused-1"]  # the long id never left
    assert (summary.sent, summary.dead_lettered, summary.failed) == (2, 2, 0)
    assert store.checkpoint(name) is not None  # the batch was recorded, checkpoint and all
    dead = store.ledger(name, short_id(LONG_ID))
    assert dead["status"] == "dead" and "cannot hold the document's id (300 characters" in dead["last_error"]
    answered = store.ledger(name, "long-answer-1")
    assert (answered["status"], answered["destination_id"]) == ("delivered", None)
    refused = store.ledger(name, "refused-1")
    assert refused["status"] == "dead" and refused["last_error"].startswith("HTTP 422: no such facility 2026-12-04")
    assert "\n" not in refused["last_error"]

    logged = [r.getMessage() for r in caplog.records if r.name.startswith("cht_bridge")]
    assert any("refused-1 failed: HTTP 422: no such facility 2026-12-04" in m for m in logged)
    assert not any("\n" in m or "\r" in m for m in logged)  # no forged line
    assert not any(LONG_ID in m for m in logged) and any(short_id(LONG_ID) in m for m in logged)

    again = _run(cht, emr, store, name)  # nothing new is sent, nothing is sent twice
    assert again.sent == 0 and sorted(_Emr.seen) == ["long-answer-1", "ok-1", "refused-1"]


def test_a_list_record_with_a_too_long_id_is_refused_at_receive(store, tmp_path):
    from cht_bridge.mapping import Mapper
    from cht_bridge.reverse.loader import load_reverse_pipeline
    from cht_bridge.reverse.run import receive
    from cht_bridge.reverse.sources.csv_folder import CsvFolderSource
    from cht_bridge.state.inbound import FAILED, RECEIVED, InboundLedger
    from tests.integration.reverse_setup import csv_pipeline, place_table

    lists = tmp_path / "lists"
    lists.mkdir()
    long_id = "c-" + "9" * 298
    (lists / "contacts.csv").write_text(
        f"contact_id,given_name,index_case_id\nc-1,Achieng,case-9\n{long_id},Brian,case-9\nc-3,Mary,case-9\n"
    )
    path, name = csv_pipeline(tmp_path / "reverse", lists, place_table(tmp_path / "places.csv"))
    pipeline = load_reverse_pipeline(path)
    mapper = Mapper(pipeline.name, pipeline.relevant_to, pipeline.mapping, source=pipeline.file)
    ledger = InboundLedger(store)
    try:
        counts = receive(pipeline, CsvFolderSource(lists, id_column="contact_id"), mapper, ledger).counts
    finally:
        mapper.close()
    assert (counts["received"], counts["refused_id"]) == (2, 1)
    assert [r.source_id for r in ledger.rows(name, [RECEIVED])] == ["c-1", "c-3"]
    [refused] = ledger.rows(name, [FAILED])
    assert refused.source_id == short_id(long_id, 255) and refused.record is None
    assert "cannot hold the record's id (300 characters" in refused.reason


def test_ids_with_a_nul_or_a_lone_surrogate_neither_break_a_lookup_nor_a_write(store):
    """PostgreSQL's driver refuses such strings in any query: a lookup must skip them, a write keep
    the delivery without the destination's id."""
    from cht_bridge.state import Outcome
    from cht_bridge.state.inbound import InboundLedger
    from cht_bridge.state.store import refusal

    name = f"nul_{uuid.uuid4().hex[:8]}"
    odd = ["a\x00b", "\ud800c"]
    assert store.states(name, ["ok", *odd]) == {}
    assert InboundLedger(store).seen(name, [(i, "1") for i in odd]) == set()
    outcomes = [Outcome("ok", "1-a", True, "h", 201, destination_id="emr\x001"), *(refusal(i, "1-a") for i in odd)]
    assert store.record(name, outcomes, checkpoint=3) == {"delivered": 1, "dead": 2}
    assert store.ledger(name, "ok")["destination_id"] is None and store.checkpoint(name) == 3
    assert {r["doc_id"] for r in store.failures(name)} == {short_id(i) for i in odd}
