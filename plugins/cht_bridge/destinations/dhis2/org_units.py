"""The CHT place → DHIS2 org unit table (``include/places/dhis2_org_units.csv``).

The reverse pipelines' table (``reverse/places.py``) goes the other way and compares codes
case-insensitively; a DHIS2 UID is case-sensitive (``DiszpKrYNg8`` is not ``diszpkrynG8``), so
this table keeps org unit ids exactly as written. It is reviewed like code, next to the pipelines,
and read by the aggregate pipelines and the tracker pipelines alike.

Columns: ``place_id`` (the CHT place uuid), ``org_unit`` (its DHIS2 org unit, in the pipeline's id
scheme), ``name`` (optional, for the people who keep the table).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cht_bridge.errors import ConfigError
from cht_bridge.paths import from_repo

MAX_ROWS = 200_000  # a country's facilities fit many times over; a bigger file is a mistake


@dataclass(frozen=True)
class OrgUnitTable:
    """CHT place uuids → DHIS2 org units."""

    file: str
    org_units: dict[str, str]

    def org_unit_for(self, place_id: object) -> str | None:
        return self.org_units.get(place_id) if isinstance(place_id, str) else None


def load_org_unit_table(path: str | Path) -> OrgUnitTable:
    """Read the table; a relative path is taken from the repository root.

    :raises ConfigError: naming the file and each bad, repeated or contradicting line.
    """
    path = from_repo(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(str(path), [f"org_unit.table: cannot read the file: {exc.strerror}"]) from exc
    reader = csv.DictReader(text.splitlines())
    missing = {"place_id", "org_unit"} - set(reader.fieldnames or [])
    if missing:
        raise ConfigError(
            str(path), [f"header: needs the columns place_id and org_unit (missing: {', '.join(sorted(missing))})"]
        )
    org_units: dict[str, str] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS + 1:
            problems.append(f"line {line}: more than {MAX_ROWS} rows")
            break
        place, unit = (row.get("place_id") or "").strip(), (row.get("org_unit") or "").strip()
        if not place or not unit:
            problems.append(f"line {line}: place_id and org_unit are both required")
        elif "/" in unit:
            problems.append(f"line {line}: an org unit id has no '/'")
        elif org_units.get(place, unit) != unit:
            problems.append(f"line {line}: place '{place}' is already mapped to another org unit")
        else:
            org_units[place] = unit
    if problems:
        raise ConfigError(str(path), problems)
    return OrgUnitTable(str(path), org_units)
