"""DHIS2 tracker pipelines against the real local CHT and the DHIS2 stand-in: events of an event
program, tracked entities with enrollments and events of a tracker program, deterministic UIDs
(a re-run updates, never duplicates), the validation report per document in the ledger, the
pre-flight that names every missing metadata item and sends nothing, and both auth kinds."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from cht_bridge.config import load_pipeline
from cht_bridge.destinations.dhis2 import uids
from cht_bridge.errors import AuthError, PreflightError
from cht_bridge.state import StateStore
from cht_bridge.sync import run_pipeline
from cht_bridge.sync.resources import Endpoint, open_resources
from standins.dhis2 import Dhis2, demo_metadata
from tests.integration.aggregate_setup import ROOT_OU, facilities, org_uid, write_table

pytestmark = pytest.mark.integration

CREDENTIALS = {"username": "bridge", "password": "district", "token": "d2pat_" + "x" * 40}
PROGRAM, STAGE = "ChtAssess01", "ChtAssessS1"
TR_PROGRAM, TR_STAGE, PERSON, NAME_ATTR, ID_ATTR = (
    "ChtPregnan1",
    "ChtPregReg1",
    "nEenWmSyUEp",
    "w75KJ2mc4zz",
    "ChtPatId006",
)
TEMPERATURE, REFERRED, WEEKS = "AsmTempC001", "AsmRefer002", "AncWeeks004"
#: The health centre above the submitter (a CHW's parent is a health centre or a household in it).
FACILITY = {
    "expr": "(function (p) { while (p && p.type !== 'health_center') { p = p.parent; } return p && p._id; })(doc.contact)"
}


def stand_in(places: list[dict], version: str = "2.40.3", **extra: Any) -> Dhis2:
    """The stand-in with the demo's programs and an org unit per CHT health centre."""
    units = [(org_uid(p["_id"]), org_code(p["_id"]), p["name"]) for p in places]
    md = demo_metadata(units, extra=extra or None)
    assert md.get("organisationUnits", ROOT_OU)["id"] == ROOT_OU  # the root the user's capture scope starts at
    return Dhis2(md, CREDENTIALS, version=version).start()


def org_code(place_id: str) -> str:
    return f"HC-{place_id[:8]}"


def event_config(name: str, db: str, table: Path, **dhis2: Any) -> dict[str, Any]:
    """Assessments as events of the event program, the org unit from the CHW's health centre."""
    return {
        "name": name,
        "start_date": "2026-01-01",
        "cht": {"conn_id": "cht_tracker", "db": db},
        "relevant_to": "doc.type === 'data_record' && doc.form === 'assessment'",
        "mapping": {
            "report_id": "doc._id",
            "facility_id": FACILITY,
            "occurred_at": {"expr": "new Date(doc.reported_date).toISOString()"},
            "temperature": "doc.fields.temperature",
            "referral": "doc.fields.referral",
        },
        "destination": {
            "type": "dhis2",
            "conn_id": "dhis2_tracker",
            "auth": {"type": "basic"},
            "batch_size": 10,
            "dhis2": {
                "kind": "tracker",
                "program": PROGRAM,
                "program_stage": STAGE,
                "org_unit": {"place": "facility_id", "table": str(table)},
                "data_values": {TEMPERATURE: "temperature", REFERRED: "referral"},
                **dhis2,
            },
        },
        "batch_size": 50,
        "delivery": {"retries": 1, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05},
    }


