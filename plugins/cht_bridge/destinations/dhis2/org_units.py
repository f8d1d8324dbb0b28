"""The CHT place → DHIS2 org unit table (``include/places/dhis2_org_units.csv``).

The reverse pipelines' table (``reverse/places.py``) goes the other way and compares codes
case-insensitively; a DHIS2 UID is case-sensitive (``DiszpKrYNg8`` is not ``diszpkrynG8``), so
this table keeps org unit ids exactly as written. It is reviewed like code, next to the pipelines,
and read by the aggregate pipelines and the tracker pipelines alike.

Columns: ``place_id`` (the CHT place uuid), ``org_unit`` (its DHIS2 org unit, in the pipeline's id
scheme: a code or a name may hold any character, '/' too), ``name`` (optional, for the people who
keep the table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cht_bridge.tables import load_table


@dataclass(frozen=True)
class OrgUnitTable:
    """CHT place uuids → DHIS2 org units."""

    file: str
    org_units: dict[str, str]

    def org_unit_for(self, place_id: object) -> str | None:
        return self.org_units.get(place_id) if isinstance(place_id, str) else None


def load_org_unit_table(path: str | Path) -> OrgUnitTable:
    """Read the table; a relative path is taken from the repository root.

    :raises ConfigError: naming the file and each bad, repeated or contradicting line (``tables.load_table``).
    """
    file, org_units = load_table(path, "place_id", "org_unit", setting="org_unit.table", normalise=False)
    return OrgUnitTable(file, org_units)
