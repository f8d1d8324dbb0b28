"""The DHIS2 stand-in's metadata: what exists on the server, looked up as DHIS2 looks it up.

Objects are plain dicts in the shape the metadata API returns them (``id``, ``code``, ``name``,
and per type ``path``, ``programType``, ``programStages``, ``dataSetElements``, ``access``...).
``access`` is the sharing already computed for the one user the stand-in knows, as DHIS2 computes
it for the current user: ``{"read": ..., "write": ..., "data": {"read": ..., "write": ...}}``.

Lookups follow the id scheme options of destinations.md §1.3: ``uid`` (the default), ``code``,
``name`` or ``attribute:<attrUid>`` (a value in the object's ``attributeValues``), case-insensitive
scheme names as DHIS2 accepts them.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterable
from typing import Any

UID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{10}$")
DEFAULT_COC = "HllvX50cXC0"  # DHIS2's "default" category option combo (same UID on every instance)

#: the metadata API's collection names, each with its object type name for messages
TYPES = {
    "organisationUnits": "OrganisationUnit",
    "dataElements": "DataElement",
    "categoryOptionCombos": "CategoryOptionCombo",
    "dataSets": "DataSet",
    "programs": "Program",
    "programStages": "ProgramStage",
    "trackedEntityTypes": "TrackedEntityType",
    "trackedEntityAttributes": "TrackedEntityAttribute",
}

WRITE = {"read": True, "write": True, "data": {"read": True, "write": True}}

DEFAULT_USER = {
    "id": "M5zQapPyTZI",
    "username": "bridge",
    "name": "CHT Bridge",
    "authorities": ["F_DATAVALUE_ADD", "F_TRACKED_ENTITY_INSTANCE_ADD", "F_PROGRAM_ENROLLMENT"],
    "organisationUnits": [],  # the capture scope: filled with the roots of the org unit tree
}


def is_uid(value: Any) -> bool:
    """DHIS2's UID rule: 11 characters, a letter first, then letters and digits (§1.2)."""
    return isinstance(value, str) and bool(UID_RE.match(value))


class Metadata:
    """Every metadata object of the stand-in, by collection and by UID; safe to change while serving."""

    def __init__(self, objects: dict[str, Iterable[dict[str, Any]]] | None = None, user: dict | None = None) -> None:
        self._lock = threading.Lock()
        self._by_type: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in TYPES}
        self.user = copy.deepcopy(user or DEFAULT_USER)
        self.add("categoryOptionCombos", [{"id": DEFAULT_COC, "code": "default", "name": "default"}])
        for collection, items in (objects or {}).items():
            self.add(collection, items)
        if not self.user.get("organisationUnits"):  # by default the user captures data everywhere
            roots = [ou["id"] for ou in self._by_type["organisationUnits"].values() if not ou.get("parent")]
            self.user["organisationUnits"] = [{"id": uid} for uid in roots]

    def add(self, collection: str, items: Iterable[dict[str, Any]]) -> None:
        """Add or replace objects; an org unit gets its ``path`` and ``level`` from its ``parent``."""
        if collection not in TYPES:
            raise KeyError(f"unknown metadata collection {collection!r} (known: {', '.join(TYPES)})")
        with self._lock:
            for item in items:
                item = copy.deepcopy(item)
                if not is_uid(item.get("id")):
                    raise ValueError(f"{collection}: invalid UID {item.get('id')!r}")
                item.setdefault("name", item["id"])
                if collection in ("dataSets", "programs", "programStages", "trackedEntityTypes"):
                    item.setdefault("access", copy.deepcopy(WRITE))
                if collection == "organisationUnits":
                    parent = item.get("parent", {}) or {}
                    above = self._by_type["organisationUnits"].get(parent.get("id", ""), {})
                    item["path"] = f"{above.get('path', '')}/{item['id']}"
                    item["level"] = item["path"].count("/")
                self._by_type[collection][item["id"]] = item

    def remove(self, collection: str, uid: str) -> None:
        with self._lock:
            self._by_type[collection].pop(uid, None)

    def all(self, collection: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._by_type[collection].values()]

    def get(self, collection: str, uid: str | None) -> dict[str, Any] | None:
        """The object with UID ``uid``, or None."""
        if not uid:
            return None
        with self._lock:
            found = self._by_type[collection].get(uid)
            return copy.deepcopy(found) if found else None

    def resolve(self, collection: str, ref: Any, scheme: str = "uid") -> dict[str, Any] | None:
        """The object ``ref`` names under id scheme ``scheme`` (uid, code, name, attribute:<uid>)."""
        if not isinstance(ref, str) or not ref:
            return None
        scheme = (scheme or "uid").lower()
        if scheme == "uid":
            return self.get(collection, ref)
        with self._lock:
            for obj in self._by_type[collection].values():
                if scheme in ("code", "name") and obj.get(scheme) == ref:
                    return copy.deepcopy(obj)
                if scheme.startswith("attribute:"):
                    attr = scheme.split(":", 1)[1]
                    for av in obj.get("attributeValues", []):
                        if av.get("attribute", {}).get("id") == attr and av.get("value") == ref:
                            return copy.deepcopy(obj)
        return None

    def in_capture_scope(self, org_unit_uid: str) -> bool:
        """Whether the org unit is one of the user's data capture org units or below one of them."""
        ou = self.get("organisationUnits", org_unit_uid)
        if ou is None:
            return False
        roots = {o["id"] for o in self.user.get("organisationUnits", [])}
        return any(part in roots for part in ou["path"].split("/") if part)

    def has_authority(self, authority: str) -> bool:
        authorities = self.user.get("authorities", [])
        return "ALL" in authorities or authority in authorities


