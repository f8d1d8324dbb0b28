"""The facility/area table: which CHT place a list row's facility or area code belongs to.

EMRs name facilities by their own codes (a Kenyan MFL code, a DHIS2 org unit, a village name);
CHT places are UUIDs. Implementers keep the pairing in a CSV next to the pipelines, so it is
reviewed like code and changes without touching CHT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cht_bridge.tables import REPO, from_repo, load_table, normal

__all__ = ["REPO", "PlaceTable", "from_repo", "load_place_table"]


@dataclass(frozen=True)
class PlaceTable:
    """Codes (compared case-insensitively, spaces trimmed) → CHT place UUIDs."""

    file: str
    places: dict[str, str]

    def place_for(self, code: object) -> str | None:
        if code is None:
            return None
        return self.places.get(normal(str(code)))


def load_place_table(path: str | Path) -> PlaceTable:
    """Read ``code,place_id[,name]`` rows; a relative path is taken from the repository root.

    :raises ConfigError: naming the file and the line of a bad or repeated code.
    """
    return PlaceTable(*load_table(path, "code", "place_id", setting="places.table"))