def tracker_config(name: str, db: str, table: Path) -> dict[str, Any]:
    """Pregnancy registrations: the woman a tracked entity enrolled in the pregnancy program, each report an event."""
    config = event_config(name, db, table)
    config["relevant_to"] = "doc.type === 'data_record' && doc.form === 'pregnancy'"
    config["mapping"] = {
        "report_id": "doc._id",
        "facility_id": FACILITY,
        "occurred_at": {"expr": "new Date(doc.reported_date).toISOString()"},
        "patient.uuid": "doc.fields.patient_uuid",
        "patient.name": "doc.fields.patient_name",
        "patient.id": "doc.fields.patient_id",
        "weeks": "doc.fields.weeks_since_lmp",
    }
    config["destination"]["dhis2"] = {
        "kind": "tracker",
        "program": TR_PROGRAM,
        "program_stage": TR_STAGE,
        "org_unit": {"place": "facility_id", "table": str(table)},
        "data_values": {WEEKS: "weeks"},
        "tracked_entity": {"type": PERSON, "id": "patient.uuid",
                           "attributes": {NAME_ATTR: "patient.name", ID_ATTR: "patient.id"}},
    }  # fmt: skip
    return config


def write_pipeline(folder: Path, config: dict[str, Any]) -> Any:
    path = folder / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_pipeline(path)


def run(pipeline: Any, cht: Any, dhis2: Dhis2, state_url: str, auth: tuple[str, str] | None = None) -> Any:
    auth = auth or (CREDENTIALS["username"], CREDENTIALS["password"])
    r = open_resources(
        pipeline, cht=Endpoint(cht.url, cht.user), destination=Endpoint(dhis2.url, auth), state_url=state_url
    )
    try:
        return run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
    finally:
        r.close()


@pytest.fixture
def seeded(cht, tmp_path):
    cht.seed(400, seed=12)  # two health centres
    docs = cht.all_docs()
    table = write_table(tmp_path / "org_units.csv", facilities(docs))
    return docs, table


def reports(docs: list[dict], form: str) -> dict[str, dict]:
    return {d["_id"]: d for d in docs if d.get("type") == "data_record" and d.get("form") == form}


def facility_of(doc: dict, docs: list[dict]) -> str:
    """The health centre above a report's submitter, from the seeded contacts."""
    by_id = {d["_id"]: d for d in docs}
    place = by_id[doc["contact"]["parent"]["_id"]]
    while place.get("type") != "health_center":
        place = by_id[place["parent"]["_id"]]
    return place["_id"]


def ledger_rows(store: StateStore, name: str) -> dict[str, dict]:
    from sqlalchemy import select

    from cht_bridge.state.store import deliveries

    c = deliveries.c
    with store.engine.connect() as conn:
        query = select(c.doc_id, c.status, c.destination_id, c.last_error).where(c.pipeline == name)
        return {r.doc_id: r._asdict() for r in conn.execute(query)}


@pytest.mark.parametrize(("version", "api_version"), [("2.40.3", None), ("2.38.4", 38), ("2.41.1", None)])
def test_each_assessment_is_one_event_and_a_rerun_or_an_edit_never_duplicates_it(
    cht, seeded, store, tmp_path, version, api_version
):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs), version=version)
    try:
        extra = {"api_version": api_version} if api_version else {}
        name = f"events_{uuid.uuid4().hex[:8]}"
        pipeline = write_pipeline(tmp_path, event_config(name, cht.db, table, **extra))
        expected = reports(docs, "assessment")
        assert len(expected) >= 20
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.failed == 0 and summary.sent == len(expected), summary.as_dict()
        assert dhis2.stats()["events"] == len(expected) == dhis2.stats()["events_created"]
        if api_version:
            assert dhis2.stats()["by_path"].get("POST /tracker", 0) == dhis2.stats()["data_requests"]
        rows = ledger_rows(store, name)
        for doc_id, doc in expected.items():
            uid = uids.event_uid(PROGRAM, doc_id)
            assert rows[doc_id]["status"] == "delivered" and rows[doc_id]["destination_id"] == uid
            event = dhis2.tracker.get("EVENT", uid)
            assert event["orgUnit"] == org_uid(facility_of(doc, docs)) and event["programStage"] == STAGE
            values = {v["dataElement"]: v["value"] for v in event["dataValues"]}
            assert values == {TEMPERATURE: str(doc["fields"]["temperature"]), REFERRED: doc["fields"]["referral"]}

        requests_before = dhis2.stats()["data_requests"]
        again = run(pipeline, cht, dhis2, store.url)
        assert again.sent == 0 and dhis2.stats()["data_requests"] == requests_before

        edited = dict(next(iter(expected.values())))
        edited["fields"] = {**edited["fields"], "temperature": 40.1}
        cht.put(edited)
        after_edit = run(pipeline, cht, dhis2, store.url)
        assert after_edit.sent == 1
        stats = dhis2.stats()
        assert stats["events"] == len(expected) and stats["events_updated"] == 1
        event = dhis2.tracker.get("EVENT", uids.event_uid(PROGRAM, edited["_id"]))
        assert {v["dataElement"]: v["value"] for v in event["dataValues"]}[TEMPERATURE] == "40.1"
    finally:
        dhis2.stop()


