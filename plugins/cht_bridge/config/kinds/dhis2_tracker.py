"""``destination.dhis2`` with ``kind: tracker``: how a mapped CHT report becomes DHIS2 tracker objects.

Each relevant report is one event; for a tracker program (one with registration) its person is
also a tracked entity enrolled in the program. The destination builds them from the mapped
payload (the pipeline's ``mapping``), so the keys below name payload fields (dotted paths)::

    dhis2:
      kind: tracker
      program: ChtAssess01            # in the pipeline's id_scheme (UID by default)
      program_stage: ChtAssessS1      # the events' stage; optional for a tracker program (enroll only)
      org_unit:
        place: facility_id            # payload field with the CHT place uuid, looked up in the table
        table: include/places/dhis2_org_units.csv
        # or  field: org_unit         # payload field holding the DHIS2 org unit itself
      occurred_at: occurred_at        # payload field: the event date (ISO text, or epoch ms)
      status: COMPLETED               # the events' status: ACTIVE or COMPLETED
      data_values:                    # data element -> payload field
        AsmTempC001: temperature
      tracked_entity:                 # a tracker program only
        type: nEenWmSyUEp             # the tracked entity type
        id: patient_uuid              # payload field: the CHT id of the person (the UIDs derive from it)
        attributes: {w75KJ2mc4zz: patient_name}
        enrolled_at: occurred_at      # payload field: the enrollment date (default: occurred_at)
      api_version: 40                 # optional: pins /api/40/
      time_zone: Africa/Nairobi       # the DHIS2 instance's (default UTC): dates are sent as its local
                                      # date-times, without offset, as DHIS2 reads them (§1.4)

``dry_run`` is refused here: a tracker pipeline's dry run is the run's own (the ``dry_run``
Param shows each payload without sending it), not DHIS2's ``importMode=VALIDATE``, whose
"valid, not committed" answers the delivery ledger could not record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cht_bridge.config.kinds.dhis2 import parse_time_zone

OWN_KEYS = {"program", "program_stage", "org_unit", "occurred_at", "status", "data_values", "tracked_entity",
            "api_version", "time_zone"}  # fmt: skip
ORG_UNIT_KEYS = {"place", "table", "field"}
TE_KEYS = {"type", "id", "attributes", "enrolled_at"}
STATUSES = ("ACTIVE", "COMPLETED")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
UID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")
ID_RE = re.compile(r"^[^\x00-\x1f,\[\]]{1,230}$")  # a code or a name: one line, nothing DHIS2's filter syntax uses
MAX_VALUES = 500


@dataclass(frozen=True)
class TrackedEntityRule:
    """The person of a report as a tracked entity of a tracker program."""

    type: str
    id: str
    attributes: tuple[tuple[str, str], ...] = ()  # (attribute, payload field)
    enrolled_at: str | None = None


@dataclass(frozen=True)
class TrackerSettings:
    """The checked ``destination.dhis2`` block of a tracker pipeline."""

    kind: str
    id_scheme: str
    dry_run: bool
    program: str
    program_stage: str | None
    org_unit_place: str | None  # payload field with the CHT place uuid (looked up in org_unit_table)
    org_unit_table: str | None
    org_unit_field: str | None  # payload field holding the org unit itself
    occurred_at: str = "occurred_at"
    status: str = "COMPLETED"
    data_values: tuple[tuple[str, str], ...] = ()  # (data element, payload field)
    tracked_entity: TrackedEntityRule | None = None
    api_version: int | None = None
    time_zone: str = "UTC"


def parse(block: dict[str, Any], add: Callable[[str, str], None], common: dict[str, Any]) -> TrackerSettings | None:
    """The tracker settings, every problem reported under its key."""
    for key in block:
        if key not in OWN_KEYS:
            add(key, f"unknown key for kind tracker (allowed: {', '.join(sorted(OWN_KEYS))})")
    if common.get("dry_run"):
        add("dry_run", "not for kind tracker: use the run's dry run (the dry_run Param), which sends nothing")
    ident = _identifier_check(common.get("id_scheme", "UID"), add)
    program = block.get("program")
    ident("program", program, required=True)
    stage = block.get("program_stage")
    te_block = block.get("tracked_entity")
    if stage is None and te_block is None:
        add("program_stage", "required for an event program (without tracked_entity)")
    elif stage is not None:
        ident("program_stage", stage, required=True)
    place, table, field = _org_unit(block.get("org_unit"), add)
    occurred_at = block.get("occurred_at", "occurred_at")
    _field(add, "occurred_at", occurred_at)
    status = block.get("status", "COMPLETED")
    if status not in STATUSES:
        add("status", f"must be one of {', '.join(STATUSES)} (got {status!r})")
    values = _pairs(block.get("data_values", {}), "data_values", ident, add)
    if values and stage is None:
        add("data_values", "needs a program_stage: data values belong to events")
    tracked_entity = _tracked_entity(te_block, ident, add) if te_block is not None else None
    version = block.get("api_version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or not 38 <= version <= 99):
        add(
            "api_version",
            "must be a DHIS2 API version from 38 (/api/tracker exists on every supported version), or left out",
        )
    return TrackerSettings(
        **common, program=program, program_stage=stage, org_unit_place=place, org_unit_table=table,
        org_unit_field=field, occurred_at=occurred_at, status=status, data_values=values,
        tracked_entity=tracked_entity, api_version=version, time_zone=parse_time_zone(block, add),
    )  # fmt: skip


def _identifier_check(scheme: str, add: Callable[[str, str], None]) -> Callable[..., None]:
    """A checker of metadata identifiers in the pipeline's id scheme (UIDs have DHIS2's format)."""

    def ident(key: str, value: Any, *, required: bool = False) -> None:
        if value is None:
            if required:
                add(key, f"required: the {'UID' if scheme == 'UID' else scheme.lower()} of a DHIS2 object")
            return
        if scheme == "UID" and not (isinstance(value, str) and UID_RE.match(value)):
            add(key, f"must be a DHIS2 UID: 11 letters and digits, a letter first (got {value!r})")
        elif not (isinstance(value, str) and ID_RE.match(value)):
            add(key, f"must be the object's {scheme.lower()}: one line without ',', '[' or ']'")

    return ident


def _field(add: Callable[[str, str], None], key: str, value: Any) -> bool:
    if isinstance(value, str) and FIELD_RE.match(value):
        return True
    add(key, f"must name a field of the mapped payload, e.g. occurred_at or patient.id (got {value!r})")
    return False


def _org_unit(value: Any, add: Callable[[str, str], None]) -> tuple[str | None, str | None, str | None]:
    if not isinstance(value, dict):
        add("org_unit", "required: {place: <payload field>, table: <csv>} or {field: <payload field>}")
        return None, None, None
    for key in value:
        if key not in ORG_UNIT_KEYS:
            add(f"org_unit.{key}", f"unknown key (allowed: {', '.join(sorted(ORG_UNIT_KEYS))})")
    place, table, field = value.get("place"), value.get("table"), value.get("field")
    if field is not None:
        if place is not None or table is not None:
            add("org_unit", "either field, or place with table, not both")
        _field(add, "org_unit.field", field)
        return None, None, field
    if place is None or table is None:
        add("org_unit", "needs place (the payload field with the CHT place uuid) and table (the CSV), or field")
    if place is not None:
        _field(add, "org_unit.place", place)
    if table is not None and not (isinstance(table, str) and table.endswith(".csv")):
        add(
            "org_unit.table",
            "must be the path of a CSV file (place_id,org_unit), e.g. include/places/dhis2_org_units.csv",
        )
    return place, table, None


def _pairs(
    value: Any, key: str, ident: Callable[..., None], add: Callable[[str, str], None]
) -> tuple[tuple[str, str], ...]:
    """``{metadata id: payload field}`` as pairs, each side checked."""
    if not isinstance(value, dict):
        add(key, "must be a mapping of DHIS2 id -> payload field")
        return ()
    if len(value) > MAX_VALUES:
        add(key, f"at most {MAX_VALUES} entries")
    pairs = []
    for ref, field in value.items():
        ident(f"{key}.{ref}", ref)
        if _field(add, f"{key}.{ref}", field):
            pairs.append((str(ref), field))
    return tuple(pairs)


def _tracked_entity(
    value: Any, ident: Callable[..., None], add: Callable[[str, str], None]
) -> TrackedEntityRule | None:
    if not isinstance(value, dict):
        add("tracked_entity", "must be a mapping with type, id and attributes")
        return None
    for key in value:
        if key not in TE_KEYS:
            add(f"tracked_entity.{key}", f"unknown key (allowed: {', '.join(sorted(TE_KEYS))})")
    ident("tracked_entity.type", value.get("type"), required=True)
    person = value.get("id")
    if person is None:
        add("tracked_entity.id", "required: the payload field with the person's CHT id (e.g. patient_uuid)")
    else:
        _field(add, "tracked_entity.id", person)
    enrolled = value.get("enrolled_at")
    if enrolled is not None:
        _field(add, "tracked_entity.enrolled_at", enrolled)
    attributes = _pairs(value.get("attributes", {}), "tracked_entity.attributes", ident, add)
    return TrackedEntityRule(type=value.get("type"), id=person, attributes=attributes, enrolled_at=enrolled)


def is_tracker(pipeline: Any) -> bool:
    """A DHIS2 tracker pipeline: its reports are events (and tracked entities) sent document by document."""
    return isinstance(getattr(pipeline.destination, "settings", None), TrackerSettings)
