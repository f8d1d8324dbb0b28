"""The demo's EMR lists, made from the seeded sandbox CHT, with known truth.

An LTFU list (FHIR R4 Patients for the local FHIR server) and a contact-tracing list (CSV) name
people who are already CHT contacts, written the way an EMR writes them (typos, other phone
formats, estimated dates, swapped names: ``populations.emr_version``), plus truly new people, a
person named twice, and a facility code the place table does not know. Everything comes from the
deterministic seeded stream (``generate(5000, 42)``), so the lists and their truth are the same on
every machine, and the contact-tracing CSV in ``include/lists/contact_tracing`` is this module's
output (``python -m standins.emr_lists contacts``).
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from pathlib import Path
from typing import Any

from cht_bridge.matching import Person, from_cht_person
from standins.generate import generate
from standins.populations import emr_version, population

ROOT = Path(__file__).resolve().parents[1]
FACILITIES = ROOT / "include" / "places" / "facilities.csv"
CONTACTS_CSV = ROOT / "include" / "lists" / "contact_tracing" / "contacts-2026-11-20.csv"
EMR_ID_SYSTEM = "http://emr.example.org/patient-id"
MFL_SYSTEM = "http://emr.example.org/mfl-code"
UNKNOWN_FACILITY = "19999"
CONTACT_COLUMNS = (
    "contact_id", "given_name", "family_name", "sex", "date_of_birth", "phone", "national_id", "facility_code",
    "index_case_id", "exposure_date", "contact_type",
)  # fmt: skip


def facilities() -> dict[str, tuple[str, str]]:
    """Health-centre UUID → (facility code, name), from the committed place table."""
    with FACILITIES.open(encoding="utf-8") as f:
        return {row["place_id"]: (row["code"], row["name"]) for row in csv.DictReader(f)}


def seeded_people(docs: int = 5000, seed: int = 42) -> list[tuple[dict[str, Any], str]]:
    """(person doc, health-centre id) of the sandbox's household members, in stream order."""
    out = []
    for doc in generate(docs, seed):
        if doc.get("type") == "person" and doc.get("role") == "patient":
            hc = (doc.get("parent") or {}).get("parent", {}).get("_id")
            if hc:
                out.append((doc, hc))
    return out


def _rows(n_known: int, n_new: int, seed: int, docs: int = 5000) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """EMR rows for ``n_known`` seeded people and ``n_new`` new ones; truth: row id → CHT id."""
    rng = random.Random(seed)
    places = facilities()
    people = [(doc, hc) for doc, hc in seeded_people(docs) if hc in places]
    rows, truth = [], {}
    for doc, hc in rng.sample(people, min(n_known, len(people))):
        row = emr_version(from_cht_person(doc), rng)
        row["facility_code"] = places[hc][0]
        row["facility_name"] = places[hc][1]
        rows.append((row, doc["_id"]))
    newcomers = population(200, n_new, seed=seed, new_share=1.0, duplicate_share=0.0).incoming
    present = {hc for _, hc in people}  # new people go to facilities this CHT has
    codes = sorted(v for k, v in places.items() if k in present) or sorted(places.values())
    for person in newcomers:
        row = _as_row(person)
        row["facility_code"], row["facility_name"] = rng.choice(codes)
        rows.append((row, None))
    rng.shuffle(rows)
    out = []
    for i, (row, cht_id) in enumerate(rows, start=1):
        row["id"] = f"{seed}-{i:03d}"
        truth[row["id"]] = cht_id
        out.append(row)
    return out, truth


def _as_row(person: Person) -> dict[str, Any]:
    return {
        "given_name": (person.given_name or "").title() or None,
        "family_name": (person.family_name or "").title() or None,
        "sex": person.sex,
        "date_of_birth": person.date_of_birth,
        "phone": person.phone,
    }


def ltfu_patients(
    n_known: int = 24, n_new: int = 8, seed: int = 4242, docs: int = 5000
) -> tuple[list[dict], dict[str, str | None]]:
    """FHIR R4 Patients the EMR lists as lost to follow-up; truth: Patient id → CHT id or None."""
    rows, truth = _rows(n_known, n_new, seed, docs)
    patients = [_patient(row, i) for i, row in enumerate(rows)]
    return patients, {f"ltfu-{row['id']}": t for row, t in zip(rows, truth.values(), strict=True)}


def _patient(row: dict[str, Any], i: int) -> dict[str, Any]:
    from cht_bridge.matching.records import clean_date

    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"ltfu-{row['id']}",
        "active": True,
        "identifier": [{"system": EMR_ID_SYSTEM, "value": f"KE-EMR-{row['id']}"}],
        "managingOrganization": {
            "identifier": {"system": MFL_SYSTEM, "value": row["facility_code"]},
            "display": row["facility_name"],
        },
        "extension": [
            {"url": "http://emr.example.org/fhir/ltfu-reason", "valueString": "missed ART refill"},
            {"url": "http://emr.example.org/fhir/last-visit", "valueDate": f"2026-0{1 + i % 9}-15"},
        ],
    }
    name = {k: v for k, v in (("family", row.get("family_name")),) if v}
    if row.get("given_name"):
        name["given"] = row["given_name"].split()
    if name:
        patient["name"] = [name]
    if row.get("sex") in ("male", "female"):
        patient["gender"] = row["sex"]
    dob = clean_date(row.get("date_of_birth"))
    if dob:
        patient["birthDate"] = dob
    if row.get("phone"):
        patient["telecom"] = [{"system": "phone", "value": str(row["phone"])}]
    return patient


def contact_rows(n_known: int = 14, n_new: int = 5, seed: int = 2020) -> tuple[list[dict], dict[str, str | None]]:
    """Contacts of two index cases, with one person named twice and one unknown facility."""
    rows, truth = _rows(n_known, n_new, seed)
    out, truths = [], {}
    for i, row in enumerate(rows):
        contact = {
            "contact_id": f"ct-{row['id']}",
            "given_name": row.get("given_name"),
            "family_name": row.get("family_name"),
            "sex": {"male": "M", "female": "F"}.get(row.get("sex") or "", row.get("sex")),
            "date_of_birth": row.get("date_of_birth"),
            "phone": row.get("phone"),
            "national_id": None,
            "facility_code": row["facility_code"],
            "index_case_id": "case-0007" if i % 2 else "case-0011",
            "exposure_date": f"2026-11-{10 + i % 9:02d}",
            "contact_type": "household" if i % 3 == 0 else "community",
        }
        out.append(contact)
        truths[contact["contact_id"]] = truth[row["id"]]
    twice = dict(out[1], contact_id=f"{out[1]['contact_id']}-again", index_case_id="case-0011")
    out.append(twice)
    truths[twice["contact_id"]] = truths[out[1]["contact_id"]]
    elsewhere = dict(out[2], contact_id=f"{out[2]['contact_id']}-moved", facility_code=UNKNOWN_FACILITY)
    out.append(elsewhere)
    truths[elsewhere["contact_id"]] = truths[out[2]["contact_id"]]
    return out, truths


def contacts_csv() -> str:
    rows, _ = contact_rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CONTACT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CONTACT_COLUMNS})
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("list", choices=["contacts"])
    parser.parse_args(argv)
    sys.stdout.write(contacts_csv())
    return 0


if __name__ == "__main__":
    sys.exit(main())
