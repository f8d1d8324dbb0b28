"""No list row is lost: rows that wait for a person's fix keep their record and go through once fixed.

Whole reverse DAGs (``dag.test()``) against the local CHT API: a row whose facility code is not in
the place table waits and is placed by a later run once the code is added; a report CHT refuses
because its form is not in ``app_settings`` waits as ``failed`` and is sent, once, by a replay
(the reverse DAG's ``replay`` Param, which its ``receive`` task reads) after the form is added.
"""

from __future__ import annotations

import pytest

from tests.integration.reverse_setup import HC, contact_list
from tests.integration.test_reverse_pipeline import cht_docs, ledger_rows, run_reverse_dag

pytestmark = pytest.mark.integration


def skip(question) -> str:
    return "Skip this row"


@pytest.fixture
def contacts(tmp_path, monkeypatch, cht_api, airflow_db):
    """The contact-tracing list of ``reverse_setup`` as a CSV pipeline with its own place table."""
    folder, name, _, places = contact_list(tmp_path, monkeypatch, cht_api)
    return folder, name, places


def test_an_unplaced_row_keeps_its_record_and_goes_through_once_its_code_is_in_the_table(
    monkeypatch, cht_api, contacts
) -> None:
    folder, name, places = contacts
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success", xcoms
    assert (xcoms["match"]["unplaced"], xcoms["match"]["waiting_place"]) == (1, 1)
    row = ledger_rows(name)["c-6"]
    assert row.status == "unplaced" and "MFL-999" in row.reason
    assert row.record["person"]["given_name"] == "Peter"  # kept: it is needed once the place is known
    people, reports = cht_docs(cht_api)

    places.write_text(places.read_text() + f"MFL-999,{HC},Ahero Health Centre annex\n")
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success", xcoms
    assert xcoms["receive"]["received"] == 0  # the list did not change: the ledger had the row
    assert (xcoms["match"]["placed_again"], xcoms["match"]["waiting_place"], xcoms["match"]["new"]) == (1, 0, 1)
    assert (xcoms["write_decided"]["persons_created"], xcoms["write_decided"]["reports_created"]) == (1, 1)
    row = ledger_rows(name)["c-6"]
    assert (row.status, row.decision, row.place_id, row.person_created) == ("done", "new", HC, True)
    assert row.record is None  # done: the patient data is not kept any longer
    people_after, reports_after = cht_docs(cht_api)
    new_people = [p for p in people_after if p["_id"] not in {q["_id"] for q in people}]
    assert [(p["name"], p["parent"]["_id"], p["source_ref"]) for p in new_people] == [
        ("Peter Mwangi", HC, row.source_ref)
    ]
    new_reports = [r for r in reports_after if r["_id"] not in {q["_id"] for q in reports}]
    assert [(r["fields"]["patient_uuid"], r["fields"]["source_ref"]) for r in new_reports] == [
        (new_people[0]["_id"], row.source_ref)
    ]

    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success", xcoms
    assert (xcoms["match"]["placed_again"], xcoms["match"]["waiting_place"], xcoms["match"]["new"]) == (0, 0, 0)
    assert xcoms["write_decided"]["reports_created"] == 0
    assert cht_docs(cht_api) == (people_after, reports_after)  # nothing new in CHT


def test_a_report_refused_for_a_missing_form_waits_and_a_replay_sends_it_once(monkeypatch, cht_api, contacts) -> None:
    folder, name, _ = contacts
    forms = cht_api.settings()["forms"]
    cht_api.update_settings(forms={code: form for code, form in forms.items() if code != "CONTACT_TRACE"})
    people_before, _ = cht_docs(cht_api)

    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success", xcoms
    written = xcoms["write_decided"]
    assert (written["failed"], written["persons_created"], written["reports_created"]) == (3, 1, 0)
    rows = ledger_rows(name)
    for contact in ("c-1", "c-2", "c-4"):
        assert rows[contact].status == "failed", contact
        assert "Form not found: CONTACT_TRACE" in rows[contact].reason
        assert rows[contact].record is not None  # kept for the replay
    assert written["failed_waiting"] == 3
    assert rows["c-4"].person_created  # the person was created before CHT refused the report
    people, reports = cht_docs(cht_api)
    assert reports == [] and len(people) == len(people_before) + 1

    # a dry run lists what a replay would send and changes nothing
    conf = {"replay": "failed", "source_ids": ["c-1", "c-9"], "dry_run": True}
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip, conf)
    assert state == "success", xcoms
    assert [(r["source_id"], r["status"], r["to"]) for r in xcoms["receive"]["replay"]["rows"]] == [
        ("c-1", "failed", "report_sent")
    ]
    assert xcoms["receive"]["replay"]["not_found"] == ["c-9"] and xcoms["receive"]["replay"]["dry_run"] is True
    assert set(xcoms["receive"]) == {"replay"}  # the source was not read
    assert "match" not in xcoms and "write_decided" not in xcoms  # skipped: nothing matched or written
    assert {c: r.status for c, r in ledger_rows(name).items()} == {c: r.status for c, r in rows.items()}

    cht_api.update_settings(forms=forms)  # the fix: the form is declared in app_settings
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip, {"replay": "failed"})
    assert state == "success", xcoms
    assert (xcoms["receive"]["replay"]["selected"], xcoms["receive"]["replay"]["replayed"]) == (3, 3)
    assert (xcoms["match"]["unplaced"], xcoms["match"]["waiting_place"]) == (0, 1)  # c-6 still waits for MFL-999
    written = xcoms["write_decided"]
    assert (written["reports_created"], written["persons_created"], written["failed_waiting"]) == (3, 0, 0)
    rows = ledger_rows(name)
    assert {c: rows[c].status for c in ("c-1", "c-2", "c-4")} == {"c-1": "done", "c-2": "done", "c-4": "done"}
    assert all(rows[c].record is None for c in ("c-1", "c-2", "c-4"))
    people_after, reports_after = cht_docs(cht_api)
    assert people_after == people  # c-4's person from the first run is used, not created again
    assert sorted(r["fields"]["patient_uuid"] for r in reports_after) == sorted(
        ["p-achieng", "p-brian", rows["c-4"].person_id]
    )

    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip, {"replay": "failed"})
    assert state == "success", xcoms
    assert xcoms["receive"]["replay"]["selected"] == 0  # nothing failed any more: a second replay sends nothing
    assert cht_docs(cht_api) == (people_after, reports_after)


def test_an_unplaced_row_whose_record_an_earlier_version_erased_is_closed_with_its_code(
    monkeypatch, cht_api, contacts
) -> None:
    """Before rows waited with their record, an unplaced row was closed and its record erased: such a
    row has nothing left to place, so it is closed (its missing code kept in the reason), not
    counted as waiting on every run."""
    from sqlalchemy import update

    from cht_bridge.state.inbound import inbound
    from tests.integration.dagrun import state_store

    folder, name, _ = contacts
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success" and xcoms["match"]["waiting_place"] == 1, xcoms
    store = state_store()
    try:  # what an earlier version left: unplaced, record erased
        with store.engine.begin() as conn:
            conn.execute(update(inbound).where(inbound.c.source_id == "c-6").values(record=None))
    finally:
        store.close()

    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, skip)
    assert state == "success", xcoms
    assert (xcoms["match"]["orphaned"], xcoms["match"]["waiting_place"]) == (1, 0)
    row = ledger_rows(name)["c-6"]
    assert row.status == "skipped" and "MFL-999" in row.reason and "erased by an earlier version" in row.reason
