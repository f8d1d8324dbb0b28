"""A crash between a write to CHT and the ledger's record of it never duplicates anything.

CHT's people and records APIs have no idempotency key, so the dangerous moment is right after CHT
created a document and before the ledger knows its id. The crash is injected exactly there (the
ledger's next save raises, as if the worker died); the next run must find the document by its
``source_ref`` instead of posting it again. The CHT side is the real local CHT API.
"""

from __future__ import annotations

import pytest

from cht_bridge.destinations.cht_api import ChtApiClient
from cht_bridge.reverse.loader import parse_reverse_pipeline
from cht_bridge.reverse.run import write_ready
from cht_bridge.state import StateStore
from cht_bridge.state.inbound import DONE, PERSON_SENT, READY, REPORT_SENT, InboundLedger, InboundRow
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
