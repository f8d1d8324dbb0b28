"""The destination's ``auth`` presents the Connection's secret as configured, and only that way."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from cht_bridge.config.model import Auth, DestinationConfig
from cht_bridge.destinations import Delivery
from cht_bridge.errors import ConfigError
from cht_bridge.hooks import open_destination_from_connection

pytestmark = pytest.mark.integration


class _Capture(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self):  # noqa: N802 - stdlib naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Capture.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b'{"id": "x1"}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    _Capture.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def send_with(monkeypatch, url: str, auth: Auth, login: str | None = "bridge", password: str | None = "s3cret"):
    conn = {"conn_type": "http", "host": url, "login": login, "password": password}
    monkeypatch.setenv("AIRFLOW_CONN_DEST_AUTH", json.dumps({k: v for k, v in conn.items() if v is not None}))
    dest = open_destination_from_connection(
        DestinationConfig(conn_id="dest_auth", path="/in", auth=auth, concurrency=1), file="p.yaml"
    )
    try:
        (result,) = dest.send([Delivery("d1", '{"a": 1}', "key-1")])
    finally:
        dest.close()
    assert result.ok and result.destination_id == "x1"
    return _Capture.seen[-1]


def test_basic(monkeypatch, capture):
    headers = send_with(monkeypatch, capture, Auth("basic"))
    assert headers["authorization"] == "Basic YnJpZGdlOnMzY3JldA=="  # bridge:s3cret
    assert headers["idempotency-key"] == "key-1" and headers["content-type"] == "application/json"


def test_bearer(monkeypatch, capture):
    headers = send_with(monkeypatch, capture, Auth("bearer"), login=None)
    assert headers["authorization"] == "Bearer s3cret"


def test_named_header(monkeypatch, capture):
    headers = send_with(monkeypatch, capture, Auth("header", header="x-api-key"))
    assert headers["x-api-key"] == "s3cret"
    assert "authorization" not in headers  # the Connection's login is not sent as basic auth too


def test_none_sends_no_credentials_even_when_the_connection_has_some(monkeypatch, capture):
    headers = send_with(monkeypatch, capture, Auth("none"))
    assert "authorization" not in headers


def test_missing_secret_is_a_config_error_naming_the_connection(monkeypatch, capture):
    with pytest.raises(ConfigError, match="bearer needs the secret as the password of connection 'dest_auth'"):
        send_with(monkeypatch, capture, Auth("bearer"), password=None)
