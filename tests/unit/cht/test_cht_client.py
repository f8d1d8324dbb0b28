"""The CHT clients' public API against a small local server answering as CouchDB and CHT do."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from cht_bridge.cht import ChtApiClient, CouchClient, WriteError
from cht_bridge.cht.couch import on_this_machine
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.http.retry import RetryPolicy

NO_RETRY = RetryPolicy(retries=0, backoff_s=0.01, max_backoff_s=0.01)
ANSWERS = {
    ("GET", "/medic"): (200, {"db_name": "medic", "doc_count": 3}),
    ("GET", "/locked"): (401, {"error": "unauthorized"}),
    ("GET", "/missing"): (404, {"error": "not_found", "reason": "missing"}),
    ("POST", "/api/v1/people"): (
        500,
        {"code": 500, "error": "Server error", "details": "Missing required field: name"},
    ),
    ("POST", "/api/v2/records"): (503, "upstream busy\n"),
    ("POST", "/api/v1/person"): (201, {"_id": "p1"}),
}


@pytest.fixture(scope="module")
def cht():
    seen: list[tuple[str, str, str | None]] = []
    encodings: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.append((method, self.path, self.headers.get("Authorization")))
            encodings.append(self.headers.get("Accept-Encoding"))
            status, body = ANSWERS.get((method, self.path.split("?")[0]), (404, {"error": "not_found"}))
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    server.seen = seen
    server.encodings = encodings
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()


def test_reads_go_through_the_public_session_and_reader(cht):
    client = CouchClient(cht.url, "medic", ("bridge", "pw"), conn_id="cht_c", retry=NO_RETRY)
    assert client.info()["doc_count"] == 3
    assert client.request_json("GET", f"{cht.url}/medic") == {"db_name": "medic", "doc_count": 3}
    assert client.reader().requests == 2
    assert cht.seen[-1][2].startswith("Basic ")
    assert client.session() is client.session()  # one session per thread...
    other = []
    worker = threading.Thread(target=lambda: other.append(client.session()))
    worker.start()
    worker.join()
    assert other[0] is not client.session()  # ...and another for a prefetching thread


def test_read_errors_keep_their_types(cht):
    client = CouchClient(cht.url, "locked", None, conn_id="cht_c", retry=NO_RETRY)
    with pytest.raises(AuthError, match="'cht_c'"):
        client.info()
    missing = CouchClient(cht.url, "missing", None, conn_id="cht_c", retry=NO_RETRY)
    with pytest.raises(SourceError, match="HTTP 404: not_found") as caught:
        missing.info()
    assert caught.value.status == 404


def test_the_api_client_reads_like_the_couch_client_and_writes_once(cht):
    api = ChtApiClient(cht.url, "medic", ("bridge", "pw"), conn_id="cht_api", retry=NO_RETRY)
    assert isinstance(api, CouchClient) and api.info()["db_name"] == "medic"
    assert api.create_person({"name": "A", "parent": "hc1"}, api="v1_person") == "p1"


def test_cht_validation_errors_are_final_and_busy_answers_retryable(cht):
    api = ChtApiClient(cht.url, "medic", None, conn_id="cht_api", retry=NO_RETRY)
    with pytest.raises(WriteError) as refused:
        api.create_person({"name": "A", "parent": "hc1"})
    assert str(refused.value) == "HTTP 500 on POST /api/v1/people: Missing required field: name"
    assert refused.value.retryable is False
    before = len(cht.seen)
    with pytest.raises(WriteError) as busy:
        api.create_report({"_meta": {"form": "X"}})
    assert str(busy.value) == "HTTP 503 on POST /api/v2/records: upstream busy"
    assert busy.value.retryable is True
    assert len(cht.seen) == before + 1  # a write is never repeated here


def test_a_couchdb_on_this_machine_is_read_uncompressed_and_a_remote_one_with_gzip(cht):
    client = CouchClient(cht.url, "medic", conn_id="cht_local", retry=NO_RETRY)
    assert client.info()["db_name"] == "medic"
    assert cht.encodings[-1] == "identity"
    for url in ("http://localhost:5984", "http://127.0.0.2:5984", "http://[::1]:5984/", "http://LOCALHOST.:5984"):
        assert on_this_machine(url), url
        assert CouchClient(url).session().headers["Accept-Encoding"] == "identity"
    for url in ("https://cht.example.org", "http://10.0.0.5:5984", "http://localhost.example.org", "http://[::2]/"):
        assert not on_this_machine(url), url
        assert "gzip" in CouchClient(url).session().headers["Accept-Encoding"]
