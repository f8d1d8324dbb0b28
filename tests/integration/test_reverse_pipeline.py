"""Reverse pipelines end to end: a list becomes CHT people and reports, through real DAG runs.

The CHT side is the local CHT API in front of the local CouchDB server; review questions are
answered through Airflow's human-in-the-loop tables by a scripted reviewer, as a person would in
the UI. Nothing of ours is mocked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from standins.reviewer import Question, ScriptedReviewer
from tests.integration.dagrun import ROOT, state_store
from tests.integration.reverse_setup import CONTACTS_CSV, EXPECTED, HC, api_connection, contact_list

pytestmark = pytest.mark.integration


def run_reverse_dag(
    monkeypatch, folder: Path, dag_id: str, choose=None, conf: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any], list]:
    """Run one reverse DAG with ``dag.test()`` (Params ``conf``); a scripted reviewer answers its questions."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(folder))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    reviewer = ScriptedReviewer(dag_id, choose or (lambda q: "Decide later"))
    with reviewer:
        run = dag.test(run_conf=conf)
    assert not reviewer.errors, reviewer.errors
    with create_session() as session:
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, key="return_value")).all()
        xcoms = {(r.task_id if r.map_index < 0 else f"{r.task_id}[{r.map_index}]"): r.value for r in rows}
    return str(run.state), xcoms, reviewer.answered


def ledger_rows(name: str) -> dict[str, Any]:
    from cht_bridge.state.inbound import InboundLedger

    store = state_store()
    try:
        ledger = InboundLedger(store)
        return {
            row.source_id: row
            for row in ledger.rows(
                name,
                ["received", "review", "ready", "person_sent", "report_sent", "done", "unplaced", "failed", "skipped"],
            )
        }
    finally:
        store.close()


def cht_docs(cht_api) -> tuple[list[dict], list[dict]]:
    docs = cht_api.db.all_docs()
    people = [d for d in docs if d.get("type") == "person"]
    reports = [d for d in docs if d.get("type") == "data_record" and d.get("form") == "CONTACT_TRACE"]
    return people, reports


@pytest.fixture
def trace_list(tmp_path, monkeypatch, cht_api, airflow_db):
    folder, name, lists, _ = contact_list(tmp_path, monkeypatch, cht_api)
    return folder, name, lists


def test_a_list_becomes_people_and_reports_and_a_rerun_adds_nothing(monkeypatch, cht_api, trace_list) -> None:
    folder, name, _ = trace_list
    people_before, _ = cht_docs(cht_api)

    def choose(question: Question) -> str:
        assert "c-3" in question.subject and "Mary Wanjiru" in question.body  # side by side
        assert question.options[:2] == ["Link to candidate 1", "Link to candidate 2"]
        return "Link to candidate 1"

    state, xcoms, answered = run_reverse_dag(monkeypatch, folder, name, choose)
    assert state == "success", xcoms
    assert len(answered) == 1
    assert xcoms["match"]["link"] == 2 and xcoms["match"]["review"] == 1 and xcoms["match"]["new"] >= 1
    assert xcoms["match"]["unplaced"] == 1 and xcoms["match"]["duplicate"] == 1

    rows = ledger_rows(name)
    for contact, (status, decision, person_id) in EXPECTED.items():
        row = rows[contact]
        if contact == "c-3":  # answered by the reviewer in the same run
            assert (row.status, row.decision, row.decided_by) == ("done", "link", "demo-reviewer")
            assert row.person_id in {"p-mary-1", "p-mary-2"}
            continue
        assert (row.status, row.decision) == (status, decision), contact
        if person_id:
            assert row.person_id == person_id
        if status in ("done", "skipped"):
            assert row.record is None  # patient data is not kept once the row is closed
        if status == "unplaced":
            assert row.record is not None  # it waits for its code in the place table, with its data
    assert "MFL-999" in rows["c-6"].reason
    assert rows["c-5"].same_as == "c-4"

    people, reports = cht_docs(cht_api)
    new_people = [p for p in people if p["_id"] not in {q["_id"] for q in people_before}]
    assert len(new_people) == 1
    zawadi = new_people[0]
    assert zawadi["name"] == "Zawadi Chebet" and zawadi["phone"] == "+254799123456"
    assert zawadi["parent"]["_id"] == HC and zawadi["source_ref"] == f"{name}:c-4:{rows['c-4'].source_version}"
    assert rows["c-4"].person_id == zawadi["_id"] and rows["c-4"].person_created
    by_subject = sorted(r["fields"]["patient_uuid"] for r in reports)
    assert by_subject == sorted(["p-achieng", "p-brian", rows["c-3"].person_id, zawadi["_id"]])
    assert all(r["errors"] == [] for r in reports)  # every field CHT needs was there
    assert {r["fields"]["source_ref"] for r in reports} == {rows[c].source_ref for c in ("c-1", "c-2", "c-3", "c-4")}

    state, xcoms, answered = run_reverse_dag(monkeypatch, folder, name)
    assert state == "success" and answered == []
    assert xcoms["receive"]["received"] == 0
    assert cht_docs(cht_api) == (people, reports)  # nothing new in CHT


