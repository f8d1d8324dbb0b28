"""Shared set-up of the reverse-pipeline tests: a small known CHT area and a pipeline file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import yaml

from standins.generate import lineage

DH, HC, HH1, HH2 = "dh-1", "hc-1", "hh-1", "hh-2"
FACILITY = "MFL-100"


def person(doc_id: str, name: str, sex: str, dob: str, household: str, **extra: Any) -> dict[str, Any]:
    return {
        "_id": doc_id,
        "type": "person",
        "name": name,
        "sex": sex,
        "date_of_birth": dob,
        "parent": lineage(household, HC, DH),
        "reported_date": 1767225600000,
        **extra,
    }


def seed_area(db: Any) -> None:
    """One health centre with two households and people the lists below refer to."""
    db.put(
        {"_id": DH, "type": "district_hospital", "name": "Kisumu District Hospital", "reported_date": 1},
        {"_id": HC, "type": "health_center", "name": "Ahero Health Centre", "parent": lineage(DH), "reported_date": 1},
        {"_id": HH1, "type": "clinic", "name": "Otieno Household", "parent": lineage(HC, DH), "reported_date": 1},
        {"_id": HH2, "type": "clinic", "name": "Wanjiru Household", "parent": lineage(HC, DH), "reported_date": 1},
        person("p-achieng", "Achieng Otieno", "female", "1990-05-12", HH1, phone="+254712000001", national_id="NID-1"),
        person("p-brian", "Brian Kamau", "male", "1985-01-01", HH1, phone="+254712000002"),
        person("p-mary-1", "Mary Wanjiru", "female", "1992-03-03", HH1),
        person("p-mary-2", "Mary Wanjiru", "female", "1992-03-03", HH2),
        person("p-odhiambo", "Odhiambo Ouma", "male", "1970-07-07", HH2, phone="+254712000005"),
    )


#: A contact-tracing list: exact (identifier), fuzzy (typo + phone format + DOB), ambiguous (two
#: equal candidates), new, the same new person twice, and a row whose facility is unknown.
CONTACTS_CSV = """contact_id,given_name,family_name,sex,date_of_birth,phone,national_id,facility_code,index_case_id,exposure_date
c-1,Achieng,Otieno,F,1990-05-12,,NID-1,MFL-100,case-9,2026-11-20
c-2,Bryan,Kamau,M,1985-01-01,0712 000 002,,MFL-100,case-9,2026-11-20
c-3,Mary,Wanjiru,F,1992-03-03,,,MFL-100,case-9,2026-11-21
c-4,Zawadi,Chebet,F,2001-02-02,0799123456,,MFL-100,case-9,2026-11-21
c-5,Zawadi,Chebet,F,2001-02-02,+254799123456,,MFL-100,case-7,2026-11-22
c-6,Peter,Mwangi,M,1979-09-09,,,MFL-999,case-9,2026-11-22
"""

EXPECTED = {  # contact id → (ledger status, decision, person id or None for a new person)
    "c-1": ("done", "link", "p-achieng"),
    "c-2": ("done", "link", "p-brian"),
    "c-3": ("review", "review", None),
    "c-4": ("done", "new", None),
    "c-5": ("skipped", "new", None),
    "c-6": ("unplaced", None, None),
}


def csv_pipeline(folder: Path, lists: Path, places: Path, **overrides: Any) -> tuple[Path, str]:
    name = f"trace_{uuid.uuid4().hex[:8]}"
    config: dict[str, Any] = {
        "name": name,
        "schedule": None,
        "start_date": "2026-01-01",
        "source": {"type": "csv", "folder": str(lists), "id_field": "contact_id"},
        "mapping": {
            "person.given_name": {"path": "doc.given_name", "optional": True},
            "person.family_name": {"path": "doc.family_name", "optional": True},
            "person.sex": {"path": "doc.sex", "optional": True},
            "person.date_of_birth": {"path": "doc.date_of_birth", "optional": True},
            "person.phone": {"path": "doc.phone", "optional": True},
            "person.identifier": {"path": "doc.national_id", "optional": True},
            "place": {"path": "doc.facility_code", "optional": True},
            "report.index_case_id": "doc.index_case_id",
            "report.exposure_date": {"path": "doc.exposure_date", "optional": True},
        },
        "match": {"identifier_field": "national_id"},
        "places": {"table": str(places), "key": "place"},
        "target": {"conn_id": "cht_api_test", "form": "CONTACT_TRACE"},
        "review": {"timeout_hours": 1},
        "retries": 0,
        **overrides,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, name


def place_table(path: Path) -> Path:
    path.write_text(f"code,place_id,name\n{FACILITY},{HC},Ahero Health Centre\n")
    return path


def contact_list(tmp_path: Path, monkeypatch: Any, cht_api: Any) -> tuple[Path, str, Path, Path]:
    """The seeded area, the CHT API Connection and ``CONTACTS_CSV`` as a CSV pipeline in ``tmp_path``:
    (pipelines folder, pipeline name, list folder, place table)."""
    seed_area(cht_api.db)
    monkeypatch.setenv("AIRFLOW_CONN_CHT_API_TEST", api_connection(cht_api))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "contacts-2026-11-22.csv").write_text(CONTACTS_CSV)
    places = place_table(tmp_path / "places.csv")
    folder = tmp_path / "reverse"
    _, name = csv_pipeline(folder, lists, places)
    return folder, name, lists, places


def api_connection(cht_api: Any) -> str:
    login, password = cht_api.online
    return json.dumps({"conn_type": "http", "host": cht_api.url, "login": login, "password": password})
