"""``destination.type: openmrs`` end to end: a real local CHT, real DAG runs, the OpenMRS FHIR2 stand-in.

Each test writes a pipeline made of the FHIR templates (the KenyaEMR and Bahmni examples' shape),
runs it with ``dag.test()``, and reads what the stand-in was asked (its request log) and holds.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from cht_bridge.destinations.openmrs import IDENTIFIER_LOCATION
from cht_bridge.fhir.ids import resource_id
from standins.openmrs import FHIR_BASE, OpenMrs, table_locations
from tests.integration.dagrun import new_pipeline, run_dag, state_store

CHT_SYSTEM = "https://cht.example.org/id"
PATIENTS = "doc.type === 'person' && doc.role === 'patient'"
REFERRALS = "doc.type === 'data_record' && doc.form === 'assessment' && doc.fields.referral === 'yes'"


def location_table(docs: list[dict], path: Path, *, leave_out: str | None = None) -> Path:
    """An ``emr_locations.csv`` for the seeded health centres (all, or all but ``leave_out``)."""
    with open(path, "w", newline="") as out:
        table = csv.writer(out)
        table.writerow(["cht_place", "location_uuid", "name"])
        for doc in docs:
            if doc.get("type") == "health_center" and doc["_id"] != leave_out:
                table.writerow([doc["_id"], str(uuid.uuid5(uuid.NAMESPACE_URL, doc["_id"])), doc.get("name", "")])
    return path


def patients_pipeline(table: Path) -> dict[str, Any]:
    return {
        "relevant_to": PATIENTS,
        "mapping": None,
        "fhir": {
            "identifier_type": "CHT Document ID",
            "resources": [
                {
                    "template": "patient",
                    "from": "doc",
                    "fields": {"organization": "doc.parent.parent"},
                    "identifiers": [{"type": "CHT Patient ID", "value": {"path": "doc.patient_id", "optional": True}}],
                }
            ],
        },
        "destination": destination(table),
    }


def referrals_pipeline(table: Path) -> dict[str, Any]:
    return {
        "relevant_to": REFERRALS,
        "mapping": None,
        "fhir": {
            "resources": [
                {
                    "template": "patient",
                    "from": "doc.patient",
                    "fields": {"organization": "doc.patient.parent.parent"},
                    "identifiers": [
                        {"system": f"{CHT_SYSTEM}/patient-id", "value": {"path": "doc.patient.patient_id"}}
                    ],
                },
                {"template": "practitioner", "from": "doc.contact"},
                {
                    "template": "task",
                    "from": "doc",
                    "fields": {"reason": {"path": "doc.fields.symptoms", "optional": True}},
                    "codes": {"code": {"system": "http://snomed.info/sct", "code": "3457005"}},
                },
            ]
        },
        "destination": {
            **destination(table),
            "openmrs": {
                **destination(table)["openmrs"],
                "identifier_types": {CHT_SYSTEM: "CHT Document ID", f"{CHT_SYSTEM}/patient-id": "CHT Patient ID"},
            },
        },
    }


def destination(table: Path, **changes: Any) -> dict[str, Any]:
    return {
        "type": "openmrs",
        "conn_id": "openmrs_test",
        "auth": {"type": "cookie", "login_path": "/openmrs/ws/rest/v1/session"},
        "concurrency": 1,
        "openmrs": {"identifier_system": CHT_SYSTEM, "locations": str(table)},
        **changes,
    }


def connection(server: OpenMrs, password: str | None = None) -> str:
    login, secret = server.credentials
    return json.dumps({"conn_type": "http", "host": server.url, "login": login, "password": password or secret})


class World:
    def __init__(self, cht, openmrs: OpenMrs, table: Path, monkeypatch, tmp_path: Path) -> None:
        self.cht, self.openmrs, self.table = cht, openmrs, table
        self.monkeypatch, self.tmp_path = monkeypatch, tmp_path
        self.docs = cht.all_docs()

    def pipeline(self, config: dict[str, Any], prefix: str = "openmrs") -> tuple[Path, str]:
        config = {k: v for k, v in config.items() if v is not None}
        folder, name = new_pipeline(
            self.monkeypatch, self.tmp_path, self.cht, connection(self.openmrs), prefix, **config
        )
        self.monkeypatch.setenv("AIRFLOW_CONN_OPENMRS_TEST", connection(self.openmrs))
        path = folder / f"{name}.yaml"
        import yaml

        written = yaml.safe_load(path.read_text())
        written.pop("mapping", None)  # the fhir: block is the mapping
        path.write_text(yaml.safe_dump(written, sort_keys=False))
        return folder, name

    def patients(self) -> list[dict]:
        return [d for d in self.docs if d.get("type") == "person" and d.get("role") == "patient"]

    def referrals(self) -> list[dict]:
        return [
            d for d in self.docs if d.get("form") == "assessment" and (d.get("fields") or {}).get("referral") == "yes"
        ]


@pytest.fixture
def world(cht, monkeypatch, airflow_db, tmp_path):
    cht.seed(120)
    table = location_table(cht.all_docs(), tmp_path / "emr_locations.csv")
    with OpenMrs(credentials=("admin", uuid.uuid4().hex), locations=table_locations(table)) as openmrs:
        yield World(cht, openmrs, table, monkeypatch, tmp_path)


def writes(openmrs: OpenMrs, resource_type: str) -> list[tuple[str, str, int]]:
    return [r for r in openmrs.requests_made(resource_type=resource_type) if r[0] in ("POST", "PUT")]


def test_first_run_posts_each_patient_with_its_id_and_an_edit_in_cht_puts_the_same_id(world, monkeypatch):
    folder, name = world.pipeline(patients_pipeline(world.table))
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success", summary
    patients = world.patients()
    assert patients and summary["sent"] == len(patients)
    posted = writes(world.openmrs, "Patient")
    assert {r[0] for r in posted} == {"POST"} and len(posted) == len(patients)
    held = {p["id"]: p for p in world.openmrs.resources("Patient")}
    assert set(held) == {resource_id("Patient", p["_id"]) for p in patients}
    some = patients[0]
    uuid_ = resource_id("Patient", some["_id"])
    assert {"type": {"text": "CHT Document ID"}, "value": some["_id"]}.items() <= held[uuid_]["identifier"][0].items()
    assert state_store().ledger(name, some["_id"])["destination_id"] == f"Patient/{uuid_}"
    assert world.openmrs.logins == 1  # one login, its cookie reused for every request

    edited = {**world.cht.get(some["_id"]), "name": "Achieng Otieno"}
    world.cht.put(edited)
    before = len(world.openmrs.log)
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] == 1
    second = [r for r in world.openmrs.log[before:] if r[1].startswith(FHIR_BASE + "/Patient")]
    assert second == [
        ("GET", f"{FHIR_BASE}/Patient/{uuid_}", 200),
        ("PUT", f"{FHIR_BASE}/Patient/{uuid_}", 200),
    ]
    assert {"given": ["Achieng"], "family": "Otieno"}.items() <= world.openmrs.resources_by_id("Patient")[uuid_][
        "name"
    ][0].items()
    assert len(world.openmrs.resources("Patient")) == len(patients)


def test_a_person_deleted_in_cht_is_voided_at_openmrs(world, monkeypatch):
    config = {**patients_pipeline(world.table), "deletes": {"action": "send"}}
    folder, name = world.pipeline(config)
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    gone = world.patients()[2]
    uuid_ = resource_id("Patient", gone["_id"])
    world.cht.put({**world.cht.get(gone["_id"]), "_deleted": True})
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["deleted"] == 1, summary
    assert ("DELETE", f"{FHIR_BASE}/Patient/{uuid_}", 200) in world.openmrs.log
    assert uuid_ not in world.openmrs.resources_by_id("Patient")  # voided: a GET answers 410


def test_a_put_answered_404_becomes_a_post_of_the_same_id(world, monkeypatch):
    folder, name = world.pipeline(patients_pipeline(world.table))
    assert run_dag(monkeypatch, folder, name)[0] == "success"
    some = world.patients()[1]
    uuid_ = resource_id("Patient", some["_id"])
    path = f"{FHIR_BASE}/Patient/{uuid_}"

    def purge_before_put(method: str, where: str) -> None:
        if method == "PUT" and where == path:  # gone between the GET (200) and the PUT
            world.openmrs.purge("Patient", uuid_)

    world.openmrs.before = purge_before_put
    world.cht.put({**world.cht.get(some["_id"]), "phone": "+254712345678"})
    before = len(world.openmrs.log)
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] == 1
    steps = [r for r in world.openmrs.log[before:] if r[1].startswith(FHIR_BASE + "/Patient")]
    assert steps == [("GET", path, 200), ("PUT", path, 404), ("POST", f"{FHIR_BASE}/Patient", 201)]
    assert world.openmrs.resources_by_id("Patient")[uuid_]["telecom"][0]["value"] == "+254712345678"
    assert state_store().ledger(name, some["_id"])["status"] == "delivered"


def test_an_expired_session_is_renewed_once_and_the_run_goes_on(world, monkeypatch):
    folder, name = world.pipeline(patients_pipeline(world.table))
    posts = []

    def expire_after_third_post(method: str, where: str) -> None:
        if method == "POST":
            posts.append(where)
            if len(posts) == 3:
                world.openmrs.expire_sessions()

    world.openmrs.before = expire_after_third_post
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    assert summary["sent"] == len(world.patients())
    assert world.openmrs.logins == 2
    refused = [r for r in world.openmrs.log if r[2] == 401]
    assert len(refused) == 1 and refused[0][0] == "POST"
    assert len(world.openmrs.resources("Patient")) == len(world.patients())


def test_a_401_after_the_renewal_stops_the_task_with_a_plain_message(world, monkeypatch, capfd):
    folder, name = world.pipeline(patients_pipeline(world.table))

    def refuse_after_first_post(method: str, where: str) -> None:
        if method == "POST":
            world.openmrs.refuse_all = True  # this request and every later one: 401 whatever they carry

    world.openmrs.before = refuse_after_first_post
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    assert world.openmrs.logins == 2  # the first login, and one renewal
    assert [r[2] for r in world.openmrs.log if r[2] == 401] == [401, 401]
    text = "".join(capfd.readouterr())
    assert "OpenMRS refused the credentials of Airflow connection 'openmrs_test' (HTTP 401)" in text
    assert world.openmrs.credentials[1] not in text
    assert state_store().counts(name) == {}  # nothing recorded: the run stopped before its first batch's record


def test_a_wrong_password_fails_fast_at_the_login(world, monkeypatch, capfd):
    folder, name = world.pipeline(patients_pipeline(world.table))
    monkeypatch.setenv("AIRFLOW_CONN_OPENMRS_TEST", connection(world.openmrs, password="wrong"))
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    assert world.openmrs.logins == 0 and not world.openmrs.requests_made("POST")
    assert "refused the credentials of Airflow connection 'openmrs_test'" in "".join(capfd.readouterr())


def test_a_referral_whose_patient_was_never_sent_brings_its_patient_first(world, monkeypatch):
    folder, name = world.pipeline(referrals_pipeline(world.table), prefix="referrals")
    state, summary = run_dag(monkeypatch, folder, name)
    referrals = world.referrals()
    assert state == "success" and referrals and summary["sent"] == len(referrals), summary
    log = world.openmrs.log
    assert not [r for r in log if r[2] >= 400 and r[0] != "GET"], "no write was refused"
    tasks = world.openmrs.resources_by_id("Task")
    people = {d["_id"]: d for d in world.docs}
    patients = world.openmrs.resources_by_id("Patient")
    for report in referrals:
        task = tasks[resource_id("Task", report["_id"])]
        location = task["location"]["reference"]
        health_centre = people[report["fields"]["patient_uuid"]]["parent"]["parent"]["_id"]
        assert location == f"Location/{uuid.uuid5(uuid.NAMESPACE_URL, health_centre)}"
        patient_uuid = resource_id("Patient", report["fields"]["patient_uuid"])
        assert task["for"] == {"reference": f"Patient/{patient_uuid}"}
        assert patient_uuid in patients
        extension = patients[patient_uuid]["identifier"][0]["extension"][0]
        assert extension == {"url": IDENTIFIER_LOCATION, "valueReference": {"reference": location}}
        row = state_store().ledger(name, report["_id"])
        assert row["destination_id"] == f"Task/{task['id']}"
    # the Patient went before the Task that refers to it, and no patient was created twice
    first_task = next(i for i, r in enumerate(log) if r[:2] == ("POST", f"{FHIR_BASE}/Task"))
    assert any(r[:2] == ("POST", f"{FHIR_BASE}/Patient") for r in log[:first_task])
    assert len(patients) == len({r["fields"]["patient_uuid"] for r in referrals})
    assert all(p["identifier"][0]["type"] == {"text": "CHT Document ID"} for p in patients.values())


def test_a_place_without_a_location_is_refused_with_the_place_in_the_ledger(world, monkeypatch):
    patients = world.patients()
    place = patients[0]["parent"]["parent"]["_id"]
    table = location_table(world.docs, world.tmp_path / "partial.csv", leave_out=place)
    folder, name = world.pipeline(patients_pipeline(table))
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success"
    unplaced = [p for p in patients if p["parent"]["parent"]["_id"] == place]
    placed_ids = {resource_id("Patient", p["_id"]) for p in patients if p not in unplaced}
    assert summary["sent"] == len(patients) - len(unplaced)
    row = state_store().ledger(name, unplaced[0]["_id"])
    assert row["status"] == "dead"
    assert f"CHT place '{place}' has no OpenMRS location" in row["last_error"]
    assert {p["id"] for p in world.openmrs.resources("Patient")} == placed_ids


def test_an_invalid_payload_is_refused_before_anything_is_sent(world, monkeypatch):
    config = patients_pipeline(world.table)
    config["fhir"]["resources"][0]["identifiers"] = [
        {"system": "https://cht.example.org/id/unmapped", "value": {"path": "doc.patient_id"}}
    ]
    folder, name = world.pipeline(config)
    state, summary = run_dag(monkeypatch, folder, name)
    assert state == "success" and summary["sent"] == 0
    assert not writes(world.openmrs, "Patient")
    row = state_store().ledger(name, world.patients()[0]["_id"])
    assert "identifier system 'https://cht.example.org/id/unmapped' has no OpenMRS identifier type" in row["last_error"]


def test_the_example_pipelines_run_against_the_demo_stand_ins(cht, monkeypatch, airflow_db, tmp_path):
    """include/pipelines' KenyaEMR and Bahmni pipelines, as ``make demo`` runs them (the sandbox's seed)."""
    import yaml

    from standins.openmrs import ROOT, connections, start_distributions

    cht.seed(5000, seed=42)  # the sandbox as make demo seeds it (its health centres are in emr_locations.csv)
    folder = tmp_path / "pipelines"
    folder.mkdir()
    for name in ("openmrs_kenyaemr_referrals", "openmrs_bahmni_patients"):
        config = yaml.safe_load((ROOT / "include" / "pipelines" / f"{name}.yaml").read_text())
        config["cht"] = {"conn_id": "cht_test", "db": cht.db}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("AIRFLOW_CONN_CHT_TEST", cht.connection())
    servers = start_distributions(tmp_path / "openmrs", uuid.uuid4().hex)
    try:
        for variable, value in connections(servers).items():
            monkeypatch.setenv(variable, value)
        state, referrals = run_dag(monkeypatch, folder, "openmrs_kenyaemr_referrals")
        assert state == "success" and referrals["sent"] > 0, referrals
        state, patients = run_dag(monkeypatch, folder, "openmrs_bahmni_patients")
        assert state == "success" and patients["sent"] > 0, patients
        kenyaemr, bahmni = servers["kenyaemr"], servers["bahmni"]
        assert len(kenyaemr.resources("Task")) == referrals["sent"]
        assert len(bahmni.resources("Patient")) == patients["sent"]
        types = {i["type"]["text"] for p in kenyaemr.resources("Patient") for i in p["identifier"]}
        assert {"CHT Document ID", "CHT Patient ID"} <= types
        store = state_store()
        for name in ("openmrs_kenyaemr_referrals", "openmrs_bahmni_patients"):
            assert store.failures(name) == [], name  # make demo expects no dead letter
    finally:
        for server in servers.values():
            server.stop()


def test_a_base_that_is_not_fhir2_fails_the_preflight_before_anything_is_sent(world, monkeypatch, capfd):
    folder, name = world.pipeline(
        {**patients_pipeline(world.table), "destination": destination(world.table, path="/openmrs/ws/rest/v1")}
    )
    state, _ = run_dag(monkeypatch, folder, name)
    assert state == "failed"
    assert "failed its pre-flight check: GET /openmrs/ws/rest/v1/metadata: HTTP 404" in "".join(capfd.readouterr())
    assert not world.openmrs.requests_made("POST") and state_store().counts(name) == {}
