"""A run plans the next page while the pages before it are delivered (``sync/run.py`` ``_process``):
what that overlap must not change. Real CHT (pouchdb-server), real receiver stand-in (slowed, so
pages queue up behind a delivery), real ledger."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from cht_bridge.cht import CouchClient
from cht_bridge.config import parse_pipeline
from cht_bridge.destinations import RestDestination
from cht_bridge.destinations.base import BaseDestination, Delivery, Result
from cht_bridge.errors import AuthError, SourceError
from cht_bridge.state import StateStore
from cht_bridge.sync import run_pipeline
from standins.receiver import Receiver
from tests.conftest import received

pytestmark = pytest.mark.integration

PAGE = 50  # documents per page; the destination sends a page in one request
CREDENTIALS = {"username": "u", "password": "p"}


def things(cht, n: int) -> list[str]:
    ids = [f"thing-{i:03d}" for i in range(n)]
    cht.put(*({"_id": i, "type": "thing", "n": k} for k, i in enumerate(ids)))
    return ids


def pipeline(name: str) -> Any:
    config = {
        "name": name, "start_date": "2026-01-01", "cht": {"conn_id": "cht_test"},
        "relevant_to": "doc.type === 'thing'", "mapping": {"id": "doc._id", "n": "doc.n"},
        "destination": {"conn_id": "rx", "path": "/in", "mode": "batch", "batch_size": 100}, "batch_size": PAGE,
    }  # fmt: skip
    return parse_pipeline(config, file="test")


def run(cht, rx: Receiver, store: StateStore, name: str, client: CouchClient | None = None) -> Any:
    session = requests.Session()
    session.auth = (CREDENTIALS["username"], CREDENTIALS["password"])
    p = pipeline(name)
    destination = RestDestination(session, rx.url, "/in", conn_id="rx", mode="batch", batch_size=100)
    client = client or CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    try:
        return run_pipeline(p, client=client, destination=destination, store=store)
    finally:
        destination.close()


@pytest.fixture
def rx(tmp_path):
    server = Receiver(tmp_path / "rx", credentials=dict(CREDENTIALS), delay=0.4).start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def delivered(store: StateStore, name: str, ids: list[str]) -> list[str]:
    return [i for i in ids if (row := store.ledger(name, i)) is not None and row["status"] == "delivered"]


def test_a_document_in_two_pages_in_a_row_is_compared_with_its_first_delivery(cht, rx, store):
    """Changed (not in what is sent) after its page was read, a document is in the next page too.
    That page is planned while the first is still being delivered (0.4 s a request): it must wait
    for it to be recorded, or the document is compared with no delivery and sent a second time."""
    ids = things(cht, PAGE + 10)

    class ChangesOneAfterThePageIsRead(CouchClient):
        def changes_text(self, since, limit):
            text = super().changes_text(since, limit)
            if since in (0, "0"):  # the first page is in hand: its first document changes now
                cht.put({**cht.get(ids[0]), "note": "not mapped"})
            return text

    client = ChangesOneAfterThePageIsRead(cht.url, cht.db, cht.user, conn_id="cht_test")
    summary = run(cht, rx, store, "twice", client)

    assert summary.read == PAGE + 11 and summary.unchanged == 1
    items = received(rx)
    assert sorted(item["payload"]["id"] for item in items) == ids  # thing-000 once
    assert store.checkpoint("twice") == cht.last_seq()


def test_a_cht_error_on_a_later_page_loses_none_of_the_pages_being_delivered(cht, rx, store):
    """Reading page 4 fails while pages 2 and 3 are planned and waiting for the (slow) destination:
    both are still delivered and recorded, the checkpoint is after page 3, and the next run sends
    the rest, nothing twice."""
    ids = things(cht, 4 * PAGE + 10)
    calls: list[Any] = []

    class FourthPageFails(CouchClient):
        def changes_text(self, since, limit):
            calls.append(since)
            if len(calls) == 4:
                raise SourceError(f"CHT connection '{self.conn_id}': ConnectionError on GET /_changes")
            return super().changes_text(since, limit)

    client = FourthPageFails(cht.url, cht.db, cht.user, conn_id="cht_test")
    with pytest.raises(SourceError):
        run(cht, rx, store, "cut", client)

    assert delivered(store, "cut", ids) == ids[: 3 * PAGE]
    assert len(received(rx)) == 3 * PAGE
    assert store.checkpoint("cut") == cht.last_seq(limit=3 * PAGE)

    summary = run(cht, rx, store, "cut")
    assert summary.sent == PAGE + 10
    assert sorted(item["payload"]["id"] for item in received(rx)) == ids  # each once
    assert rx.state.snapshot()["duplicates"] == 0
    assert store.checkpoint("cut") == cht.last_seq()


class RefusedOnSecondPage(BaseDestination):
    """A slow destination that accepts the first page and refuses the credentials on the second.

    It does not remember the refusal (a kind may not), so only the run can keep a later page from
    being offered to it.
    """

    def __init__(self) -> None:
        self.offered: list[list[str]] = []

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        self.offered.append([d.doc_id for d in deliveries])
        time.sleep(0.4)  # the next pages are planned and queued meanwhile
        if len(self.offered) == 2:
            raise AuthError("rx", 401, "destination")
        return [Result(d.doc_id, True, 201, destination_id=d.doc_id) for d in deliveries]


def test_a_refused_login_offers_none_of_the_pages_planned_after_it(cht, store):
    """The credentials are refused on page 2 while page 3 is planned and waiting: page 3 is never
    offered, nothing after page 1 is recorded, and the checkpoint is after page 1."""
    ids = things(cht, 3 * PAGE + 10)
    destination = RefusedOnSecondPage()
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    with pytest.raises(AuthError):
        run_pipeline(pipeline("refused"), client=client, destination=destination, store=store)

    assert destination.offered == [ids[:PAGE], ids[PAGE : 2 * PAGE]]
    assert delivered(store, "refused", ids) == ids[:PAGE]
    assert all(store.ledger("refused", i) is None for i in ids[PAGE:])
    assert store.checkpoint("refused") == cht.last_seq(limit=PAGE)
