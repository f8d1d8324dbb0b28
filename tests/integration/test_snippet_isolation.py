"""One snippet cannot harm the others, and an unreadable page is a clear error (issue 9, items 4
and 5), against a real local CouchDB-protocol server, a real V8 sandbox, and hostile CouchDB
stand-ins on 127.0.0.1."""

from __future__ import annotations

import json

import pytest
import requests

from cht_bridge.cht import CouchClient
from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import RestDestination
from cht_bridge.errors import SourceError
from cht_bridge.mapping import Mapper
from cht_bridge.mapping.engine import ScriptStalled
from cht_bridge.source import Hydrator
from cht_bridge.state import DEAD, FAILED, Outcome, StateStore
from cht_bridge.sync import run_pipeline
from cht_bridge.v8 import Sandbox
from standins.http_server import BackgroundHttpServer, StandInHandler
from tests.integration.test_hydration import CHW_LINEAGE, client_for, report, store, world  # noqa: F401

pytestmark = pytest.mark.integration

SECRET = "Achieng Otieno +254712345678"


class _Server(BackgroundHttpServer):
    """A stand-in on 127.0.0.1 answering every request with ``body`` (bytes, sent as they are)."""

    def __init__(self, body: bytes = b"") -> None:
        super().__init__()
        self.body = body

    def handler(self) -> type[StandInHandler]:
        body = self.body

        class Answer(StandInHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815 - stdlib naming

        return Answer


@pytest.fixture
def destination():
    with _Server() as server:  # a destination that takes everything
        dest = RestDestination(requests.Session(), server.url, "/in", conn_id="emr_test")
        yield dest
        dest.close()


@pytest.fixture
def state(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def pipeline(cht, name: str, mapping: dict, **extra) -> object:
    config = {
        "name": name, "start_date": "2026-01-01", "cht": {"conn_id": "cht_test", "db": cht.db if cht else "medic"},
        "relevant_to": "doc.type === 'data_record'", "mapping": mapping,
        "destination": {"conn_id": "emr_test", "path": "/in"}, "batch_size": 50, **extra,
    }  # fmt: skip
    return parse_pipeline(config, file="test")


# -- hydrated parents are each document's own ---------------------------------------------------------


def test_a_snippet_that_changes_a_hydrated_parent_changes_nothing_the_next_document_sees(world):  # noqa: F811
    cht, s = world
    docs = store(cht, *[report(f"r-mut{i}", contact=CHW_LINEAGE) for i in range(3)])
    hydrator = Hydrator(client_for(cht))
    mapper = Mapper(
        "p", "true",
        {"seen": {"expr": "[doc.contact.parent.name, doc.contact.parent.contact.name, doc.contact.parent.parent.contact.name].join('|')"},
         "mutate": {"expr": "(doc.contact.parent.name = 'X', doc.contact.parent.contact.name = 'Y',"
                            " doc.contact.parent.parent.contact.name = 'Z', doc.contact.parent.parent = null, 1)"}},
        sandbox=hydrator.sandbox,
    )  # fmt: skip
    hydrator.hydrate(docs)
    results = mapper.map_loaded([d["_id"] for d in docs])
    expected = "Health Center One|CHW Carol|Supervisor Sue"
    assert [r.payload["seen"] for r in results] == [expected] * 3
    assert hydrator.sandbox.hydrated()[0]["contact"]["parent"]["contact"]["name"] == "CHW Carol"


def test_after_a_timeout_the_rebuilt_sandbox_hydrates_the_rest_of_the_batch(world):  # noqa: F811
    cht, s = world
    docs = store(cht, *[report(f"r-loop{i}", contact=CHW_LINEAGE, fields={"loop": i == 1}) for i in range(4)])
    client = client_for(cht)
    hydrator = Hydrator(client)
    mapper = Mapper(
        "p", "true",
        {"hc": {"expr": "doc.fields.loop ? (function () { while (true) {} })() : doc.contact.parent.contact.name"}},
        timeout_ms=100, sandbox=hydrator.sandbox,
    )  # fmt: skip
    hydrator.hydrate(docs)
    requests_before = hydrator.requests
    results = mapper.map_loaded([d["_id"] for d in docs])
    assert [r.payload for r in results if r.error is None] == [{"hc": "CHW Carol"}] * 3
    assert [r.doc_id for r in results if r.error] == ["r-loop1"] and results[1].retryable
    assert hydrator.sandbox.rebuilds == 2
    assert hydrator.requests > requests_before  # the new isolate's cache was filled again from CHT


# -- timeouts in a run: retried, then dead; a stalled run stops ---------------------------------------


def test_a_document_that_times_out_is_failed_and_retried_then_dead_after_dead_after_runs(
    cht, destination, state, monkeypatch
):
    cht.seed(120)
    target = next(d["_id"] for d in cht.all_docs() if d.get("type") == "data_record")
    loop = "(function () { while (true) {} })()"
    p = pipeline(
        cht, "timeouts", {"id": "doc._id", "x": {"expr": f"doc._id === {json.dumps(target)} ? {loop} : 1"}},
        script_timeout_ms=50, delivery={"dead_after": 2},
    )  # fmt: skip
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    first = run_pipeline(p, client=client, destination=destination, store=state)
    row = state.ledger("timeouts", target)
    assert row["status"] == FAILED and first.failed == 1 and first.dead_lettered == 0
    assert "ran past 50 ms" in row["last_error"]
    second = run_pipeline(p, client=client, destination=destination, store=state)
    assert second.retried == 1 and state.ledger("timeouts", target)["status"] == DEAD


def test_a_run_where_every_document_times_out_stops_and_keeps_its_checkpoint(cht, destination, state):
    cht.seed(120)
    p = pipeline(cht, "stalled", {"x": {"expr": "(function () { while (true) {} })()"}}, script_timeout_ms=20)
    state.record("stalled", [], "0")  # an earlier run's checkpoint
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    with pytest.raises(ScriptStalled, match=r"pipeline 'stalled': 10 of 1\d documents evaluated alone"):
        run_pipeline(p, client=client, destination=destination, store=state)
    assert state.checkpoint("stalled") == "0" and state.counts("stalled") == {}


# -- pages that cannot be read ---------------------------------------------------------------------------

GOOD_ROW = {"seq": "7-a", "id": "r1", "changes": [{"rev": "1-x"}],
            "doc": {"_id": "r1", "_rev": "1-x", "type": "data_record", "fields": {"name": SECRET}}}  # fmt: skip
ANSWERS = {
    "truncated": json.dumps({"results": [GOOD_ROW], "last_seq": "7-a"})[:-40].encode(),
    "not_json": f"<html>proxy error for {SECRET}</html>".encode(),
    "not_utf8": json.dumps({"results": [GOOD_ROW], "last_seq": "7-a"}).encode().replace(b"Achieng", b"\xffchieng"),
    "not_an_object": json.dumps([SECRET]).encode(),
    "rows_not_a_list": json.dumps({"results": {"name": SECRET}, "last_seq": "7-a"}).encode(),
    "no_last_seq": json.dumps({"results": [GOOD_ROW]}).encode(),
}


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_an_unreadable_changes_page_is_a_source_error_naming_the_connection_and_seq_not_the_body(
    kind, destination, state
):
    p = pipeline(None, "hostile", {"id": "doc._id"})
    state.record("hostile", [Outcome("old", "1-a", True, "h")], "5-abc")
    with _Server(ANSWERS[kind]) as couch:
        client = CouchClient(couch.url, "medic", None, conn_id="cht_hostile")
        with pytest.raises(SourceError) as err:
            run_pipeline(p, client=client, destination=destination, store=state)
    text = str(err.value)
    assert "'cht_hostile'" in text and '(the _changes page after seq "5-abc")' in text
    assert "Achieng" not in text and "254712345678" not in text and "chieng" not in text
    assert state.checkpoint("hostile") == "5-abc"  # never moved, never back to null


def test_a_page_too_large_for_the_sandbox_is_a_source_error_and_the_next_page_loads():
    box = Sandbox(max_memory=32 * 1024 * 1024)
    hydrator = Hydrator(CouchClient("http://127.0.0.1:9", "medic", None, conn_id="cht_big"), sandbox=box)
    rows = [
        {
            "seq": i,
            "id": f"d{i}",
            "doc": {"_id": f"d{i}", "type": "person", "name": SECRET, "fields": {f"k{j}": "v" * 20 for j in range(30)}},
        }
        for i in range(20000)
    ]
    try:
        with pytest.raises(SourceError) as err:
            hydrator.load_page(json.dumps({"results": rows, "last_seq": 5}))
        assert str(err.value) == (
            "CHT connection 'cht_big': a page it sent was too large to read within the sandbox's time and memory; "
            "nothing of it was used"
        )
        assert hydrator.load_page(json.dumps({"results": rows[:10], "last_seq": 6})).ids == [f"d{i}" for i in range(10)]
    finally:
        box.close()
