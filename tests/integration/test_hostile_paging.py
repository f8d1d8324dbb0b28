"""Sources whose paging never ends stop with a clear error, and the pages before it are kept.

A small scripted server on 127.0.0.1 plays the broken or hostile upstream: a next link or cursor
that comes back, a fresh cursor on every empty page, a server that ignores the offset, a CouchDB
``_changes`` feed whose ``last_seq`` does not move, a FHIR record stamped in the future. Pages go
through ``reverse.run.receive`` into a real SQLite ledger, so the checkpoint left behind is the
one the next run would start from. The server stops answering after ``CAP`` requests, so code
without the bounds fails these tests instead of hanging them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cht_bridge.errors import SourceError
from cht_bridge.http.retry import RetryPolicy
from cht_bridge.mapping import Mapper
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.run import receive
from cht_bridge.reverse.sources import FhirSearchSource, JsonRestSource
from cht_bridge.state import StateStore
from cht_bridge.state.inbound import InboundLedger
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

pytestmark = pytest.mark.integration

FAST = RetryPolicy(retries=1, backoff_s=0.01, max_backoff_s=0.02)
CAP = 60  # requests a scripted server answers before it only says 500
SECRET = "tok-0712345678"  # a query value that must never reach a message

Answer = Callable[[str, dict[str, str]], Any]


class Scripted(BackgroundHttpServer):
    """Answers each GET with ``answer(path, query)`` as JSON, and keeps the requests it got."""

    thread_name = "scripted"

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str]]] = []

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(StandInHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                server.requests.append((parts.path, query))
                if len(server.requests) > CAP:
                    send_json(self, 500, {"error": "the scripted server gave up"})
                    return
                send_json(self, 200, server.answer(parts.path, query))

        return Handler


def items(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"Person {i}", "facility": "MFL-1"} for i in ids]


@pytest.fixture
def ledger(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield InboundLedger(store)
    store.close()


def run_receive(ledger: InboundLedger, source: Any, name: str = "hostile") -> dict[str, Any]:
    """One ``receive`` step of a reverse pipeline reading ``source`` into the ledger."""
    pipeline = parse_reverse_pipeline(
        {
            "name": name,
            "start_date": "2026-01-01",
            "source": {"type": "rest", "conn_id": "emr_list", "path": "/list"},
            "mapping": {"person.name": "doc.name", "place": {"path": "doc.facility", "optional": True}},
            "places": {"table": "unused.csv"},
            "target": {"conn_id": "cht", "form": "LTFU_FOLLOWUP"},
        },
        file=f"{name}.yaml",
    )
    mapper = Mapper(pipeline.name, pipeline.relevant_to, pipeline.mapping, source=pipeline.file)
    try:
        return receive(pipeline, source, mapper, ledger).as_xcom()
    finally:
        mapper.close()


def received_ids(ledger: InboundLedger, name: str = "hostile") -> list[str]:
    return sorted(row.source_id for row in ledger.rows(name, ["received", "failed"]))


def rest(server: Scripted, paging: dict[str, Any], **kwargs: Any) -> JsonRestSource:
    return JsonRestSource(
        requests.Session(), server.url, "/list", items="results", id_field="id", paging=paging,
        conn_id="emr_list", retry=FAST, **kwargs,
    )  # fmt: skip


CURSOR = {"type": "cursor", "param": "cursor", "next": "next"}


def assert_plain(error: SourceError, *words: str) -> None:
    text = str(error)
    for word in words:
        assert word in text, text
    assert SECRET not in text and "http" not in text  # no link, no query value


# -- REST ------------------------------------------------------------------------------------------


def test_rest_cursor_that_comes_back_stops_and_keeps_every_page_read(ledger):
    """a → b → c → b: the third page is kept under the cursor that fetched it, then the read stops."""
    pages = {
        "": (items("a1", "a2"), f"b-{SECRET}"),
        f"b-{SECRET}": (items("b1", "b2"), "c"),
        "c": (items("c1"), f"b-{SECRET}"),
    }

    def answer(path: str, query: dict[str, str]) -> Any:
        found, following = pages[query.get("cursor", "")]
        return {"results": found, "next": following}

    with Scripted(answer) as server, pytest.raises(SourceError) as caught:
        run_receive(ledger, rest(server, CURSOR))

    assert_plain(caught.value, "REST source 'emr_list'", "next cursor after page 3 repeats an earlier one")
    assert len(server.requests) == 3
    assert received_ids(ledger) == ["a1", "a2", "b1", "b2", "c1"]
    assert ledger.checkpoint("hostile") == "c"  # a good place to resume: not the cursor that loops


def test_rest_endless_cursor_of_empty_pages_stops_at_max_pages(ledger):
    def answer(path: str, query: dict[str, str]) -> Any:
        n = int(query.get("cursor", "0"))
        return {"results": items("x1") if n == 0 else [], "next": str(n + 1)}  # a fresh cursor, for ever

    with Scripted(answer) as server, pytest.raises(SourceError) as caught:
        run_receive(ledger, rest(server, CURSOR, max_pages=5))

    assert_plain(caught.value, "REST source 'emr_list'", "stopped after 5 pages in one run (source.max_pages)")
    assert len(server.requests) == 5
    assert received_ids(ledger) == ["x1"]
    assert ledger.checkpoint("hostile") == "5"  # the next run goes on after the fifth page


def test_rest_server_that_ignores_the_offset_is_stopped_at_the_second_page(ledger):
    full = items(*(f"o{i}" for i in range(10)))

    with Scripted(lambda path, query: {"results": full}) as server, pytest.raises(SourceError) as caught:
        run_receive(ledger, rest(server, {"type": "offset", "param": "start", "page_size": 10}))

    assert_plain(caught.value, "page 2 holds exactly the records of page 1", "ignore the paging parameter")
    assert [q["start"] for _, q in server.requests] == ["0", "10"]
    assert received_ids(ledger) == sorted(i["id"] for i in full)
    assert ledger.checkpoint("hostile") == 10


def test_rest_same_records_under_ever_new_cursors_are_bounded_by_max_pages(ledger):
    """Pages that move the cursor but alternate the same records: only the page limit can tell."""

    def answer(path: str, query: dict[str, str]) -> Any:
        n = int(query.get("cursor", "0"))
        return {"results": items("s1") if n % 2 else items("s2"), "next": str(n + 1)}

    with Scripted(answer) as server, pytest.raises(SourceError, match=r"after 7 pages"):
        run_receive(ledger, rest(server, CURSOR, max_pages=7))
    assert len(server.requests) == 7
    assert received_ids(ledger) == ["s1", "s2"]


# -- FHIR ------------------------------------------------------------------------------------------


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def patient(pid: str, updated: str) -> dict[str, Any]:
    meta = {"versionId": "1", "lastUpdated": updated}
    return {"resource": {"resourceType": "Patient", "id": pid, "meta": meta, "name": f"Person {pid}"}}


def bundle(server: Scripted, entries: list[dict[str, Any]], next_query: str | None = None) -> dict[str, Any]:
    """A searchset page; ``next_query`` makes a next link to ``<base>/Patient?<next_query>``."""
    links = [{"relation": "self", "url": f"{server.url}/fhir/Patient"}]
    if next_query:
        links.append({"relation": "next", "url": f"{server.url}/fhir/Patient?{next_query}"})
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries, "link": links}


def fhir(server: Scripted, **kwargs: Any) -> FhirSearchSource:
    return FhirSearchSource(
        requests.Session(), server.url + "/fhir", "Patient", conn_id="emr_fhir", retry=FAST, validate=False, **kwargs
    )


def test_fhir_next_link_that_repeats_stops_with_the_checkpoint_of_the_last_page(ledger):
    base = datetime(2026, 11, 1, tzinfo=UTC)

    def answer(path: str, query: dict[str, str]) -> Any:
        if "_page" not in query:
            first = [patient("p1", stamp(base)), patient("p2", stamp(base + timedelta(1)))]
            return bundle(server, first, f"_page={SECRET}")
        return bundle(server, [patient("p3", stamp(base + timedelta(2)))], f"_page={SECRET}")  # the same link again

    with Scripted(answer) as server, pytest.raises(SourceError) as caught:
        run_receive(ledger, fhir(server))

    assert_plain(caught.value, "FHIR connection 'emr_fhir'", "next link after page 2 repeats an earlier one")
    assert len(server.requests) == 2
    assert received_ids(ledger) == ["p1", "p2", "p3"]
    assert ledger.checkpoint("hostile") == stamp(base + timedelta(2))


def test_fhir_empty_pages_with_fresh_next_links_stop_at_max_pages(ledger):
    def answer(path: str, query: dict[str, str]) -> Any:
        n = int(query.get("_offset", "0"))
        found = [patient("p1", "2026-11-01T00:00:00Z")] if n == 0 else []
        return bundle(server, found, f"_offset={n + 50}")

    with Scripted(answer) as server, pytest.raises(SourceError) as caught:
        run_receive(ledger, fhir(server, max_pages=4))

    assert_plain(caught.value, "FHIR connection 'emr_fhir'", "stopped after 4 pages")
    assert len(server.requests) == 4
    assert ledger.checkpoint("hostile") == "2026-11-01T00:00:00Z"


def test_a_future_last_updated_is_processed_but_does_not_move_the_checkpoint(ledger):
    now = datetime.now(UTC)
    real, near, future = stamp(now - timedelta(hours=1)), stamp(now + timedelta(minutes=2)), "2999-01-01T00:00:00Z"
    listed = {"a": real, "b": future}

    def answer(path: str, query: dict[str, str]) -> Any:
        return bundle(server, [patient(pid, when) for pid, when in listed.items()])

    with Scripted(answer) as server:
        first = run_receive(ledger, fhir(server))
        assert received_ids(ledger) == ["a", "b"]  # the future record is processed like any other
        assert ledger.checkpoint("hostile") == real
        again = run_receive(ledger, fhir(server))
        assert server.requests[-1][1]["_lastUpdated"] == f"ge{real}"  # not ge2999: real changes still come
        assert (first["received"], again["received"], again["unchanged"]) == (2, 0, 2)

        # A server clock a little ahead (within clock_skew_minutes) still moves the checkpoint.
        listed["c"] = near
        run_receive(ledger, fhir(server))
        assert ledger.checkpoint("hostile") == near
        assert received_ids(ledger) == ["a", "b", "c"]

    listed = {"d": stamp(now + timedelta(minutes=2))}
    with Scripted(answer) as server:
        (page,) = fhir(server, clock_skew_minutes=0).pages(real)
    assert [r.id for r in page.records] == ["d"] and page.checkpoint == real


# -- CHT _changes ------------------------------------------------------------------------------------


def test_a_changes_feed_whose_last_seq_does_not_move_stops(tmp_path):
    from cht_bridge.cht.couch import CouchClient
    from cht_bridge.source.hydration import Hydrator
    from cht_bridge.source.pages import iter_changes

    def answer(path: str, query: dict[str, str]) -> Any:
        since = query["since"]
        docs = [{"_id": f"doc-{since}-{i}", "_rev": "1-a", "type": "person"} for i in range(int(query["limit"]))]
        results = [{"seq": "x", "id": d["_id"], "changes": [{"rev": "1-a"}], "doc": d} for d in docs]
        return {"results": results, "last_seq": "2-moved" if since == "1-start" else "3-stuck"}

    with Scripted(answer) as server:
        client = CouchClient(server.url, "medic", conn_id="cht_test", retry=FAST, timeout=(3.0, 10.0))
        pages: list[Any] = []
        with pytest.raises(SourceError) as caught:
            for page in iter_changes(client, "1-start", 4, Hydrator(client).load_page):
                pages.append(page.last_seq)

    assert_plain(caught.value, "CHT connection 'cht_test'", "last_seq already read from")
    assert [q["since"] for _, q in server.requests] == ["1-start", "2-moved", "3-stuck"]
    assert pages == ["2-moved", "3-stuck"]  # the page that did not move is not handed on: no checkpoint there
