"""The environment's proxy reaches every request of a Connection's session, not only the first, and
``NO_PROXY`` still sends a host direct (``ScopedSession`` reads the environment once per host)."""

from __future__ import annotations

from typing import Any

import pytest

from cht_bridge.http.origin import scoped_session
from cht_bridge.http.read import READ_LIMITS, request_within
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json
from tests.fixtures.proxies import clear_proxy_environment


class Recorder(BackgroundHttpServer):
    """Answers every request with 200 and keeps its request line (a proxy sees absolute URLs)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def handler(self) -> Any:
        lines = self.lines

        class Handler(StandInHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                lines.append(self.requestline)
                send_json(self, 200, {"ok": True})

        return Handler


@pytest.fixture
def servers(monkeypatch):
    clear_proxy_environment(monkeypatch)
    with Recorder() as proxy, Recorder() as direct:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        yield proxy, direct, monkeypatch


def test_every_request_goes_through_the_environment_s_proxy(servers):
    proxy, direct, _ = servers
    session = scoped_session("http://emr.invalid/api", basic=("bridge", "pw"))
    for i in range(3):
        assert request_within(session, "GET", f"http://emr.invalid/api/{i}", READ_LIMITS, timeout=10).json() == {
            "ok": True
        }
    assert proxy.lines == [f"GET http://emr.invalid/api/{i} HTTP/1.1" for i in range(3)]
    assert direct.lines == []


def test_no_proxy_sends_its_host_direct_on_every_request(servers):
    proxy, direct, monkeypatch = servers
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    session = scoped_session(direct.url)
    for i in range(3):
        assert request_within(session, "GET", f"{direct.url}/x{i}", READ_LIMITS, timeout=10).status_code == 200
    request_within(session, "GET", "http://emr.invalid/y", READ_LIMITS, timeout=10)  # another host: proxied
    assert direct.lines == [f"GET /x{i} HTTP/1.1" for i in range(3)]
    assert proxy.lines == ["GET http://emr.invalid/y HTTP/1.1"]
