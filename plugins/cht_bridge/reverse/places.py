"""The facility/area table: which CHT place a list row's facility or area code belongs to.

EMRs name facilities by their own codes (a Kenyan MFL code, a DHIS2 org unit, a village name);
CHT places are UUIDs. Implementers keep the pairing in a CSV next to the pipelines, so it is
reviewed like code and changes without touching CHT.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cht_bridge.errors import ConfigError
from cht_bridge.paths import REPO, from_repo  # noqa: F401 - REPO and from_repo were defined here; callers import them from here


@dataclass(frozen=True)
class PlaceTable:
    """Codes (compared case-insensitively, spaces trimmed) → CHT place UUIDs."""

    file: str
    places: dict[str, str]

    def place_for(self, code: object) -> str | None:
        if code is None:
            return None
        return self.places.get(_normal(str(code)))


def load_place_table(path: str | Path) -> PlaceTable:
    """Read ``code,place_id[,name]`` rows; a relative path is taken from the repository root.

    :raises ConfigError: naming the file and the line of a bad or repeated code.
    """
    path = from_repo(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(str(path), [f"places.table: cannot read the file: {exc.strerror}"]) from exc
    reader = csv.DictReader(text.splitlines())
    missing = {"code", "place_id"} - set(reader.fieldnames or [])
    if missing:
        raise ConfigError(
            str(path), [f"header: needs the columns code and place_id (missing: {', '.join(sorted(missing))})"]
        )
    places: dict[str, str] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        code, place_id = _normal(row.get("code") or ""), (row.get("place_id") or "").strip()
        if not code or not place_id:
            problems.append(f"line {line}: code and place_id are both required")
        elif code in places and places[code] != place_id:
            problems.append(f"line {line}: code '{code}' is already mapped to another place")
        else:
            places[code] = place_id
    if problems:
        raise ConfigError(str(path), problems)
    return PlaceTable(str(path), places)


def _normal(code: str) -> str:
    return " ".join(code.split()).casefold()