def test_a_tracker_program_gets_one_tracked_entity_and_enrollment_per_woman_and_an_event_per_report(
    cht, seeded, store, tmp_path
):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        name = f"pregnancy_{uuid.uuid4().hex[:8]}"
        pipeline = write_pipeline(tmp_path, tracker_config(name, cht.db, table))
        expected = reports(docs, "pregnancy")
        women = {d["fields"]["patient_uuid"] for d in expected.values()}
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.failed == 0 and summary.sent == len(expected), summary.as_dict()
        stats = dhis2.stats()
        assert (stats["tracked_entities"], stats["enrollments"], stats["events"]) == (
            len(women),
            len(women),
            len(expected),
        )
        for doc in expected.values():
            woman = doc["fields"]["patient_uuid"]
            te = dhis2.tracker.get("TRACKED_ENTITY", uids.tracked_entity_uid(woman))
            attributes = {a["attribute"]: a["value"] for a in te["attributes"]}
            assert attributes == {NAME_ATTR: doc["fields"]["patient_name"], ID_ATTR: doc["fields"]["patient_id"]}
            event = dhis2.tracker.get("EVENT", uids.event_uid(TR_PROGRAM, doc["_id"]))
            assert event["enrollment"] == uids.enrollment_uid(TR_PROGRAM, woman)
        assert run(pipeline, cht, dhis2, store.url).sent == 0
        assert dhis2.stats()["tracked_entities"] == len(women)
    finally:
        dhis2.stop()


def test_the_preflight_names_each_missing_metadata_item_and_sends_nothing(cht, seeded, store, tmp_path):
    docs, table = seeded
    places = facilities(docs)
    dhis2 = stand_in(places)
    try:
        dhis2.metadata.remove("dataElements", REFERRED)
        dhis2.metadata.remove("programStages", STAGE)
        gone = org_uid(places[0]["_id"])
        dhis2.metadata.remove("organisationUnits", gone)
        outside = org_uid(places[1]["_id"])
        dhis2.metadata.add("organisationUnits", [{"id": outside, "name": "moved", "parent": None}])  # a root of its own
        name = f"preflight_{uuid.uuid4().hex[:8]}"
        pipeline = write_pipeline(tmp_path, event_config(name, cht.db, table))
        with pytest.raises(PreflightError) as refused:
            run(pipeline, cht, dhis2, store.url)
        message = str(refused.value)
        assert f"data element `{REFERRED}` (data_values.{REFERRED}): not found" in message
        assert f"program stage `{STAGE}` (program_stage): not found" in message
        assert f"org unit `{gone}` (org unit table {table}, place {places[0]['_id']}): not found" in message
        assert f"org unit `{outside}`" in message and "outside user 'bridge''s data capture org units" in message
        assert "nothing was sent" in message
        stats = dhis2.stats()
        assert stats["data_requests"] == 0 and stats["events"] == 0
        assert not any(path.startswith("POST") for path in stats["by_path"]), stats["by_path"]
        assert store.counts(name) == {} and store.checkpoint(name) is None
    finally:
        dhis2.stop()


