"""``bench.local_cht`` over HTTP: CouchDB's answers from the SQLite file, for runs in other processes.

For benchmarks only: never for tests of the bridge's behaviour (they use pouchdb-server, the
project's real CouchDB-protocol server) and never in the demo or the sandbox.

Why: the split backfill of a million documents (``bench.cluster --server sqlite``) runs in Celery
workers, which read CHT over HTTP. pouchdb-server would need about 20 minutes to load the million
and about an hour to build ``reports_by_date`` on this machine; this answers the same reads, with
CouchDB's URLs, shapes and semantics (``bench.local_cht`` says which), from an indexed SQLite file
loaded in minutes. It is a benchmark's stand-in, not CHT: only the requests ``cht.couch.CouchClient``
makes in a backfill or a changes run, as it makes them:

- ``GET /<db>``: ``db_name`` and ``doc_count`` (what ``CouchClient.info`` proves credentials with);
- ``GET /<db>/_changes?since=&limit=`` (documents always included; ``seq`` = load order, an integer
  as pouchdb-server's; tombstones with ``"deleted": true``);
- ``GET /<db>/_design/medic-client/_view/reports_by_date`` (``startkey``, ``startkey_docid``,
  ``endkey``, ``limit``, with ``inclusive_end=false`` and documents; no ``total_rows``/``offset``,
  which the reader does not read);
- ``GET /<db>/_design/medic-client/_view/contacts_by_reference?keys=`` (rows key by key, in the order
  asked, values the contacts' ``reported_date``);
- ``POST /<db>/_all_docs?include_docs=true`` with ``{"keys": [...]}`` (``not_found`` and deleted rows
  as CouchDB's).

Any other database or path is 404; any other view or query 400 (a benchmark must not ask one). Basic auth with one
login; 401 otherwise. Nothing is logged but method, path and status.
``tests/integration/test_bench_cht_server.py`` compares every one of these answers with
pouchdb-server's for the same documents, and a backfill and a changes DAG run against each.
"""

from __future__ import annotations

import base64
import hmac
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from bench.local_cht import LocalCht
from standins.http_server import BackgroundHttpServer, StandInHandler

MAX_BODY = 8 * 1024 * 1024


class LocalChtServer(BackgroundHttpServer):
    """Serves a ``bench.local_cht.load``-ed file as the database ``db``."""

    thread_name = "local-cht"

    def __init__(self, path: Path, login: tuple[str, str], db: str = "medic", port: int = 0) -> None:
        super().__init__(port=port)
        self.cht = LocalCht(path)
        self.db = db
        self.expected = "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(StandInHandler):
            server_version = "bench-local-cht/1"

            def _answer(self, status: int, text: str) -> None:
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                if not hmac.compare_digest(self.headers.get("Authorization") or "", server.expected):
                    return self._answer(401, '{"error":"unauthorized"}')
                url = urlsplit(self.path)
                parts = [unquote(p) for p in url.path.strip("/").split("/")]
                query = dict(parse_qsl(url.query))
                if not parts or parts[0] != server.db:
                    return self._answer(404, '{"error":"not_found","reason":"Database does not exist."}')
                rest = parts[1:]
                try:
                    if method == "GET" and not rest:
                        return self._answer(200, json.dumps(server.cht.info(server.db)))
                    if method == "GET" and rest == ["_changes"]:
                        return self._answer(200, server.cht.changes_text(query.get("since"), int(query["limit"])))
                    if method == "GET" and rest[:1] == ["_design"] and len(rest) == 4 and rest[2] == "_view":
                        if "keys" in query:
                            keys = json.loads(query["keys"])
                            ((_, text),) = list(server.cht.view_texts(rest[1], rest[3], keys))
                            return self._answer(200, text)
                        return self._answer(200, server.cht.view_text(rest[1], rest[3], query))
                    if method == "POST" and rest == ["_all_docs"]:
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > MAX_BODY:
                            return self._answer(413, '{"error":"too_large"}')
                        body: Any = json.loads(self.rfile.read(length) or b"{}")
                        return self._answer(200, server.cht.all_docs_text(list(body["keys"])))
                except NotImplementedError as exc:
                    return self._answer(400, json.dumps({"error": "bad_request", "reason": str(exc)}))
                return self._answer(404, '{"error":"not_found"}')

            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                self._route("POST")

        return Handler
