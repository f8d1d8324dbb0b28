"""``destination.fhir:``: how a pipeline writes to a FHIR R4 server (HAPI, a shared health record).

``identifier_system`` is the URI under which each resource carries the CHT id it was made from
(``Patient.identifier = {system, value: <CHT _id>}``); the ``conditional`` strategy finds an
earlier copy by it (``ifNoneExist``), so it is required. ``strategy``:

* ``conditional`` (default): ``POST Type`` with ``ifNoneExist: identifier=<system>|<CHT id>``;
  the server picks the ids; an edit is then written over the match with ``PUT Type/<its id>``;
* ``put``: ``PUT Type/<deterministic id>``, for servers that allow update-as-create
  (``CapabilityStatement...updateCreate``); the ids are the bridge's own.

``validate`` (default true) checks every payload with the R4 models and the bridge's own rules
before anything is sent (``cht_bridge.fhir.validate``). ``write_back: {field, conn_id}`` writes
the id the server gave a payload's Patient to that property of the CHT person (``PUT
/api/v1/person/{uuid}``, CHT 5.2+) through the CHT API Connection ``conn_id``. Pure Python: DAG
files parse it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEYS = ("identifier_system", "strategy", "validate", "write_back")
WRITE_BACK_KEYS = ("field", "conn_id")
#: Properties of a CHT person the bridge must never overwrite: CHT's own, and the ones its forms write.
RESERVED_FIELDS = frozenset(
    {"name", "type", "contact_type", "parent", "reported_date", "patient_id", "phone", "sex", "date_of_birth", "role"}
)
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
STRATEGIES = ("conditional", "put")
#: The transaction goes to the FHIR base itself: the Connection's host is that base.
DEFAULT_PATH = "/"
# An absolute URI without spaces or '|', which would break the ``system|value`` search token.
_SYSTEM = re.compile(r"^(https?://[^\s|/]+[^\s|]*|urn:(uuid|oid):[^\s|]+)$")


@dataclass(frozen=True)
class WriteBack:
    """Where the EMR's patient id goes in CHT: ``field`` of the person, through Connection ``conn_id``."""

    field: str
    conn_id: str


@dataclass(frozen=True)
class FhirSettings:
    """What ``destinations/fhir.py`` reads as ``destination.settings``."""

    identifier_system: str
    strategy: str = "conditional"
    validate: bool = True
    write_back: WriteBack | None = None


def parse(block: dict[str, Any], add: Callable[[str, str], None]) -> FhirSettings:
    """The settings of ``destination.fhir``; every problem goes to ``add`` under its key."""
    for key in sorted(set(block) - set(KEYS)):
        add(key, f"unknown key (allowed: {', '.join(KEYS)})")
    system = block.get("identifier_system")
    if not isinstance(system, str) or not _SYSTEM.match(system):
        add("identifier_system", "required: an absolute URI (https://…, urn:uuid:… or urn:oid:…) without '|' or spaces")
        system = ""
    strategy = block.get("strategy", "conditional")
    if strategy not in STRATEGIES:
        add("strategy", f"must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    validate = block.get("validate", True)
    if not isinstance(validate, bool):
        add("validate", "must be true or false")
    return FhirSettings(
        identifier_system=system,
        strategy=str(strategy),
        validate=validate is not False,
        write_back=_write_back(block.get("write_back"), add),
    )


def _write_back(block: Any, add: Callable[[str, str], None]) -> WriteBack | None:
    if block is None:
        return None
    if not isinstance(block, dict):
        add("write_back", "must be a mapping {field: <CHT person property>, conn_id: <CHT API connection>}")
        return None
    for key in sorted(set(block) - set(WRITE_BACK_KEYS)):
        add(f"write_back.{key}", f"unknown key (allowed: {', '.join(WRITE_BACK_KEYS)})")
    field, conn_id = block.get("field"), block.get("conn_id")
    if not isinstance(field, str) or not _FIELD.match(field) or field in RESERVED_FIELDS:
        add(
            "write_back.field", "required: a CHT person property name (letters, digits, '_'), not one CHT writes itself"
        )
    if not isinstance(conn_id, str) or not conn_id.strip():
        add(
            "write_back.conn_id",
            "required: the Airflow Connection of the CHT API (an online user with can_update_people)",
        )
    return WriteBack(field=str(field), conn_id=str(conn_id))