def test_the_preflight_refuses_a_tracker_pipeline_pointed_at_an_event_program(cht, seeded, store, tmp_path):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        config = tracker_config(f"wrong_{uuid.uuid4().hex[:8]}", cht.db, table)
        config["destination"]["dhis2"].update(program=PROGRAM, program_stage=STAGE, data_values={TEMPERATURE: "weeks"})
        pipeline = write_pipeline(tmp_path, config)
        with pytest.raises(
            PreflightError, match=rf"program `{PROGRAM}`: is WITHOUT_REGISTRATION, the pipeline needs a tracker program"
        ):
            run(pipeline, cht, dhis2, store.url)
        assert dhis2.stats()["data_requests"] == 0
    finally:
        dhis2.stop()


def test_validation_report_errors_land_in_the_ledger_with_dhis2s_code_and_message(cht, seeded, store, tmp_path):
    docs, table = seeded
    places = facilities(docs)
    dhis2 = stand_in(places)
    try:
        dhis2.metadata.add("organisationUnits", [{"id": "ElseWhere01", "name": "not in the user's scope"}])
        lookup = json.dumps({p["_id"]: org_uid(p["_id"]) for p in places})
        first = "doc._id.charAt(0)"  # a uuid's first hex digit picks a quarter of the reports for each refusal
        config = event_config(f"refused_{uuid.uuid4().hex[:8]}", cht.db, table)
        config["mapping"]["org_unit"] = {
            "expr": f"{first} < '4' ? 'NoSuchOrgU1' : ({first} < '8' ? 'ElseWhere01' : ({lookup})[{FACILITY['expr']}])"
        }
        config["destination"]["dhis2"]["org_unit"] = {"field": "org_unit"}
        pipeline = write_pipeline(tmp_path, config)
        expected = reports(docs, "assessment")
        summary = run(pipeline, cht, dhis2, store.url)
        rows = ledger_rows(store, pipeline.name)
        bad = {d for d in expected if d[0] < "8"}
        assert bad and len(bad) < len(expected)
        for doc_id in expected:
            row, uid = rows[doc_id], uids.event_uid(PROGRAM, doc_id)
            if doc_id[0] < "4":
                assert row["status"] in ("failed", "dead") and row["destination_id"] is None
                assert (
                    f"E1011 EVENT {uid}: Could not find OrganisationUnit: `NoSuchOrgU1`, linked to Event."
                    in row["last_error"]
                )
            elif doc_id[0] < "8":
                assert row["status"] in ("failed", "dead")
                assert (
                    f"E1000 EVENT {uid}: User: `bridge`, has no write access to OrganisationUnit: `ElseWhere01`."
                    in row["last_error"]
                )
            else:
                assert row["status"] == "delivered" and row["destination_id"] == uid
        assert summary.sent == len(expected) - len(bad) and summary.failed + summary.dead_lettered == len(bad)
        assert dhis2.stats()["events"] == len(expected) - len(bad)
    finally:
        dhis2.stop()


def test_a_report_whose_place_has_no_org_unit_is_refused_before_sending_with_the_place(cht, seeded, store, tmp_path):
    docs, table = seeded
    places = facilities(docs)
    dhis2 = stand_in(places)
    try:
        lines = table.read_text().splitlines()
        missing = facility_of(next(iter(reports(docs, "assessment").values())), docs)
        table.write_text("\n".join(line for line in lines if not line.startswith(missing)) + "\n")
        pipeline = write_pipeline(tmp_path, event_config(f"noplace_{uuid.uuid4().hex[:8]}", cht.db, table))
        run(pipeline, cht, dhis2, store.url)
        rows = ledger_rows(store, pipeline.name)
        unplaced = [d for d, doc in reports(docs, "assessment").items() if facility_of(doc, docs) == missing]
        assert unplaced
        for doc_id in unplaced:
            assert rows[doc_id]["status"] in ("failed", "dead")
            assert rows[doc_id]["last_error"] == f"no DHIS2 org unit for CHT place '{missing}' in {table}"
    finally:
        dhis2.stop()


