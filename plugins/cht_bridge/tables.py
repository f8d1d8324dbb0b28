"""Two-column CSV tables kept next to the pipelines: one system's codes → another's ids.

Implementers pair codes by hand (an EMR's facility code → a CHT place, a CHT place → an OpenMRS
Location), in a CSV reviewed like code and changed without touching either system. Reverse
pipelines read the facility table (``reverse/places.py``), the ``openmrs`` destination its
location table; both through here, so a bad or repeated row is refused the same way.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cht_bridge.errors import ConfigError
from cht_bridge.paths import REPO, from_repo

__all__ = ["REPO", "from_repo", "load_table", "normal"]


#: A country's facilities fit many times over; a bigger file is a mistake, not a table.
MAX_ROWS = 200_000


def load_table(
    path: str | Path, key: str, value: str, *, setting: str, normalise: bool = True
) -> tuple[str, dict[str, str]]:
    """The file read and its ``key`` column (normalised by ``normal`` unless ``normalise`` is
    False: ids such as CHT place uuids are compared as they are) → its ``value`` column.

    ``setting`` is the pipeline key that names the file, for the message of a file that cannot be read.

    :raises ConfigError: naming the file and the line of a bad or repeated key.
    """
    path = from_repo(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(str(path), [f"{setting}: cannot read the file: {exc.strerror}"]) from exc
    reader = csv.DictReader(text.splitlines())
    missing = {key, value} - set(reader.fieldnames or [])
    if missing:
        raise ConfigError(
            str(path), [f"header: needs the columns {key} and {value} (missing: {', '.join(sorted(missing))})"]
        )
    table: dict[str, str] = {}
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS + 1:
            problems.append(f"line {line}: more than {MAX_ROWS} rows")
            break
        code, target = (row.get(key) or "").strip(), (row.get(value) or "").strip()
        code = normal(code) if normalise else code
        if not code or not target:
            problems.append(f"line {line}: {key} and {value} are both required")
        elif code in table and table[code] != target:
            problems.append(f"line {line}: {key} '{code}' is already mapped to another {value}")
        else:
            table[code] = target
    if problems:
        raise ConfigError(str(path), problems)
    return str(path), table


def normal(code: str) -> str:
    """How a code is compared: case-insensitively, runs of spaces as one, trimmed."""
    return " ".join(code.split()).casefold()
