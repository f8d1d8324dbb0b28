"""Conversation results into CHT: completed RapidPro runs, read page by page from the stand-in, become
CHT reports through the local CHT API exactly once, across re-runs and crashes; each person is
found by phone (contacts-by-phone) or by the matcher, or created under the place their answers or
their phone's registration point to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cht_bridge.cht.api import ChtApiClient
from cht_bridge.http.origin import OriginAuth, ScopedSession
from cht_bridge.mapping import Mapper
from cht_bridge.reverse.choices import NEW
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.phone_places import RegisteredPlaces
from cht_bridge.reverse.places import load_place_table
from cht_bridge.reverse.run import apply_choice, match_received, receive, write_ready
from cht_bridge.reverse.sources.rapidpro import RapidProRunsSource
from cht_bridge.state import StateStore
from cht_bridge.state.inbound import DONE, InboundLedger, InboundRow
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json
from standins.rapidpro import RapidProStandIn
from tests.integration.reverse_setup import HC, HH2, place_table, seed_area

pytestmark = pytest.mark.integration

TOKEN = "rp-reverse-token"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def screening_pipeline(tmp_path, flow: str) -> Any:
    return parse_reverse_pipeline(
        {
            "name": "self_screening_test",
            "start_date": "2026-01-01",
            "source": {"type": "rapidpro", "conn_id": "rapidpro_test", "flows": [flow], "overlap_seconds": 60},
            "mapping": {
                "person.name": {"expr": "doc.values.name ? doc.values.name.value : doc.contact.name"},
                "person.phone": {"path": "doc.phone", "optional": True},
                "place": {"expr": "[doc.values.village && doc.values.village.category, 'phone:' + doc.phone]"},
                "report.symptoms": {"expr": "doc.values.symptoms.category.toLowerCase()"},
                "report.flow": "doc.flow.name",
                "report.screened_at": "doc.modified_on",
            },
            "places": {"table": str(place_table(tmp_path / "places.csv")), "key": "place"},
            "target": {"conn_id": "cht_api_test", "form": "SELF_SCREENING"},
        },
        file="self_screening_test.yaml",
    )


def seed_runs(rapidpro: RapidProStandIn, flow: str) -> None:
    """Five runs over three pages of two: a CHT person by phone, a new person placed by their answer,
    a new person placed by their phone's CHT registration, an active run, one with no place."""
    rapidpro.add_run(
        flow, "tel:+254712000001", {"name": "Achieng Otieno", "symptoms": {"value": "yes", "category": "Yes"}},
        modified_on=T0,
    )  # fmt: skip
    rapidpro.add_run(
        flow, "tel:+254799000111",
        {"name": "Neema Atieno", "village": {"value": "Ahero", "category": "MFL-100"},
         "symptoms": {"value": "no", "category": "No"}},
        modified_on=T0 + timedelta(minutes=1),
    )  # fmt: skip
    rapidpro.add_run(
        flow, "tel:+254712000005", {"name": "Juma Ouma", "symptoms": {"value": "yes", "category": "Yes"}},
        modified_on=T0 + timedelta(minutes=2),
    )  # fmt: skip
    rapidpro.add_run(flow, "tel:+254733000222", {"name": "Still Answering"}, exit_type=None, modified_on=T0 + timedelta(minutes=3))  # fmt: skip
    rapidpro.add_run(
        flow, "tel:+254733000333", {"name": "Baraka Kip", "symptoms": {"value": "no", "category": "No"}},
        modified_on=T0 + timedelta(minutes=4),
    )  # fmt: skip


class Crash(BaseException):
    """The worker dies."""


class CrashingLedger(InboundLedger):
    """Dies on the ``n``-th page it receives, or on the save that records a created report."""

    def __init__(self, store: StateStore, *, page: int | None = None, report: bool = False) -> None:
        super().__init__(store)
        self.page, self.report, self.pages = page, report, 0

    def receive(self, *args: Any, **kwargs: Any) -> None:
        self.pages += 1
        if self.page == self.pages:
            raise Crash
        super().receive(*args, **kwargs)

    def save(self, row: InboundRow, run_id: str | None = None) -> None:
        if self.report and row.status == DONE:
            self.report = False
            raise Crash
        super().save(row, run_id)


