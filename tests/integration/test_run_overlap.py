"""A run plans the next page while the pages before it are delivered (``sync/run.py`` ``_process``):
what that overlap must not change. Real CHT (pouchdb-server), real receiver stand-in (slowed, so
pages queue up behind a delivery), real ledger."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests
from sqlalchemy.exc import OperationalError

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


def delivered(store: StateStore, name: str, ids: list[str]) -> list[str]:
    return [i for i in ids if (row := store.ledger(name, i)) is not None and row["status"] == "delivered"]


def assert_only_the_first_page_kept(cht, store: StateStore, name: str, ids: list[str]) -> None:
    """The ledger and checkpoint a run stopped after page 1 must leave: page 1 delivered, nothing
    after it recorded, the checkpoint after page 1 (the next run reads page 2 again)."""
    assert delivered(store, name, ids) == ids[:PAGE]
    assert all(store.ledger(name, i) is None for i in ids[PAGE:])
    assert store.checkpoint(name) == cht.last_seq(limit=PAGE)


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
    assert_only_the_first_page_kept(cht, store, "refused", ids)


# A page recorded while the next is sent (for a kind that does not read the ledger while sending).


class SlowLedger(StateStore):
    """A state store whose ledger transaction takes ``seconds`` (a busy disk or database), and that
    notes when each one ran; ``fail_on`` makes that call (1-based) fail like a store that went down."""

    def __init__(self, url: str, seconds: float, fail_on: int | None = None) -> None:
        super().__init__(url)
        self.seconds, self.fail_on = seconds, fail_on
        self.records: list[tuple[float, float, list[str]]] = []  # (start, end, documents)

    def record(self, pipeline, outcomes, checkpoint=None, **kw):
        start = time.monotonic()
        time.sleep(self.seconds)
        if len(self.records) + 1 == self.fail_on:
            self.records.append((start, time.monotonic(), []))
            raise OperationalError("INSERT INTO cht_bridge_delivery", {}, Exception("disk I/O error"))
        counts = super().record(pipeline, outcomes, checkpoint, **kw)
        self.records.append((start, time.monotonic(), [o.doc_id for o in outcomes]))
        return counts


def slow_ledger(tmp_path, seconds: float, fail_on: int | None = None) -> SlowLedger:
    return SlowLedger(f"sqlite:///{tmp_path / 'slow.db'}", seconds, fail_on)


class TimedRest(RestDestination):
    """The REST kind as it is, noting when each page was sent."""

    reads_ledger_while_sending = False  # the REST kind's own answer (a subclass is taken to read it)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.sends: list[tuple[float, float, list[str]]] = []

    def send(self, deliveries):
        start = time.monotonic()
        results = super().send(deliveries)
        self.sends.append((start, time.monotonic(), [d.doc_id for d in deliveries]))
        return results


class TimedRestReadingTheLedger(TimedRest):
    reads_ledger_while_sending = True  # as FHIR, the DHIS2 tracker and RapidPro say


def timed_run(cht, rx, store, name: str, kind: type[TimedRest]) -> tuple[Any, TimedRest]:
    session = requests.Session()
    session.auth = (CREDENTIALS["username"], CREDENTIALS["password"])
    destination = kind(session, rx.url, "/in", conn_id="rx", mode="batch", batch_size=100)
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    try:
        return run_pipeline(pipeline(name), client=client, destination=destination, store=store), destination
    finally:
        destination.close()


def pages_of(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)]


def nonempty(timeline: list[tuple[float, float, list[str]]]) -> list[tuple[float, float, list[str]]]:
    return [entry for entry in timeline if entry[2]]


def no_run_threads() -> bool:
    names = [t.name for t in threading.enumerate()]
    return not any(n.startswith(("deliver", "record")) for n in names)


def test_the_rest_kind_sends_a_page_while_the_one_before_it_is_recorded(cht, tmp_path):
    """A slow ledger (0.3 s a transaction) and a slow receiver (0.4 s a request): every page after
    the first is sent while the page before it is recorded; the output is a sequential run's."""
    ids = things(cht, 4 * PAGE)
    rx = Receiver(tmp_path / "rx", credentials=dict(CREDENTIALS), delay=0.4).start()
    store = slow_ledger(tmp_path, 0.3)
    try:
        summary, destination = timed_run(cht, rx, store, "overlapped", TimedRest)
        sends, records = nonempty(destination.sends), nonempty(store.records)  # not the feed's empty end
        assert [pages for _, _, pages in sends] == pages_of(ids)
        assert [docs for _, _, docs in records] == pages_of(ids)  # in feed order, one each
        for (_, recorded, _), (sending, _, _) in zip(records, sends[1:], strict=False):
            assert sending < recorded  # page N+1 went out before page N's transaction ended
        # ... but not before the page two before it was recorded
        for (_, recorded, _), (sending, _, _) in zip(records, sends[2:], strict=False):
            assert sending >= recorded
        assert summary.sent == 4 * PAGE
        assert [item["payload"]["id"] for item in received(rx)] == ids
        assert delivered(store, "overlapped", ids) == ids
        assert store.checkpoint("overlapped") == cht.last_seq()
        assert no_run_threads()
    finally:
        rx.stop()
        store.close()


