"""A crash between a write to CHT and the ledger's record of it never duplicates anything; nor does
a write CHT refused, sent again by a replay.

CHT's people and records APIs have no idempotency key, so the dangerous moment is right after CHT
created a document and before the ledger knows its id. The crash is injected exactly there (the
ledger's next save raises, as if the worker died); the next run must find the document by its
``source_ref`` instead of posting it again. The CHT side is the real local CHT API.
"""

from __future__ import annotations

import pytest
import requests

from cht_bridge.cht.api import ChtApiClient
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.places import load_place_table
from cht_bridge.reverse.run import ReplayChoice, replay, write_ready
from cht_bridge.state import StateStore
from cht_bridge.state.inbound import DONE, FAILED, PERSON_SENT, READY, REPORT_SENT, InboundLedger, InboundRow
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json
from tests.integration.reverse_setup import HC, seed_area

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """The worker dies: not an error the run could handle."""


class CrashingLedger(InboundLedger):
    """Dies on the first save that records what CHT just created."""

    def __init__(self, store: StateStore, when: str) -> None:
        super().__init__(store)
        self.when = when

    def save(self, row: InboundRow, run_id: str | None = None) -> None:
        if self.when == "person" and row.status == READY and row.person_created:
            raise Crash
        if self.when == "report" and row.status == DONE:
            raise Crash
        super().save(row, run_id)