@pytest.fixture
def world(tmp_path, cht_api):
    seed_area(cht_api.db)
    with RapidProStandIn(TOKEN, page_size=2) as rapidpro:
        flow = rapidpro.add_flow("Self screening")
        seed_runs(rapidpro, flow)
        store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        pipeline = screening_pipeline(tmp_path, flow)
        api = ChtApiClient(cht_api.url, "medic", cht_api.online, conn_id="cht_api_test")
        yield pipeline, rapidpro, store, api, cht_api
        store.close()


def source(pipeline: Any, rapidpro: RapidProStandIn) -> RapidProRunsSource:
    session = ScopedSession()
    session.auth = OriginAuth(rapidpro.url, headers={"Authorization": f"Token {TOKEN}"})
    config = pipeline.source
    return RapidProRunsSource(
        session, rapidpro.url, list(config.flows), conn_id="rapidpro_test", overlap_seconds=config.overlap_seconds
    )


def step(pipeline: Any, rapidpro: RapidProStandIn, ledger: InboundLedger, api: ChtApiClient, which: str) -> dict:
    if which == "receive":
        mapper = Mapper(pipeline.name, pipeline.relevant_to, pipeline.mapping, source=pipeline.file)
        try:
            return receive(pipeline, source(pipeline, rapidpro), mapper, ledger).counts
        finally:
            mapper.close()
    if which == "match":
        places = RegisteredPlaces(load_place_table(pipeline.places.table), api, pipeline.match.region)
        return match_received(pipeline, ledger, api, places).counts
    return write_ready(pipeline, ledger, api).counts


def whole_run(pipeline, rapidpro, ledger, api) -> dict[str, dict]:
    return {which: step(pipeline, rapidpro, ledger, api, which) for which in ("receive", "match", "write")}


def screening_reports(cht_api) -> list[dict]:
    return [d for d in cht_api.db.all_docs() if d.get("type") == "data_record" and d.get("form") == "SELF_SCREENING"]


def test_runs_over_pages_become_reports_exactly_once_across_reruns_and_crashes(world):
    pipeline, rapidpro, store, api, cht_api = world
    people_before = {d["_id"] for d in cht_api.db.all_docs() if d.get("type") == "person"}

    # A crash while the second page is stored: the first page and its checkpoint are kept.
    with pytest.raises(Crash):
        step(pipeline, rapidpro, CrashingLedger(store, page=2), api, "receive")
    ledger = InboundLedger(store)
    assert ledger.counts(pipeline.name) == {"received": 2}
    first = step(pipeline, rapidpro, ledger, api, "receive")
    # The read goes on from the newest run it kept (not the overlap before it): runs 2-5 in two pages.
    assert first["received"] == 2 and first["pages"] == 2
    assert ledger.counts(pipeline.name) == {"received": 4}  # 5 runs, one still active

    matched = step(pipeline, rapidpro, ledger, api, "match")
    assert (matched["link"], matched["new"], matched["review"], matched["unplaced"]) == (1, 1, 1, 1), matched
    # Juma shares his phone (and family name) with Odhiambo, registered in HH2: a person decides.
    (key,) = ledger.review_keys(pipeline.name)
    row = ledger.get(pipeline.name, *key)
    assert row.place_id == HH2 and row.candidates[0]["id"] == "p-odhiambo"
    apply_choice(pipeline, ledger, tuple(key), NEW, "reviewer")

    # A crash after CHT created a report and before the ledger recorded it.
    with pytest.raises(Crash):
        step(pipeline, rapidpro, CrashingLedger(store, report=True), api, "write")
    written = step(pipeline, rapidpro, ledger, api, "write")
    assert written["reports_found"] == 1 and written["reports_created"] + written["reports_found"] == 3
    reports = screening_reports(cht_api)
    assert len(reports) == 3
    by_patient = {r["fields"]["patient_uuid"]: r["fields"] for r in reports}
    assert by_patient["p-achieng"]["symptoms"] == "yes"  # found by phone (contacts-by-phone)
    people = {d["_id"]: d for d in cht_api.db.all_docs() if d.get("type") == "person"}
    new = {p["name"]: p for i, p in people.items() if i not in people_before}
    assert set(new) == {"Neema Atieno", "Juma Ouma"}
    assert new["Neema Atieno"]["parent"]["_id"] == HC  # the place her answer named
    assert new["Juma Ouma"]["parent"]["_id"] == HH2  # where CHT has his phone registered
    assert new["Juma Ouma"]["phone"] == "+254712000005"
    assert all(r["fields"]["source_ref"] for r in reports)

    # Re-runs: nothing new is read as new, nothing is written twice.
    again = whole_run(pipeline, rapidpro, ledger, api)
    assert again["receive"]["received"] == 0 and again["write"]["reports_created"] == 0
    assert len(screening_reports(cht_api)) == 3

    # The active run completes later: it is read (its modified_on moved) and becomes one more report.
    still = next(r for r in rapidpro.state.runs if r["exit_type"] is None)
    rapidpro.update_run(still["uuid"], values={"village": {"value": "Ahero", "category": "MFL-100"},
                                               "symptoms": {"value": "no", "category": "No"}})  # fmt: skip
    later = whole_run(pipeline, rapidpro, ledger, api)
    assert later["receive"]["received"] == 1 and later["write"]["reports_created"] == 1
    assert len(screening_reports(cht_api)) == 4
    unplaced = [row for row in ledger.rows(pipeline.name, ["unplaced"])]
    assert len(unplaced) == 1 and "+2547" not in (unplaced[0].reason or "")
    assert "a phone's CHT registration" in unplaced[0].reason


