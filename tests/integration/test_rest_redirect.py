"""A destination that redirects is a misconfigured URL, not a delivery."""

from __future__ import annotations

import http.server
import threading

import pytest
import requests

from cht_bridge.destinations import Delivery, RestDestination

pytestmark = pytest.mark.integration


class _Redirecting(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(301)
        self.send_header("Location", "https://elsewhere.example/ingest")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802 - what requests would turn the redirected POST into
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_a_redirect_is_a_failure_that_names_the_new_location():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        dest = RestDestination(requests.Session(), url, "/ingest", conn_id="emr", mode="single", concurrency=1)
        (result,) = dest.send([Delivery("doc-1", '{"id": "doc-1"}', "k1")])
        dest.close()
    finally:
        server.shutdown()
    assert not result.ok and result.status == 301
    assert result.error == "HTTP 301: redirected to https://elsewhere.example/ingest; fix the connection's URL"
