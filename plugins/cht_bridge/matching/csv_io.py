"""Read people from, and write decisions to, CSV files (the CLI's formats).

Inputs may carry any of ``id, given_name, family_name, name, sex, date_of_birth, phone, place,
area, identifier``; missing columns and empty cells are fine. A single ``name`` column is split
like a CHT name. Rows without an id are numbered from 1 (row order).

A date of birth is an estimate when ``date_of_birth_method`` is ``approx`` (CHT's column, as an
export of CHT persons has it) or ``birthdate_estimated`` is true (``true/false``, ``1/0``,
``yes/no``, ``1.0``: an EMR's flag, OpenMRS ``birthdateEstimated``; :func:`cht_bridge.flags.flag`).
The date is kept as written and compared by its estimated year where years are compared
(``records.estimated_birth``). Other values in these columns are read as "not estimated".
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from cht_bridge.flags import flag
from cht_bridge.matching.decisions import Decision
from cht_bridge.matching.records import Person, person_from_name

DECISION_COLUMNS = ("incoming_id", "decision", "existing_id", "probability", "same_as", "reason")
_FIELDS = ("sex", "date_of_birth", "phone", "place", "area", "identifier")
#: Columns that flag an estimated date of birth: CHT's person property, then an EMR-style boolean.
ESTIMATE_COLUMNS = ("date_of_birth_method", "birthdate_estimated")


def read_people(path: str | Path) -> list[Person]:
    """Load people from a CSV file (UTF-8, with or without a byte-order mark)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    people = []
    for number, row in enumerate(rows, start=1):
        row = {(key or "").strip().lower(): (value or "").strip() for key, value in row.items()}
        person_id = row.get("id") or str(number)
        fields = {name: row.get(name) or None for name in _FIELDS}
        fields["date_of_birth_estimated"] = any(flag(row.get(column)) for column in ESTIMATE_COLUMNS)
        given, family = row.get("given_name"), row.get("family_name")
        if not (given or family) and row.get("name"):
            people.append(person_from_name(person_id, row["name"], **fields))
        else:
            people.append(Person(id=person_id, given_name=given or None, family_name=family or None, **fields))
    return people


def write_decisions(path: str | Path, decisions: Sequence[Decision]) -> None:
    """Write one row per decision; probability with 6 decimals, empty when there is none."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DECISION_COLUMNS)
        for d in decisions:
            probability = "" if d.probability is None else f"{d.probability:.6f}"
            writer.writerow([d.incoming_id, d.decision, d.existing_id or "", probability, d.same_as or "", d.reason])


PEOPLE_COLUMNS = (
    "id",
    "given_name",
    "family_name",
    "sex",
    "date_of_birth",
    "phone",
    "place",
    "area",
    "identifier",
    "date_of_birth_method",
)


def write_people(path: str | Path, people: Sequence[Person]) -> None:
    """Write people in the form ``read_people`` reads (area ids joined by ``;``; an estimated
    date of birth as written, with ``date_of_birth_method`` ``approx``)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PEOPLE_COLUMNS)
        for p in people:
            row = [p.id, p.given_name, p.family_name, p.sex, p.date_of_birth, p.phone, p.place, ";".join(p.area)]
            method = "approx" if p.date_of_birth_estimated else None
            writer.writerow(["" if value is None else value for value in [*row, p.identifier, method]])
