"""Reverse pipelines from a real FHIR R4 server and from a JSON REST list, as whole DAG runs.

A new version of a source record is a new list entry (a new report), but the person it created
before is found again by the identifier stored on them: no second person.
"""

from __future__ import annotations

import json
import secrets
import uuid

import pytest
import yaml

from standins.list_server import ListServer
from tests.integration.reverse_setup import HC, api_connection, place_table, seed_area
from tests.integration.test_reverse_pipeline import run_reverse_dag

pytestmark = pytest.mark.integration

EMR_ID = "http://emr.example.org/patient-id"


def patient(pid: str, tag: dict, given: str, family: str, sex: str, dob: str, emr_id: str, reason: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"tag": [{"system": tag["system"], "code": tag["code"]}]},
        "identifier": [{"system": EMR_ID, "value": emr_id}],
        "name": [{"given": given.split(), "family": family}],
        "gender": sex,
        "birthDate": dob,
        "managingOrganization": {"identifier": {"value": "MFL-100"}},
        "extension": [{"url": "http://emr.example.org/fhir/ltfu-reason", "valueString": reason}],
    }


def write(folder, config: dict) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{config['name']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config["name"]


def made(cht_api, form: str) -> tuple[list[dict], list[dict]]:
    docs = cht_api.db.all_docs()
    return (
        [d for d in docs if d.get("type") == "person"],
        [d for d in docs if d.get("type") == "data_record" and d.get("form") == form],
    )


def test_ltfu_from_fhir_links_creates_and_a_new_version_reuses_the_person(
    tmp_path, monkeypatch, cht_api, airflow_db, fhir_server, fhir_tag
) -> None:
    seed_area(cht_api.db)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", api_connection(cht_api))
    login, password = fhir_server.credentials
    monkeypatch.setenv(
        "AIRFLOW_CONN_EMR_FHIR_TEST",
        json.dumps({"conn_type": "http", "host": fhir_server.url, "login": login, "password": password}),
    )
    suffix = uuid.uuid4().hex[:6]
    fhir_server.transaction(
        [
            patient(f"a-{suffix}", fhir_tag, "Achieng", "Otieno", "female", "1990-05-12", "EMR-1", "missed refill"),
            patient(f"n-{suffix}", fhir_tag, "Neema", "Atieno", "female", "1999-09-09", "EMR-2", "missed visit"),
        ]
    )
    name = write(
        tmp_path / "reverse",
        {
            "name": f"ltfu_{suffix}",
            "schedule": None,
            "start_date": "2026-01-01",
            "source": {
                "type": "fhir",
                "conn_id": "emr_fhir_test",
                "resource": "Patient",
                "params": {"_tag": fhir_tag["param"]},
            },
            "mapping": {
                "person.given_name": {"expr": "doc.name[0].given.join(' ')"},
                "person.family_name": "doc.name.0.family",
                "person.sex": "doc.gender",
                "person.date_of_birth": "doc.birthDate",
                "person.identifier": "doc.identifier.0.value",
                "place": "doc.managingOrganization.identifier.value",
                "report.reason": "doc.extension.0.valueString",
            },
            "places": {"table": str(place_table(tmp_path / "places.csv")), "key": "place"},
            "target": {"conn_id": "cht_api_test", "form": "LTFU_FOLLOWUP"},
            "retries": 0,
        },
    )
    people_before, _ = made(cht_api, "LTFU_FOLLOWUP")
    state, xcoms, _ = run_reverse_dag(monkeypatch, tmp_path / "reverse", name)
    assert state == "success", xcoms
    assert (xcoms["receive"]["received"], xcoms["match"]["link"], xcoms["match"]["new"]) == (2, 1, 1)
    people, reports = made(cht_api, "LTFU_FOLLOWUP")
    assert len(people) == len(people_before) + 1 and len(reports) == 2
    neema = next(p for p in people if p.get("external_id") == "EMR-2")
    assert neema["parent"]["_id"] == HC and neema["date_of_birth"] == "1999-09-09" and neema["sex"] == "female"
    by_person = {r["fields"]["patient_uuid"]: r["fields"] for r in reports}
    assert by_person["p-achieng"]["reason"] == "missed refill" and neema["_id"] in by_person

    # the EMR updates Neema's record (a new version): a new report about the same person
    updated = patient(f"n-{suffix}", fhir_tag, "Neema", "Atieno", "female", "1999-09-09", "EMR-2", "missed refill")
    fhir_server.put(updated)
    state, xcoms, _ = run_reverse_dag(monkeypatch, tmp_path / "reverse", name)
    assert state == "success"
    assert xcoms["receive"]["received"] == 1 and xcoms["match"]["link"] == 1 and xcoms["match"]["new"] == 0
    people_after, reports_after = made(cht_api, "LTFU_FOLLOWUP")
    assert len(people_after) == len(people) and len(reports_after) == 3
    assert sum(r["fields"]["patient_uuid"] == neema["_id"] for r in reports_after) == 2


def test_a_json_rest_list_with_cursor_paging_resumes_where_it_stopped(
    tmp_path, monkeypatch, cht_api, airflow_db
) -> None:
    seed_area(cht_api.db)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", api_connection(cht_api))
    items = [
        {"id": "r-1", "updated": "1", "patient": {"given": "Brian", "family": "Kamau", "sex": "M", "dob": "1985-01-01",
                                                  "phone": "0712000002"}, "facility": "MFL-100"},
        {"id": "r-2", "updated": "1", "patient": {"given": "Juma", "family": "Baraka", "sex": "M", "dob": "2003-03-03",
                                                  "phone": "0733555111"}, "facility": "MFL-100"},
    ]  # fmt: skip
    with ListServer(items, credentials=("emr", secrets.token_urlsafe(12)), page_size=1) as server:
        user, password = server.credentials
        monkeypatch.setenv(
            "AIRFLOW_CONN_EMR_LIST_TEST",
            json.dumps({"conn_type": "http", "host": server.url, "login": user, "password": password}),
        )
        name = write(
            tmp_path / "reverse",
            {
                "name": f"rest_{uuid.uuid4().hex[:6]}",
                "schedule": None,
                "start_date": "2026-01-01",
                "source": {
                    "type": "rest",
                    "conn_id": "emr_list_test",
                    "path": "/cursor",
                    "items": "data.results",
                    "version_field": "updated",
                    "paging": {"type": "cursor", "param": "cursor", "next": "next_cursor"},
                },
                "mapping": {
                    "person.given_name": "doc.patient.given",
                    "person.family_name": "doc.patient.family",
                    "person.sex": "doc.patient.sex",
                    "person.date_of_birth": "doc.patient.dob",
                    "person.phone": "doc.patient.phone",
                    "place": "doc.facility",
                    "report.reason": {"expr": "'on the EMR list'"},
                },
                "places": {"table": str(place_table(tmp_path / "places.csv")), "key": "place"},
                "target": {"conn_id": "cht_api_test", "form": "LTFU_FOLLOWUP"},
                "retries": 0,
            },
        )
        state, xcoms, _ = run_reverse_dag(monkeypatch, tmp_path / "reverse", name)
        assert state == "success", xcoms
        assert xcoms["receive"]["pages"] >= 2  # one item a page: the cursor was followed
        assert (xcoms["match"]["link"], xcoms["match"]["new"]) == (1, 1)
        server.append(dict(items[1], id="r-3", patient=dict(items[1]["patient"], given="Halima", family="Chepkoech",
                                                             sex="F", dob="1975-07-07", phone="0744000111")))  # fmt: skip
        state, xcoms, _ = run_reverse_dag(monkeypatch, tmp_path / "reverse", name)
        assert state == "success" and xcoms["receive"]["received"] == 1  # only the appended item
    _, reports = made(cht_api, "LTFU_FOLLOWUP")
    assert len(reports) == 3
    assert "p-brian" in {r["fields"]["patient_uuid"] for r in reports}