def demo_metadata(org_units: Iterable[tuple[str, str, str]], extra: dict[str, list[dict]] | None = None) -> Metadata:
    """Metadata for the demo: a country root with one org unit per ``(uid, code, name)``, the
    data elements and programs of the demo pipelines (``DEMO``), and ``extra`` objects."""
    root = {"id": "ImspTQPwCqd", "code": "KE", "name": "Kenya"}
    units = [root] + [
        {"id": uid, "code": code, "name": name, "parent": {"id": root["id"]}} for uid, code, name in org_units
    ]
    objects: dict[str, list[dict]] = {"organisationUnits": units}
    for collection, items in DEMO.items():
        objects.setdefault(collection, []).extend(copy.deepcopy(items))
    for collection, items in (extra or {}).items():
        objects.setdefault(collection, []).extend(items)
    for program in objects.get("programs", []):
        program.setdefault("organisationUnits", [{"id": u["id"]} for u in units[1:]])
    return Metadata(objects)


#: What the demo's tracker pipelines use (the aggregate pipeline's data set and data elements are
#: ``standins.aggregate_demo.METADATA``, given as ``extra``): an event program "CHT assessments"
#: (no registration) with one stage, and a tracker program "CHT pregnancy" (tracked entity type
#: Person) with a pregnancy registration stage.
DEMO: dict[str, list[dict]] = {
    "dataElements": [
        {"id": "AsmTempC001", "code": "CHT_TEMPERATURE", "name": "Temperature (C)", "domainType": "TRACKER"},
        {"id": "AsmRefer002", "code": "CHT_REFERRED", "name": "Referred", "domainType": "TRACKER"},
        {"id": "AsmSympt003", "code": "CHT_SYMPTOMS", "name": "Symptoms", "domainType": "TRACKER"},
        {"id": "AncWeeks004", "code": "CHT_WEEKS_LMP", "name": "Weeks since LMP", "domainType": "TRACKER"},
        {"id": "AncVisit005", "code": "CHT_ANC_VISITS", "name": "ANC visits", "domainType": "TRACKER"},
    ],
    "trackedEntityTypes": [{"id": "nEenWmSyUEp", "code": "PERSON", "name": "Person"}],
    "trackedEntityAttributes": [
        {"id": "w75KJ2mc4zz", "code": "FIRST_NAME", "name": "Name"},
        {"id": "ChtPatId006", "code": "CHT_PATIENT_ID", "name": "CHT patient id"},
    ],
    "programs": [
        {
            "id": "ChtAssess01",
            "code": "CHT_ASSESSMENT",
            "name": "CHT assessments",
            "programType": "WITHOUT_REGISTRATION",
            "programStages": [{"id": "ChtAssessS1"}],
        },
        {
            "id": "ChtPregnan1",
            "code": "CHT_PREGNANCY",
            "name": "CHT pregnancy",
            "programType": "WITH_REGISTRATION",
            "trackedEntityType": {"id": "nEenWmSyUEp"},
            "programTrackedEntityAttributes": [
                {"trackedEntityAttribute": {"id": "w75KJ2mc4zz"}},
                {"trackedEntityAttribute": {"id": "ChtPatId006"}},
            ],
            "programStages": [{"id": "ChtPregReg1"}],
        },
    ],
    "programStages": [
        {
            "id": "ChtAssessS1",
            "code": "CHT_ASSESSMENT_VISIT",
            "name": "Assessment",
            "program": {"id": "ChtAssess01"},
            "repeatable": False,
            "programStageDataElements": [
                {"dataElement": {"id": "AsmTempC001"}},
                {"dataElement": {"id": "AsmRefer002"}},
                {"dataElement": {"id": "AsmSympt003"}},
            ],
        },
        {
            "id": "ChtPregReg1",
            "code": "CHT_PREGNANCY_REGISTRATION",
            "name": "Pregnancy registration",
            "program": {"id": "ChtPregnan1"},
            "repeatable": True,
            "programStageDataElements": [
                {"dataElement": {"id": "AncWeeks004"}},
                {"dataElement": {"id": "AncVisit005"}},
            ],
        },
    ],
}
