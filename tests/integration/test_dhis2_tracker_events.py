"""Reading DHIS2's events is bounded: a server that ignores ``page`` is refused, not read for ever;
each version is asked with its own parameter names and read in its own shape."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cht_bridge.destinations.dhis2.events import read_events
from cht_bridge.errors import SourceError
from cht_bridge.http.read import Reader
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

pytestmark = pytest.mark.integration


class PageIgnoring(BackgroundHttpServer):
    """Answers every events page with the same full page (a server that ignores ``page``)."""

    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version
        self.queries: list[dict] = []

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_GET(self) -> None:  # noqa: N802
                split = urlsplit(self.path)
                if split.path == "/api/system/info":
                    send_json(self, 200, {"version": server.version})
                    return
                server.queries.append(parse_qs(split.query))
                events = [
                    {"event": f"Ev{i:09d}", "orgUnit": "DiszpKrYNg8", "occurredAt": "2026-01-02"} for i in range(3)
                ]
                key = "events" if server.version >= "2.41" else "instances"
                send_json(
                    self, 200, {key: events, "pager": {"page": 1, "pageSize": 3}} if key == "events" else {key: events}
                )

        return Handler


@pytest.mark.parametrize(("version", "mode"), [("2.40.3", "ouMode"), ("2.41.1", "orgUnitMode")])
def test_a_server_that_ignores_page_is_refused_and_each_version_gets_its_parameter_names(version, mode):
    with PageIgnoring(version) as server, requests.Session() as session:
        reader = Reader(session, conn_id="dhis2_x", system="DHIS2", timeout=5)
        seen = []
        with pytest.raises(SourceError, match="page 2 repeats page 1"):
            for event in read_events(reader, f"{server.url}/api", "ChtAssess01", page_size=3):
                seen.append(event["event"])
        assert seen == ["Ev000000000", "Ev000000001", "Ev000000002"]
        first = server.queries[0]
        assert first[mode] == ["ACCESSIBLE"] and first["program"] == ["ChtAssess01"]
        other = "orgUnitMode" if mode == "ouMode" else "ouMode"
        assert other not in first  # 2.41 refuses a request with both names
        assert json.dumps(first["pageSize"]) == '["3"]'


def test_the_page_count_is_bounded():
    class Endless(PageIgnoring):
        def handler(self):
            server = self

            class Handler(StandInHandler):
                def do_GET(self) -> None:  # noqa: N802
                    split = urlsplit(self.path)
                    if split.path == "/api/system/info":
                        send_json(self, 200, {"version": server.version})
                        return
                    page = int(parse_qs(split.query)["page"][0])
                    send_json(self, 200, {"instances": [{"event": f"E{page:010d}"}]})

            return Handler

    with Endless("2.40.3") as server, requests.Session() as session:
        reader = Reader(session, conn_id="dhis2_x", system="DHIS2", timeout=5)
        with pytest.raises(SourceError, match="more than 5 pages of events"):
            list(read_events(reader, f"{server.url}/api", "P", page_size=1, max_pages=5))
