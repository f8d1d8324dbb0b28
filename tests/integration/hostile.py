"""A small hostile HTTP server on 127.0.0.1 for the hardening tests: it records every request
(path and headers) and answers by path, as a careless or malicious upstream would.

Paths (any query is ignored):

* ``/trickle``: 200 with a small JSON body sent one byte every 0.1 s (about 3 s in all);
* ``/stall``: 200, headers and the first byte, then nothing for 3 s, then the rest;
* ``/huge``: 200 with an 8 MiB JSON body (a 2 GB answer, scaled down);
* ``/huge-error``: 500 with the same 8 MiB body;
* ``/redirect``: 302 to ``server.location`` (set by the test);
* ``/fhir/Patient`` or ``/Patient``: an empty searchset Bundle with a self link, and
  ``server.next_link`` as its ``next`` link unless the query has ``_page`` (so paging ends);
* ``/created``: 201 ``{}`` with ``server.location`` as ``Location``;
* anything else: 201 ``{"id": "x1", "ok": true}``.

Every answer to a write or a read is the same; the tests decide what each one proves.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time

HUGE = 8 * 1024 * 1024
TRICKLE = b'{"db_name": "medic", "pad": "' + b"x" * 2 + b'"}'


class Hostile:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # (method, path, lower-cased headers)
        self.location: str | None = None
        self.next_link: str | None = None
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - stdlib naming
                self._answer()

            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

            def _answer(self):
                owner.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                path = self.path.split("?", 1)[0]
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up on purpose
                    getattr(self, "_" + path.strip("/").replace("/", "_").replace("-", "_"), self._default)()

            def _head(self, status: int, length: int, **headers: str):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()

            def _trickle(self):
                self._head(200, len(TRICKLE))
                for i in range(len(TRICKLE)):
                    self.wfile.write(TRICKLE[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.1)

            def _stall(self):
                self._head(200, len(TRICKLE))
                self.wfile.write(TRICKLE[:1])
                self.wfile.flush()
                time.sleep(3)
                self.wfile.write(TRICKLE[1:])

            def _huge(self, status: int = 200):
                head, tail = b'{"pad": "', b'"}'
                self._head(status, HUGE)
                self.wfile.write(head)
                block = b"x" * 65536
                left = HUGE - len(head) - len(tail)
                while left > 0:
                    self.wfile.write(block[: min(left, len(block))])
                    left -= len(block)
                self.wfile.write(tail)

            def _huge_error(self):
                self._huge(500)

            def _redirect(self):
                self._head(302, 0, Location=owner.location or "/")

            def _fhir_Patient(self):  # noqa: N802 - the resource's name
                port = self.server.server_address[1]
                path, _, query = self.path.partition("?")
                links = [{"relation": "self", "url": f"http://127.0.0.1:{port}{path}?_count=1"}]
                if owner.next_link and "_page" not in query:
                    links.append({"relation": "next", "url": owner.next_link})
                body = json.dumps({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": []}).encode()
                self._head(200, len(body))
                self.wfile.write(body)

            _Patient = _fhir_Patient  # noqa: N815 - a FHIR server at the root

            def _created(self):
                self._head(201, 2, Location=owner.location or "/")
                self.wfile.write(b"{}")

            def _default(self):
                body = b'{"id": "x1", "ok": true}'
                self._head(201, len(body))
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Hostile:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