@pytest.mark.parametrize("auth_kind", ["basic", "token"])
def test_both_auth_kinds_through_the_airflow_connection_and_wrong_ones_stop_before_sending(
    cht, seeded, store, tmp_path, monkeypatch, auth_kind
):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        config = event_config(f"auth_{auth_kind}_{uuid.uuid4().hex[:6]}", cht.db, table)
        if auth_kind == "token":
            config["destination"]["auth"] = {"type": "header", "header": "Authorization", "prefix": "ApiToken "}
            conn = {"conn_type": "http", "host": dhis2.url, "password": CREDENTIALS["token"]}
        else:
            conn = {"conn_type": "http", "host": dhis2.url, "login": "bridge", "password": CREDENTIALS["password"]}
        pipeline = write_pipeline(tmp_path, config)
        monkeypatch.setenv("AIRFLOW_CONN_DHIS2_TRACKER", json.dumps(conn))
        r = open_resources(pipeline, cht=Endpoint(cht.url, cht.user), state_url=store.url)
        try:
            summary = run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        finally:
            r.close()
        assert summary.sent == len(reports(docs, "assessment")) == dhis2.stats()["events"]
        assert dhis2.stats()["unauthorized"] == 0

        monkeypatch.setenv("AIRFLOW_CONN_DHIS2_TRACKER", json.dumps({**conn, "password": "d2pat_wrong"}))
        cht.put({**next(iter(reports(docs, "assessment").values())), "edited": True})
        before = dhis2.stats()["data_requests"]
        r = open_resources(pipeline, cht=Endpoint(cht.url, cht.user), state_url=store.url)
        try:
            with pytest.raises(AuthError, match="DHIS2 refused the credentials of Airflow connection 'dhis2_tracker'"):
                run_pipeline(pipeline, client=r.client, destination=r.destination, store=r.store, mapper=r.mapper)
        finally:
            r.close()
        assert dhis2.stats()["data_requests"] == before and dhis2.stats()["unauthorized"] == 1
    finally:
        dhis2.stop()


def test_a_deleted_report_deletes_its_event(cht, seeded, store, tmp_path):
    docs, table = seeded
    dhis2 = stand_in(facilities(docs))
    try:
        config = event_config(f"deletes_{uuid.uuid4().hex[:8]}", cht.db, table)
        config["deletes"] = {"action": "send"}
        pipeline = write_pipeline(tmp_path, config)
        expected = reports(docs, "assessment")
        run(pipeline, cht, dhis2, store.url)
        doomed = next(iter(expected.values()))
        cht.put({"_id": doomed["_id"], "_rev": cht.get(doomed["_id"])["_rev"], "_deleted": True})
        run(pipeline, cht, dhis2, store.url)
        assert dhis2.stats()["events"] == len(expected) - 1
        assert dhis2.tracker.get("EVENT", uids.event_uid(PROGRAM, doomed["_id"]))["deleted"] is True
        assert ledger_rows(store, pipeline.name)[doomed["_id"]]["status"] == "deleted"
    finally:
        dhis2.stop()