def test_a_kind_that_reads_the_ledger_sends_a_page_only_once_the_one_before_it_is_recorded(cht, tmp_path):
    ids = things(cht, 4 * PAGE)
    rx = Receiver(tmp_path / "rx", credentials=dict(CREDENTIALS), delay=0.2).start()
    store = slow_ledger(tmp_path, 0.3)
    try:
        summary, destination = timed_run(cht, rx, store, "in-turn", TimedRestReadingTheLedger)
        sends, records = nonempty(destination.sends), nonempty(store.records)
        assert [pages for _, _, pages in sends] == pages_of(ids)
        for (_, recorded, _), (sending, _, _) in zip(records, sends[1:], strict=False):
            assert sending >= recorded
        assert summary.sent == 4 * PAGE and store.checkpoint("in-turn") == cht.last_seq()
    finally:
        rx.stop()
        store.close()


def test_the_kinds_that_read_the_ledger_while_sending_say_so_and_a_new_kind_is_taken_to():
    from cht_bridge.destinations.dhis2.tracker import TrackerDestination
    from cht_bridge.destinations.fhir import FhirDestination
    from cht_bridge.destinations.openmrs import OpenMrsDestination
    from cht_bridge.destinations.rapidpro import RapidProDestination

    for kind in (FhirDestination, TrackerDestination, RapidProDestination, OpenMrsDestination, BaseDestination):
        assert kind.reads_ledger_while_sending is True, kind
    assert RestDestination.reads_ledger_while_sending is False


class Offered(BaseDestination):
    """A quick destination that reads no ledger; ``refuse_on`` refuses the credentials on that page."""

    reads_ledger_while_sending = False

    def __init__(self, refuse_on: int | None = None) -> None:
        self.offered: list[list[str]] = []
        self.refused_at: float | None = None
        self.refuse_on = refuse_on

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        self.offered.append([d.doc_id for d in deliveries])
        if len(self.offered) == self.refuse_on:
            self.refused_at = time.monotonic()
            raise AuthError("rx", 401, "destination")
        return [Result(d.doc_id, True, 201, destination_id=d.doc_id) for d in deliveries]


def test_a_ledger_that_fails_stops_the_run_and_nothing_is_sent_after_the_page_sent_meanwhile(cht, tmp_path):
    """Page 2's transaction fails (the store went down) while page 3 is sent: the store's error
    stops the run, page 4 and later are never offered, and the ledger and checkpoint stay at
    page 1, so the next run reads page 2 again (pages 2 and 3 go out again with the same keys)."""
    ids = things(cht, 6 * PAGE)
    store = slow_ledger(tmp_path, 0.5, fail_on=2)  # page 3 goes out while page 2 fails, in 0.5 s
    destination = Offered()
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    try:
        with pytest.raises(OperationalError):
            run_pipeline(pipeline("down"), client=client, destination=destination, store=store)
        assert destination.offered == pages_of(ids)[:3]
        assert_only_the_first_page_kept(cht, store, "down", ids)
        assert no_run_threads()
    finally:
        store.close()


