"""Same-origin checks of the RapidPro runs source and of the flow start lookup, against the RapidPro
stand-in: both parse origins with ``http.origin.origin`` (scheme, host and port, host case and
default port folded), so a ``next`` URL RapidPro writes with the host in another case is followed,
while one on another origin or with user-info in it is still refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from cht_bridge.http.origin import OriginAuth, ScopedSession
from cht_bridge.reverse.sources.rapidpro import RapidProRunsSource
from standins.rapidpro import RapidProStandIn
from tests.integration.test_rapidpro_reverse import HostileRuns

pytestmark = pytest.mark.integration

TOKEN = "rp-origin-token"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def session_for(base_url: str) -> ScopedSession:
    session = ScopedSession()
    session.auth = OriginAuth(base_url, headers={"Authorization": f"Token {TOKEN}"})
    return session


def upper_host(url: str) -> str:
    """The Connection's URL as a person may type it: ``http://LOCALHOST:<port>`` (same origin)."""
    return url.replace("127.0.0.1", "LOCALHOST")


def test_the_runs_source_follows_a_next_url_on_its_origin_written_in_another_case():
    """The stand-in writes ``next`` with the Host it was asked for (``localhost``, as the client sends
    it); the Connection says ``LOCALHOST``. A raw (scheme, netloc) comparison refused that page."""
    with RapidProStandIn(TOKEN, page_size=1) as rapidpro:
        flow = rapidpro.add_flow("Self screening")
        for i in range(3):
            rapidpro.add_run(flow, f"tel:+25471200000{i}", {"a": "b"}, modified_on=T0 + timedelta(minutes=i))
        base = upper_host(rapidpro.url)
        pages = list(RapidProRunsSource(session_for(base), base, [flow], conn_id="rp").pages(None))
    assert [len(p.records) for p in pages] == [1, 1, 1]


@pytest.mark.parametrize("next_url", ["http://user@{hostport}/api/v2/runs.json?cursor=x", "http://127.0.0.2:{port}/x"])
def test_the_runs_source_still_refuses_user_info_or_another_host(next_url):
    from cht_bridge.errors import SourceError

    with HostileRuns() as server:
        hostport = server.url.split("//", 1)[1]
        server.next_url = next_url.format(hostport=hostport, port=hostport.rsplit(":", 1)[1])
        source = RapidProRunsSource(session_for(server.url), server.url, ["flow-1"], conn_id="rp")
        pages = []
        with pytest.raises(SourceError, match="another origin"):
            for page in source.pages(None):
                pages.append(page)
        assert server.served == 1 and len(pages) == 1  # the first page is kept; nothing was asked elsewhere


def test_the_flow_start_lookup_follows_pages_on_its_origin_written_in_another_case(tmp_path):
    """A start whose answer was lost is looked up in ``flow_starts.json``; here it is on the second
    page, whose ``next`` URL names the host in another case than the Connection: it is found."""
    from cht_bridge.config import parse_pipeline
    from cht_bridge.destinations import open_destination
    from cht_bridge.destinations.rapidpro import START_REF
    from cht_bridge.state import StateStore
    from tests.integration.test_rapidpro_forward import FLOW, flow_start_pipeline

    with RapidProStandIn(TOKEN, page_size=1) as rapidpro:
        rapidpro.add_flow("Self quarantine", FLOW)
        post = {"flow": FLOW, "urns": ["tel:+254712000001"]}
        headers = {"Authorization": f"Token {TOKEN}"}
        url = rapidpro.url + "/api/v2/flow_starts.json"
        mine = requests.post(url, json={**post, "params": {START_REF: "ref-1"}}, headers=headers, timeout=10)
        requests.post(url, json={**post, "params": {START_REF: "ref-2"}}, headers=headers, timeout=10)
        assert mine.status_code == 201

        raw = flow_start_pipeline("rp_origin", "medic")
        raw["destination"]["auth"] = {"type": "header", "header": "Authorization", "prefix": "Token "}
        pipeline = parse_pipeline(raw, file="rp_origin.yaml")
        base = upper_host(rapidpro.url)
        destination = open_destination(session_for(base), base, pipeline.destination, pipeline.delivery)
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            destination.attach(store, pipeline.name)
            found = destination._look_up("ref-1", datetime.now(UTC))
        finally:
            destination.close()
            store.close()
        lookups = [r for r in rapidpro.requests if r[:2] == ("GET", "/api/v2/flow_starts.json")]
    assert found is not None and found.ok, found
    assert found.body == {"uuid": mine.json()["uuid"]}
    assert len(lookups) == 2  # the newer start on page 1, ours on page 2