def test_the_source_checkpoint_is_each_flows_newest_modified_on(world):
    pipeline, rapidpro, store, api, _ = world
    pages = list(source(pipeline, rapidpro).pages(None))
    assert [len(p.records) for p in pages] == [2, 1, 1]  # the active run is not a row
    flow = pipeline.source.flows[0]
    assert pages[-1].checkpoint == {flow: (T0 + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    assert pages[0].records[0].data["phone"] == "+254712000001"
    again = list(source(pipeline, rapidpro).pages(pages[-1].checkpoint))
    assert [r.id for p in again for r in p.records] == [pages[-1].records[-1].id]  # only the overlap
    runs = [r for r in rapidpro.requests if r[1] == "/api/v2/runs.json"]
    assert all(status == 200 for _, _, status, _ in runs)


class HostileRuns(BackgroundHttpServer):
    """A runs endpoint whose ``next`` always names the same cursor (or another origin): fresh runs
    on every page, so only the cursor rule can stop the read."""

    def __init__(self, next_url: str | None = None) -> None:
        super().__init__()
        self.next_url, self.served = next_url, 0

    def handler(self):
        server = self

        class Handler(StandInHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                server.served += 1
                when = (T0 + timedelta(minutes=server.served)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                run = {"uuid": f"run-{server.served}", "modified_on": when, "exit_type": "completed",
                       "contact": {"urn": "tel:+254712000001"}, "values": {}}  # fmt: skip
                following = server.next_url or f"{server.url}/api/v2/runs.json?cursor=same"
                send_json(self, 200, {"next": following, "previous": None, "results": [run]})

        return Handler


@pytest.mark.parametrize("where", ["same cursor", "other origin"])
def test_a_runs_cursor_that_repeats_or_leaves_the_origin_stops_the_read_keeping_the_pages(where):
    from cht_bridge.errors import SourceError

    next_url = "http://127.0.0.2:9/api/v2/runs.json?cursor=x" if where == "other origin" else None
    with HostileRuns(next_url) as server:
        session = ScopedSession()
        session.auth = OriginAuth(server.url, headers={"Authorization": f"Token {TOKEN}"})
        pages = []
        with pytest.raises(SourceError, match="repeats an earlier one|another origin"):
            for page in RapidProRunsSource(session, server.url, ["flow-1"], conn_id="rp").pages(None):
                pages.append(page)
    assert len(pages) == (1 if where == "other origin" else 2)
    # Kept: the next run resumes there (exactly there: the read did not reach its last page).
    assert pages[-1].checkpoint == {"flow-1": {"modified_on": pages[-1].records[-1].version, "more": True}}