def test_a_refused_login_while_a_page_is_recorded_keeps_that_page_and_sends_nothing_after(cht, tmp_path):
    """The credentials are refused on page 2 while page 1's transaction runs: page 1's rows and
    checkpoint are written, page 2 and later are not recorded, page 3 is never offered."""
    ids = things(cht, 4 * PAGE)
    store = slow_ledger(tmp_path, 0.4)
    destination = Offered(refuse_on=2)
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    try:
        with pytest.raises(AuthError):
            run_pipeline(pipeline("refused-late"), client=client, destination=destination, store=store)
        (start, end, docs), *later = store.records
        assert start < destination.refused_at < end  # refused while page 1 was being recorded
        assert docs == ids[:PAGE] and later == []
        assert destination.offered == pages_of(ids)[:2]
        assert_only_the_first_page_kept(cht, store, "refused-late", ids)
        assert no_run_threads()
    finally:
        store.close()


def test_a_refused_login_while_the_page_before_fails_to_be_recorded_is_what_the_run_raises(cht, tmp_path):
    """Page 1's transaction fails (0.5 s) while page 2's send is refused: the refused login decides
    (Airflow must not retry it), raised from the store's error; nothing is recorded, no page after."""
    ids = things(cht, 4 * PAGE)
    store = slow_ledger(tmp_path, 0.5, fail_on=1)
    destination = Offered(refuse_on=2)
    client = CouchClient(cht.url, cht.db, cht.user, conn_id="cht_test")
    try:
        with pytest.raises(AuthError) as raised:
            run_pipeline(pipeline("both-fail"), client=client, destination=destination, store=store)
        assert isinstance(raised.value.__cause__, OperationalError)
        assert destination.offered == pages_of(ids)[:2]
        assert all(store.ledger("both-fail", i) is None for i in ids)
        assert no_run_threads()
    finally:
        store.close()


def test_a_kind_built_on_the_rest_kind_is_taken_to_read_the_ledger_until_it_says_otherwise():
    class Built(RestDestination):
        pass

    class SaysSo(RestDestination):
        reads_ledger_while_sending = False

    assert Built.reads_ledger_while_sending is True
    assert SaysSo.reads_ledger_while_sending is False
    assert RestDestination.reads_ledger_while_sending is False


def test_a_document_in_a_page_two_after_its_first_waits_for_that_page_to_be_recorded(cht, tmp_path):
    """With three pages in flight, a document of page 1 changed after page 2 was read is in page 3:
    page 3 is planned only once page 1 is recorded, so the document is found unchanged, not sent twice."""
    ids = things(cht, 2 * PAGE + 10)
    calls: list[Any] = []

    class ChangesAfterTheSecondPageIsRead(CouchClient):
        def changes_text(self, since, limit):
            calls.append(since)
            text = super().changes_text(since, limit)
            if len(calls) == 2:
                cht.put({**cht.get(ids[0]), "note": "not mapped"})
            return text

    rx = Receiver(tmp_path / "rx", credentials=dict(CREDENTIALS), delay=0.2).start()
    store = slow_ledger(tmp_path, 0.3)
    try:
        client = ChangesAfterTheSecondPageIsRead(cht.url, cht.db, cht.user, conn_id="cht_test")
        summary = run(cht, rx, store, "twice-later", client)
        assert summary.read == 2 * PAGE + 11 and summary.unchanged == 1
        assert sorted(item["payload"]["id"] for item in received(rx)) == ids  # thing-000 once
        assert store.checkpoint("twice-later") == cht.last_seq()
    finally:
        rx.stop()
        store.close()