def test_a_row_left_for_later_is_asked_again_and_nothing_is_written_until_then(
    monkeypatch, cht_api, trace_list
) -> None:
    folder, name, _ = trace_list
    state, _, answered = run_reverse_dag(monkeypatch, folder, name, lambda q: "Decide later")
    assert state == "success" and len(answered) == 1
    row = ledger_rows(name)["c-3"]
    assert row.status == "review" and row.person_id is None and row.record is not None
    reports = cht_docs(cht_api)[1]
    assert row.source_ref not in {r["fields"]["source_ref"] for r in reports}

    state, _, answered = run_reverse_dag(monkeypatch, folder, name, lambda q: "Create a new person")
    assert state == "success" and [q.subject for q, _ in answered] == [answered[0][0].subject]
    row = ledger_rows(name)["c-3"]
    assert (row.status, row.decision, row.person_created) == ("done", "new", True)


def test_a_changed_file_adds_only_its_new_rows(monkeypatch, cht_api, trace_list) -> None:
    folder, name, lists = trace_list
    run_reverse_dag(monkeypatch, folder, name, lambda q: "Skip this row")
    before = cht_docs(cht_api)
    path = lists / "contacts-2026-11-22.csv"
    path.write_text(CONTACTS_CSV + "c-7,Kipchoge,Langat,M,1968-04-04,,,MFL-100,case-9,2026-11-23\n")
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name)
    assert state == "success"
    assert xcoms["receive"]["received"] == 1 and xcoms["receive"]["unchanged"] == 6
    people, reports = cht_docs(cht_api)
    assert len(reports) == len(before[1]) + 1 and len(people) == len(before[0]) + 1


def test_an_invalid_pipeline_file_fails_only_its_own_dag(monkeypatch, cht_api, trace_list) -> None:
    folder, name, _ = trace_list
    (folder / "broken.yaml").write_text("name: broken_list\nsource: {type: ftp}\n")
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("CHT_BRIDGE_REVERSE_PIPELINES", str(folder))
    bag = DagBag(str(ROOT / "dags"))
    assert not bag.import_errors
    assert name in bag.dag_ids and "broken_list" in bag.dag_ids
    state, _, _ = run_reverse_dag(monkeypatch, folder, "broken_list")
    assert state == "failed"
    assert os.environ.get("CHT_BRIDGE_REVERSE_PIPELINES") == str(folder)


def test_a_wrong_cht_password_fails_the_run_plainly_and_writes_nothing(monkeypatch, cht_api, trace_list) -> None:
    import json

    folder, name, _ = trace_list
    connection = json.loads(api_connection(cht_api))
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", json.dumps({**connection, "password": "not-the-password"}))
    people_before, _ = cht_docs(cht_api)
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name)
    assert state == "failed" and "match" not in xcoms
    assert xcoms["receive"]["received"] == 6  # the list was read; CHT refused the first lookup
    assert {row.status for row in ledger_rows(name).values()} == {"received", "unplaced"}  # no CHT needed for that
    assert cht_docs(cht_api) == (people_before, [])

    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", api_connection(cht_api))  # fixed: the next run goes on
    state, xcoms, _ = run_reverse_dag(monkeypatch, folder, name, lambda q: "Skip this row")
    assert state == "success" and xcoms["receive"]["received"] == 0 and xcoms["match"]["link"] == 2