@pytest.mark.parametrize("version", ["2.40.3", "2.41.1"])
def test_the_demo_event_pipeline_runs_and_the_demo_counts_its_events_through_the_api(cht, store, tmp_path, version):
    """include/pipelines/dhis2_assessment_events.yaml against the demo's stand-in (``standins/dhis2_demo``),
    on the demo's data (seed 42, whose facilities the demo table names); the totals read the events
    back page by page in the version's response shape."""
    from types import SimpleNamespace

    from standins import dhis2_demo

    cht.seed(700, seed=42)
    docs = cht.all_docs()
    config = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "include/pipelines/dhis2_assessment_events.yaml").read_text()
    )
    config["cht"]["db"] = cht.db
    pipeline = write_pipeline(tmp_path, config)
    dhis2 = dhis2_demo.start(tmp_path, "secret")
    dhis2.configure(version=version)
    try:
        summary = run(pipeline, cht, dhis2, store.url, auth=(dhis2_demo.USER, "secret"))
        expected = reports(docs, "assessment")
        assert summary.sent == dhis2.stats()["events"] > 0
        assert summary.sent + summary.failed + summary.dead_lettered == len(expected)  # unplaced: refused, with why
        dhis2_demo.PAGE_SIZE, before = 7, dhis2_demo.PAGE_SIZE  # several pages
        cht_conn = {
            "AIRFLOW_CONN_CHT_LOCAL": json.dumps({"host": cht.url, "login": cht.user[0], "password": cht.user[1]})
        }
        stack = SimpleNamespace(dhis2=dhis2, credentials={"dhis2": "secret"}, connections=lambda: cht_conn,
                                state_db=tmp_path / "demo-state.sqlite", airflow_home=tmp_path)  # fmt: skip
        pipeline_db = dhis2_demo.PIPELINE
        dhis2_demo.PIPELINE = tmp_path / f"{pipeline.name}.yaml"  # the demo file, on this test's database
        try:
            totals = dhis2_demo.tracker_totals(stack)
        finally:
            dhis2_demo.PAGE_SIZE, dhis2_demo.PIPELINE = before, pipeline_db
        assert totals["programs"]["ChtAssess01"]["events"] == summary.sent
        assert totals["programs"]["ChtPregnan1"]["events"] == 0
        r = totals["reconciliation"]
        assert r["cht_events"] == r["dhis2_events"] == summary.sent and r["differences"] == 0
        assert r["unplaced_reports"] == summary.failed + summary.dead_lettered
    finally:
        dhis2.stop()
    restarted = dhis2_demo.start(tmp_path, "secret")  # the sandbox's second run finds what the first stored
    try:
        assert restarted.stats()["events"] == summary.sent
    finally:
        restarted.stop()


def test_metadata_named_by_code_is_checked_and_sent_by_code(cht, seeded, store, tmp_path):
    docs, _ = seeded
    places = facilities(docs)
    dhis2 = stand_in(places)
    try:
        table = tmp_path / "codes.csv"
        table.write_text("place_id,org_unit\n" + "".join(f"{p['_id']},{org_code(p['_id'])}\n" for p in places))
        config = event_config(f"codes_{uuid.uuid4().hex[:8]}", cht.db, table)
        config["destination"]["dhis2"].update(
            id_scheme="CODE", program="CHT_ASSESSMENT", program_stage="CHT_ASSESSMENT_VISIT",
            data_values={"CHT_TEMPERATURE": "temperature", "CHT_REFERRED": "referral"},
        )  # fmt: skip
        pipeline = write_pipeline(tmp_path, config)
        expected = reports(docs, "assessment")
        summary = run(pipeline, cht, dhis2, store.url)
        assert summary.sent == len(expected) == dhis2.stats()["events"]
        doc_id, doc = next(iter(expected.items()))
        event = dhis2.tracker.get("EVENT", uids.event_uid("CHT_ASSESSMENT", doc_id))
        assert (event["program"], event["programStage"], event["orgUnit"]) == (
            PROGRAM,
            STAGE,
            org_uid(facility_of(doc, docs)),
        )
        assert {v["dataElement"] for v in event["dataValues"]} == {TEMPERATURE, REFERRED}
        dhis2.metadata.remove("dataElements", REFERRED)
        with pytest.raises(
            PreflightError, match="data element `CHT_REFERRED` \\(data_values.CHT_REFERRED\\): not found"
        ):
            run(write_pipeline(tmp_path, {**config, "name": config["name"] + "_2"}), cht, dhis2, store.url)
    finally:
        dhis2.stop()
