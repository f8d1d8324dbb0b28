"""Reading ahead against a hostile or failing run (``source/pages.py``, ``sync/run.py``): an answer
whose end cannot be read is only a wrong guess, and once a run has stopped CHT is asked nothing more.
The scripted feed of ``test_read_ahead.py`` serves the pages."""

from __future__ import annotations

import threading
import time

import pytest

from cht_bridge.cht.couch import CouchClient
from cht_bridge.config import parse_pipeline
from cht_bridge.destinations.base import BaseDestination, Delivery, Result
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.source.hydration import Hydrator
from cht_bridge.source.pages import iter_changes
from cht_bridge.state import StateStore
from cht_bridge.sync import run_pipeline
from tests.integration.test_read_ahead import FAST, LIMIT, PAGES, Feed

pytestmark = pytest.mark.integration

DEEP = 1500  # deeper than Python's JSON decoder can recurse


def test_a_deeply_nested_last_seq_in_the_last_document_is_only_a_wrong_guess():
    def misleading(since: int, body: dict) -> dict:
        body["results"][-1]["doc"]["last_seq"] = "@DEEP@"
        return {"last_seq": body["last_seq"], "results": body["results"]}  # the real last_seq first

    class Deep(CouchClient):  # the stand-in's json.dumps cannot nest this deep: made deep in the text
        def changes_text(self, since, limit):
            return super().changes_text(since, limit).replace('"@DEEP@"', "[" * DEEP + "0" + "]" * DEEP)

    with Feed(misleading) as feed:
        client = Deep(feed.url, "medic", conn_id="cht_test", retry=FAST, timeout=(3.0, 10.0))
        pages = list(iter_changes(client, 0, LIMIT, Hydrator(client).load_page))
    assert [p.last_seq for p in pages] == list(range(1, PAGES + 2))


def test_an_answer_cut_inside_a_deep_last_seq_is_a_source_error_naming_the_connection():
    class Cut(CouchClient):
        def changes_text(self, since, limit):
            text = super().changes_text(since, limit)
            return text[: text.rfind('"last_seq"')] + '"last_seq": ' + "[" * DEEP

    with Feed() as feed:
        client = Cut(feed.url, "medic", conn_id="cht_test", retry=FAST, timeout=(3.0, 10.0))
        with pytest.raises(SourceError, match="cht_test"):
            list(iter_changes(client, 0, LIMIT, Hydrator(client).load_page))


class Refuses(BaseDestination):
    def send(self, deliveries: list[Delivery]) -> list[Result]:
        raise AuthError("rx", 401, "destination")


def test_no_cht_request_after_the_run_stopped_and_no_reader_thread_left(tmp_path):
    def slow(since: int, body: dict) -> dict:  # CHT answers a page in 0.3 s: reads are in flight at the stop
        time.sleep(0.3)
        return body

    config = {
        "name": "stop", "start_date": "2026-01-01", "cht": {"conn_id": "cht_test"},
        "relevant_to": "true", "mapping": {"id": "doc._id"},
        "destination": {"conn_id": "rx", "path": "/in", "mode": "batch", "batch_size": 100}, "batch_size": LIMIT,
    }  # fmt: skip
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with Feed(slow) as feed:
            client = CouchClient(feed.url, "medic", conn_id="cht_test", retry=FAST, timeout=(3.0, 10.0))
            with pytest.raises(AuthError):
                run_pipeline(parse_pipeline(config, file="t"), client=client, destination=Refuses(), store=store)
            at_stop = feed.requests_seen()
            time.sleep(1.5)
            later = feed.requests_seen()
            readers = [t.name for t in threading.enumerate() if t.name.startswith("pages")]
    finally:
        store.close()
    assert later == at_stop, f"CHT asked after the run stopped: {later[len(at_stop) :]}"
    assert readers == []