@pytest.fixture
def setup(tmp_path, cht_api):
    seed_area(cht_api.db)
    pipeline = parse_reverse_pipeline(
        {
            "name": "crash_test",
            "start_date": "2026-01-01",
            "source": {"type": "csv", "folder": str(tmp_path)},
            "mapping": {"person.name": "doc.name", "place": "doc.facility", "report.index_case_id": "doc.case"},
            "places": {"table": str(tmp_path / "places.csv"), "key": "place"},
            "target": {"conn_id": "unused", "form": "CONTACT_TRACE"},
            "match": {"identifier_field": "national_id"},
        },
        file="crash_test.yaml",
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    row = InboundRow(
        "crash_test",
        "c-1",
        "v1",
        READY,
        record={
            "person": {"name": "Neema Atieno", "sex": "female", "identifier": "NID-77"},
            "report": {"index_case_id": "case-1"},
        },
        place_id=HC,
        decision="new",
    )
    InboundLedger(store).receive("crash_test", [row], None, None)
    InboundLedger(store).save(row)
    api = ChtApiClient(cht_api.url, "medic", cht_api.online, conn_id="cht_api_test")
    yield pipeline, store, api, cht_api
    store.close()


def made(cht_api, source_ref: str) -> tuple[list[dict], list[dict]]:
    docs = cht_api.db.all_docs()
    people = [d for d in docs if d.get("type") == "person" and d.get("source_ref") == source_ref]
    reports = [d for d in docs if d.get("type") == "data_record" and d["fields"].get("source_ref") == source_ref]
    return people, reports


def test_crash_after_the_person_was_created(setup) -> None:
    pipeline, store, api, cht_api = setup
    with pytest.raises(Crash):
        write_ready(pipeline, CrashingLedger(store, "person"), api)
    ledger = InboundLedger(store)
    assert ledger.get("crash_test", "c-1", "v1").status == PERSON_SENT
    assert [len(x) for x in made(cht_api, "crash_test:c-1:v1")] == [1, 0]

    counts = write_ready(pipeline, ledger, api).counts
    assert (counts["persons_found"], counts["persons_created"], counts["reports_created"]) == (1, 0, 1)
    people, reports = made(cht_api, "crash_test:c-1:v1")
    assert len(people) == 1 and len(reports) == 1
    assert reports[0]["fields"]["patient_uuid"] == people[0]["_id"]
    assert people[0]["national_id"] == "NID-77"
    row = ledger.get("crash_test", "c-1", "v1")
    assert (row.status, row.person_id, row.report_id) == (DONE, people[0]["_id"], reports[0]["_id"])


def test_crash_after_the_report_was_created(setup) -> None:
    pipeline, store, api, cht_api = setup
    with pytest.raises(Crash):
        write_ready(pipeline, CrashingLedger(store, "report"), api)
    ledger = InboundLedger(store)
    assert ledger.get("crash_test", "c-1", "v1").status == REPORT_SENT

    counts = write_ready(pipeline, ledger, api).counts
    assert (counts["reports_found"], counts["reports_created"], counts["persons_created"]) == (1, 0, 0)
    people, reports = made(cht_api, "crash_test:c-1:v1")
    assert len(people) == 1 and len(reports) == 1
    assert write_ready(pipeline, ledger, api).counts["reports_created"] == 0  # and again: nothing


def test_cht_refusing_a_write_keeps_the_row_with_the_reason(setup) -> None:
    pipeline, store, api, cht_api = setup
    ledger = InboundLedger(store)
    row = ledger.get("crash_test", "c-1", "v1")
    row.place_id = "no-such-place"
    ledger.save(row)
    counts = write_ready(pipeline, ledger, api).counts
    assert counts["failed"] == 1 and counts["persons_created"] == 0
    row = ledger.get("crash_test", "c-1", "v1")
    assert row.status == "failed" and "Failed to find place" in row.reason  # what CHT says, kept


class BusyCht(BackgroundHttpServer):
    """The local CHT API behind a door that answers 503 to every ``POST /api/...`` (a write) while
    ``busy``; reads go through to CHT."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream
        self.busy = True
        self.refused = 0

    def handler(self) -> type[StandInHandler]:
        door = self

        class Handler(StandInHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "POST" and self.path.startswith("/api/") and door.busy:
                    door.refused += 1
                    send_json(self, 503, {"error": "service unavailable"})
                    return
                keep = ("authorization", "content-type", "accept")
                headers = {k: v for k, v in self.headers.items() if k.lower() in keep}
                answer = requests.request(
                    self.command, door.upstream + self.path, data=body, headers=headers, timeout=30
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

        return Handler


def placed_row(store, tmp_path, place_id: str) -> InboundRow:
    """The set-up row with its facility code, and a place table that knows the code."""
    (tmp_path / "places.csv").write_text(f"code,place_id\nMFL-100,{HC}\n")
    ledger = InboundLedger(store)
    row = ledger.get("crash_test", "c-1", "v1")
    row.record["place"], row.place_id = "MFL-100", place_id
    ledger.save(row)
    return row


def test_a_write_failing_for_a_passing_reason_is_tried_once_a_run_then_waits_for_a_replay(setup, tmp_path) -> None:
    pipeline, store, _, cht_api = setup
    placed_row(store, tmp_path, HC)
    ledger = InboundLedger(store)
    with BusyCht(cht_api.url) as door:
        api = ChtApiClient(door.url, "medic", cht_api.online, conn_id="cht_api_test")
        for n, run_id in enumerate(("run-1", "run-2", "run-3"), start=1):
            for _ in ("write_decided", "write_reviewed"):  # a run writes twice: the second waits for the next run
                counts = write_ready(pipeline, ledger, api, run_id, give_up_after=3).counts
            row = ledger.get("crash_test", "c-1", "v1")
            assert (door.refused, row.attempts) == (n, n)
        assert (row.status, counts["failed"], counts["failed_waiting"]) == (FAILED, 0, 1)
        assert row.reason == "gave up after 3 runs: HTTP 503 on POST /api/v1/people: service unavailable"
        assert row.record is not None  # kept for the replay
        assert write_ready(pipeline, ledger, api, "run-4", give_up_after=3).counts["failed_waiting"] == 1
        assert door.refused == 3  # a failed row is not sent again without a replay

        door.busy = False  # CHT is well again; a person replays the row
        places = load_place_table(tmp_path / "places.csv")
        assert replay(pipeline, ledger, places, ReplayChoice("failed"), "run-5").counts["replayed"] == 1
        assert ledger.get("crash_test", "c-1", "v1").status == PERSON_SENT  # looked up in CHT first
        counts = write_ready(pipeline, ledger, api, "run-5").counts
    assert (counts["persons_found"], counts["persons_created"], counts["reports_created"]) == (0, 1, 1)
    assert [len(x) for x in made(cht_api, "crash_test:c-1:v1")] == [1, 1]
    assert ledger.get("crash_test", "c-1", "v1").status == DONE


def test_a_person_refused_for_a_missing_place_is_sent_by_a_replay_once_the_table_is_fixed(setup, tmp_path) -> None:
    pipeline, store, api, cht_api = setup
    placed_row(store, tmp_path, "no-such-place")  # the table pointed at a place CHT does not have
    ledger = InboundLedger(store)
    assert write_ready(pipeline, ledger, api, "run-1").counts["failed"] == 1
    places = load_place_table(tmp_path / "places.csv")  # the table as it is now, fixed

    dry = replay(pipeline, ledger, places, ReplayChoice("both", ("c-1",), dry_run=True), "run-2").counts
    assert [(r["source_id"], r["status"], r["to"]) for r in dry["rows"]] == [("c-1", "failed", "person_sent")]
    assert "Failed to find place" in dry["rows"][0]["reason"]
    assert ledger.get("crash_test", "c-1", "v1").status == FAILED  # a dry run changes nothing

    assert replay(pipeline, ledger, places, ReplayChoice("failed", ("c-1",)), "run-3").counts["replayed"] == 1
    row = ledger.get("crash_test", "c-1", "v1")
    assert (row.status, row.place_id, row.attempts) == (PERSON_SENT, HC, 0)
    counts = write_ready(pipeline, ledger, api, "run-3").counts
    assert (counts["persons_created"], counts["reports_created"]) == (1, 1)
    assert replay(pipeline, ledger, places, ReplayChoice("failed", ("c-1",)), "run-4").counts["selected"] == 0
    people, reports = made(cht_api, "crash_test:c-1:v1")
    assert len(people) == 1 and len(reports) == 1 and people[0]["parent"]["_id"] == HC


def test_a_row_that_will_never_go_through_is_given_up_and_forgets_its_record(setup, tmp_path) -> None:
    pipeline, store, api, _ = setup
    placed_row(store, tmp_path, "no-such-place")
    ledger = InboundLedger(store)
    write_ready(pipeline, ledger, api, "run-1")
    places = load_place_table(tmp_path / "places.csv")
    counts = replay(pipeline, ledger, places, ReplayChoice("both", give_up=True), "run-2").counts
    assert (counts["selected"], counts["given_up"], counts["replayed"]) == (1, 1, 0)
    row = ledger.get("crash_test", "c-1", "v1")
    assert (row.status, row.record) == ("skipped", None)
    assert row.reason.startswith("given up by a person (run run-2): HTTP 404 on POST /api/v1/people")
    assert write_ready(pipeline, ledger, api, "run-3").counts["failed_waiting"] == 0
