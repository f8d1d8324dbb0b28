"""Tracked entities, enrollments and events as DHIS2's new tracker imports and lists them (§1.4, §1.6).

``import_bundle`` takes the payload of ``POST /api/tracker`` (flat, or nested: tracked entities
holding enrollments holding events, flattened here as the server does), validates each object
(UID format E1048, metadata that must exist, the user's capture scope E1000, the import strategy's
exists / does-not-exist rules, soft-deleted UIDs never reused), commits as ``atomicMode`` says
(``ALL``: nothing when anything is invalid; ``OBJECT``: every valid object), and returns the
report of §1.4: ``status``, ``validationReport.errorReports`` (message, errorCode, trackerType,
uid), ``stats`` and ``bundleReport.typeReportMap``. Messages are dhis2-core's ``TrackerErrorCode``
texts. An object whose parent (its tracked entity, its enrollment) is invalid is refused with E5000.
"""

from __future__ import annotations

import copy
import secrets
import string
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from standins.dhis2.metadata import Metadata, is_uid

TE, ENROLLMENT, EVENT, RELATIONSHIP = "TRACKED_ENTITY", "ENROLLMENT", "EVENT", "RELATIONSHIP"
TYPES = (TE, ENROLLMENT, EVENT, RELATIONSHIP)
KEYS = {TE: "trackedEntity", ENROLLMENT: "enrollment", EVENT: "event", RELATIONSHIP: "relationship"}
COLLECTIONS = {TE: "trackedEntities", ENROLLMENT: "enrollments", EVENT: "events", RELATIONSHIP: "relationships"}
NAMES = {TE: "TrackedEntity", ENROLLMENT: "Enrollment", EVENT: "Event", RELATIONSHIP: "Relationship"}
STRATEGIES = ("CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE")
ATOMIC_MODES = ("ALL", "OBJECT")

MESSAGES = {
    "E1000": "User: `{0}`, has no write access to OrganisationUnit: `{1}`.",
    "E1002": "TrackedEntityInstance: `{0}`, already exists.",
    "E1005": "Could not find TrackedEntityType: `{0}`.",
    "E1006": "Attribute: `{0}`, does not exist.",
    "E1010": "Could not find Program: `{0}`, linked to Event.",
    "E1011": "Could not find OrganisationUnit: `{0}`, linked to Event.",
    "E1013": "Could not find ProgramStage: `{0}`, linked to Event.",
    "E1014": "Provided Program: `{0}`, is a Program without registration. "
    "An Enrollment cannot be created into Program without registration.",
    "E1022": "TrackedEntityInstance: `{0}`, must have same TrackedEntityType as Program `{1}`.",
    "E1025": "Property enrolledAt is null or has an invalid format: `{0}`.",
    "E1029": "Event OrganisationUnit: `{0}`, and Program: `{1}`, don't match.",
    "E1030": "Event: `{0}`, already exists.",
    "E1031": "Event OccurredAt date is missing.",
    "E1032": "Event: `{0}`, do not exist.",
    "E1033": "Event: `{0}`, Enrollment value is null.",
    "E1035": "Event: `{0}`, ProgramStage value is null.",
    "E1041": "Enrollment OrganisationUnit: `{0}`, and Program: `{1}`, don't match.",
    "E1048": "Object: `{0}`, uid: `{1}`, has an invalid uid format.",
    "E1049": "Could not find OrganisationUnit: `{0}`, linked to Tracked Entity.",
    "E1063": "TrackedEntityInstance: `{0}`, does not exist.",
    "E1068": "Could not find TrackedEntityInstance: `{0}`, linked to Enrollment.",
    "E1069": "Could not find Program: `{0}`, linked to Enrollment.",
    "E1070": "Could not find OrganisationUnit: `{0}`, linked to Enrollment.",
    "E1079": "Event: `{0}`, program: `{1}` is different from program defined in enrollment `{2}`.",
    "E1080": "Enrollment: `{0}`, already exists.",
    "E1081": "Enrollment: `{0}`, do not exist.",
    "E1082": "Event: `{0}`, is already deleted and cannot be modified.",
    "E1089": "Event: `{0}`, references a Program Stage `{1}` that does not belong to Program `{2}`.",
    "E1113": "Enrollment: `{0}`, is already deleted and cannot be modified.",
    "E1114": "TrackedEntity: `{0}`, is already deleted and cannot be modified.",
    "E1121": "Missing required tracked entity property: `{0}`.",
    "E1122": "Missing required enrollment property: `{0}`.",
    "E1123": "Missing required event property: `{0}`.",
    "E1304": "DataElement `{0}` is not a valid data element",
    "E1305": "DataElement `{0}` is not part of `{1}` program stage",
    "E5000": '"{0}" `{1}` cannot be persisted because "{2}" `{3}` referenced by it cannot be persisted.',
}
EXISTS = {TE: "E1002", ENROLLMENT: "E1080", EVENT: "E1030"}
MISSING = {TE: "E1063", ENROLLMENT: "E1081", EVENT: "E1032"}
DELETED = {TE: "E1114", ENROLLMENT: "E1113", EVENT: "E1082"}

_UID_REST = string.ascii_letters + string.digits


def new_uid() -> str:
    """A server-generated UID (``GET /api/system/id``): a letter, then ten letters or digits."""
    return secrets.choice(string.ascii_letters) + "".join(secrets.choice(_UID_REST) for _ in range(10))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def flatten(payload: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The flat form of a nested payload: each child carries its parent's UID (generated when absent)."""
    flat: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}

    def add_event(event: dict, enrollment: dict | None) -> None:
        event = dict(event)
        if enrollment is not None:
            event.setdefault("enrollment", enrollment["enrollment"])
            event.setdefault("program", enrollment.get("program"))
            event.setdefault("trackedEntity", enrollment.get("trackedEntity"))
        flat[EVENT].append(event)

    def add_enrollment(enrollment: dict, te: dict | None) -> None:
        enrollment = dict(enrollment)
        events = enrollment.pop("events", None) or []
        enrollment.setdefault("enrollment", new_uid() if events else None)
        if te is not None:
            enrollment.setdefault("trackedEntity", te["trackedEntity"])
        flat[ENROLLMENT].append(enrollment)
        for event in events:
            add_event(event, enrollment)

    for te in payload.get("trackedEntities") or []:
        te = dict(te)
        enrollments = te.pop("enrollments", None) or []
        te.setdefault("trackedEntity", new_uid() if enrollments else None)
        flat[TE].append(te)
        for enrollment in enrollments:
            add_enrollment(enrollment, te)
    for enrollment in payload.get("enrollments") or []:
        add_enrollment(enrollment, None)
    for event in payload.get("events") or []:
        add_event(event, None)
    flat[RELATIONSHIP] = list(payload.get("relationships") or [])
    return flat


class Tracker:
    """The stored tracker objects by type and UID, the import, and the paged reads."""

    def __init__(self, metadata: Metadata) -> None:
        self.metadata = metadata
        self._lock = threading.Lock()
        self._stored: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TYPES}
        self.outcomes: Counter = Counter()  # (tracker type, created|updated|deleted) -> objects committed

    # -- the import ---------------------------------------------------------------------------------

    def import_bundle(
        self,
        payload: dict[str, Any],
        strategy: str,
        atomic_mode: str,
        commit: bool,
        schemes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Validate and (``commit``) store ``payload``; the report of §1.4. ``schemes`` are the id
        scheme parameters (``idScheme``, ``orgUnitIdScheme``, ``programIdScheme``,
        ``programStageIdScheme``, ``dataElementIdScheme``) the metadata references are read by."""
        flat = flatten(payload)
        self._preheat(flat, schemes or {})
        with self._lock:  # one import at a time, as DHIS2's preheat/validate/commit sees one bundle
            errors: list[dict[str, Any]] = []
            bad: set[tuple[str, str]] = set()
            for tracker_type in (TE, ENROLLMENT, EVENT, RELATIONSHIP):
                for obj in flat[tracker_type]:
                    uid = obj.get(KEYS[tracker_type])
                    if not uid:
                        obj[KEYS[tracker_type]] = uid = new_uid()
                    found = self._validate(tracker_type, obj, strategy, flat, bad)
                    if found:
                        bad.add((tracker_type, uid))
                        errors += [
                            {"message": m, "errorCode": c, "trackerType": tracker_type, "uid": uid} for c, m in found
                        ]
            stats = {t: {"created": 0, "updated": 0, "deleted": 0, "ignored": 0} for t in TYPES}
            reports: dict[str, list[dict[str, Any]]] = {t: [] for t in TYPES}
            apply = commit and not (errors and atomic_mode == "ALL")
            for tracker_type in TYPES:
                for index, obj in enumerate(flat[tracker_type]):
                    uid = obj[KEYS[tracker_type]]
                    if (tracker_type, uid) in bad or not apply:
                        stats[tracker_type]["ignored"] += 1
                        continue
                    outcome = self._store(tracker_type, obj, strategy)
                    stats[tracker_type][outcome] += 1
                    self.outcomes[(tracker_type, outcome)] += 1
                    reports[tracker_type].append(
                        {"trackerType": tracker_type, "uid": uid, "index": index, "errorReports": []}
                    )
        total = {k: sum(s[k] for s in stats.values()) for k in ("created", "updated", "deleted", "ignored")}
        total["total"] = sum(total.values())
        type_map = {}
        for tracker_type in TYPES:
            if flat[tracker_type]:
                s = dict(stats[tracker_type], total=sum(stats[tracker_type].values()))
                type_map[tracker_type] = {
                    "trackerType": tracker_type,
                    "stats": s,
                    "objectReports": reports[tracker_type],
                }
        return {
            "status": "ERROR" if errors else "OK",
            "validationReport": {"errorReports": errors, "warningReports": []},
            "stats": total,
            "bundleReport": {"status": "ERROR" if errors else "OK", "typeReportMap": type_map, "stats": total},
        }

    def _preheat(self, flat: dict[str, list[dict[str, Any]]], schemes: dict[str, str]) -> None:
        """Metadata references named by code, name or attribute become UIDs; one not found stays as
        sent, and validation names it (``Could not find OrganisationUnit: `<code>`...``)."""
        general = schemes.get("idScheme", "UID")
        refs = (("orgUnit", "organisationUnits"), ("program", "programs"), ("programStage", "programStages"))
        for obj in (o for kind in (TE, ENROLLMENT, EVENT) for o in flat[kind]):
            for key, collection in refs:
                scheme = schemes.get(f"{key}IdScheme", general)
                if obj.get(key) and scheme.upper() != "UID":
                    found = self.metadata.resolve(collection, obj[key], scheme)
                    obj[key] = found["id"] if found else obj[key]
            scheme = schemes.get("dataElementIdScheme", general)
            for dv in obj.get("dataValues") or [] if scheme.upper() != "UID" else []:
                found = self.metadata.resolve("dataElements", dv.get("dataElement"), scheme)
                dv["dataElement"] = found["id"] if found else dv.get("dataElement")

    def _validate(self, kind: str, obj: dict, strategy: str, flat: dict, bad: set) -> list[tuple[str, str]]:
        """(errorCode, message) of each rule ``obj`` breaks; empty when it may be committed."""
        uid = obj[KEYS[kind]]
        if not is_uid(uid):
            return [("E1048", MESSAGES["E1048"].format(uid, uid))]
        stored = self._stored[kind].get(uid)
        if stored is not None and stored.get("deleted"):
            return [(DELETED[kind], MESSAGES[DELETED[kind]].format(uid))] if kind in DELETED else []
        if strategy == "CREATE" and stored is not None and kind in EXISTS:
            return [(EXISTS[kind], MESSAGES[EXISTS[kind]].format(uid))]
        if strategy in ("UPDATE", "DELETE") and stored is None and kind in MISSING:
            return [(MISSING[kind], MESSAGES[MISSING[kind]].format(uid))]
        if strategy == "DELETE":
            return []
        check = {TE: self._check_te, ENROLLMENT: self._check_enrollment, EVENT: self._check_event}.get(kind)
        return check(obj, flat, bad) if check else []

    def _error(self, code: str, *args: Any) -> tuple[str, str]:
        return code, MESSAGES[code].format(*args)

    def _scope(self, ou: str) -> list[tuple[str, str]]:
        if self.metadata.in_capture_scope(ou):
            return []
        return [self._error("E1000", self.metadata.user.get("username"), ou)]

    def _check_te(self, te: dict, flat: dict, bad: set) -> list[tuple[str, str]]:
        md, out = self.metadata, []
        if not te.get("trackedEntityType"):
            out.append(self._error("E1121", "trackedEntityType"))
        elif md.get("trackedEntityTypes", te["trackedEntityType"]) is None:
            out.append(self._error("E1005", te["trackedEntityType"]))
        if not te.get("orgUnit"):
            out.append(self._error("E1121", "orgUnit"))
        elif md.get("organisationUnits", te["orgUnit"]) is None:
            out.append(self._error("E1049", te["orgUnit"]))
        else:
            out += self._scope(te["orgUnit"])
        for attribute in te.get("attributes") or []:
            if md.get("trackedEntityAttributes", attribute.get("attribute")) is None:
                out.append(self._error("E1006", attribute.get("attribute")))
        return out

    def _check_enrollment(self, en: dict, flat: dict, bad: set) -> list[tuple[str, str]]:
        md, out, uid = self.metadata, [], en["enrollment"]
        program = md.get("programs", en.get("program"))
        if not en.get("program"):
            out.append(self._error("E1122", "program"))
        elif program is None:
            out.append(self._error("E1069", en["program"]))
        elif program.get("programType") == "WITHOUT_REGISTRATION":
            out.append(self._error("E1014", en["program"]))
        te_uid = en.get("trackedEntity")
        te = self._find(TE, te_uid, flat)
        if not te_uid:
            out.append(self._error("E1122", "trackedEntity"))
        elif (TE, te_uid) in bad:
            out.append(self._error("E5000", "ENROLLMENT", uid, "TRACKED_ENTITY", te_uid))
        elif te is None:
            out.append(self._error("E1068", te_uid))
        elif program and program.get("trackedEntityType", {}).get("id") not in (None, te.get("trackedEntityType")):
            out.append(self._error("E1022", te_uid, program["id"]))
        if not en.get("orgUnit"):
            out.append(self._error("E1122", "orgUnit"))
        elif md.get("organisationUnits", en["orgUnit"]) is None:
            out.append(self._error("E1070", en["orgUnit"]))
        else:
            out += self._scope(en["orgUnit"])
            if program and en["orgUnit"] not in {o["id"] for o in program.get("organisationUnits", [])}:
                out.append(self._error("E1041", en["orgUnit"], program["id"]))
        if not en.get("enrolledAt"):
            out.append(self._error("E1025", en.get("enrolledAt")))
        return out

    def _check_event(self, ev: dict, flat: dict, bad: set) -> list[tuple[str, str]]:
        md, out, uid = self.metadata, [], ev["event"]
        enrollment = None
        if ev.get("enrollment"):
            if (ENROLLMENT, ev["enrollment"]) in bad:
                return [self._error("E5000", "EVENT", uid, "ENROLLMENT", ev["enrollment"])]
            enrollment = self._find(ENROLLMENT, ev["enrollment"], flat)
        stage = md.get("programStages", ev.get("programStage"))
        program_uid = ev.get("program") or (stage or {}).get("program", {}).get("id")
        program = md.get("programs", program_uid)
        if not ev.get("programStage"):
            out.append(self._error("E1035", uid))
        elif stage is None:
            out.append(self._error("E1013", ev["programStage"]))
        if program is None:
            out.append(self._error("E1010", program_uid))
        elif stage is not None and stage.get("program", {}).get("id") != program["id"]:
            out.append(self._error("E1089", uid, stage["id"], program["id"]))
        if program is not None and program.get("programType") == "WITH_REGISTRATION":
            if enrollment is None:
                out.append(self._error("E1033", uid))
            elif enrollment.get("program") != program["id"]:
                out.append(self._error("E1079", uid, program["id"], enrollment["enrollment"]))
        if not ev.get("orgUnit"):
            out.append(self._error("E1123", "orgUnit"))
        elif md.get("organisationUnits", ev["orgUnit"]) is None:
            out.append(self._error("E1011", ev["orgUnit"]))
        else:
            out += self._scope(ev["orgUnit"])
            if program and ev["orgUnit"] not in {o["id"] for o in program.get("organisationUnits", [])}:
                out.append(self._error("E1029", ev["orgUnit"], program["id"]))
        if ev.get("status", "ACTIVE") in ("ACTIVE", "COMPLETED") and not ev.get("occurredAt"):
            out.append(self._error("E1031"))
        in_stage = {d["dataElement"]["id"] for d in (stage or {}).get("programStageDataElements", [])}
        for dv in ev.get("dataValues") or []:
            if md.get("dataElements", dv.get("dataElement")) is None:
                out.append(self._error("E1304", dv.get("dataElement")))
            elif stage is not None and dv["dataElement"] not in in_stage:
                out.append(self._error("E1305", dv["dataElement"], stage["id"]))
        return out

    def _find(self, kind: str, uid: str | None, flat: dict) -> dict | None:
        """The object ``uid`` of ``kind`` in this payload, or stored and not deleted."""
        for obj in flat[kind]:
            if obj.get(KEYS[kind]) == uid:
                return obj
        stored = self._stored[kind].get(uid or "")
        return None if stored is None or stored.get("deleted") else stored

    def _store(self, kind: str, obj: dict, strategy: str) -> str:
        uid = obj[KEYS[kind]]
        stored = self._stored[kind].get(uid)
        now = _now()
        if strategy == "DELETE":
            stored.update(deleted=True, updatedAt=now)
            return "deleted"
        record = copy.deepcopy(obj)
        record.update(createdAt=stored["createdAt"] if stored else now, updatedAt=now, deleted=False)
        if kind == EVENT and not record.get("program"):
            record["program"] = self.metadata.get("programStages", record["programStage"])["program"]["id"]
        if stored is not None and kind == EVENT:  # a partial dataValues collection updates the values it names
            values = {d["dataElement"]: d for d in stored.get("dataValues", [])}
            for dv in record.get("dataValues") or []:
                if dv.get("value") is None:
                    values.pop(dv["dataElement"], None)
                else:
                    values[dv["dataElement"]] = dv
            record["dataValues"] = list(values.values())
        self._stored[kind][uid] = record
        return "updated" if stored is not None else "created"

    # -- reading ------------------------------------------------------------------------------------

    def find(self, kind: str, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The live objects of ``kind`` that the filters of ``GET /api/tracker/<collection>`` select."""
        md = self.metadata
        one = lambda name: (params.get(name) or [None])[0]  # noqa: E731
        units = [
            u
            for value in params.get("orgUnits", []) + params.get("orgUnit", [])
            for u in value.replace(";", ",").split(",")
            if u
        ]
        mode = (one("orgUnitMode") or one("ouMode") or ("SELECTED" if units else "ACCESSIBLE")).upper()
        if mode == "SELECTED":
            allowed = set(units)
        elif mode in ("CHILDREN", "DESCENDANTS"):
            allowed = {o["id"] for o in md.all("organisationUnits") if set(o["path"].split("/")[1:]) & set(units)}
            if mode == "CHILDREN":
                allowed = {
                    o
                    for o in allowed
                    if o in units or (md.get("organisationUnits", o) or {}).get("parent", {}).get("id") in units
                }
        else:  # ACCESSIBLE, CAPTURE, ALL: the user's whole scope (ALL is everything)
            allowed = (
                None
                if mode == "ALL"
                else {o["id"] for o in md.all("organisationUnits") if md.in_capture_scope(o["id"])}
            )
        program = one("program")
        wanted = {
            u
            for value in params.get(KEYS[kind] + "s", []) + params.get(KEYS[kind], [])
            for u in value.replace(";", ",").split(",")
            if u
        }
        after, before = one("updatedAfter"), one("updatedBefore")
        occurred_after, occurred_before = one("occurredAfter"), one("occurredBefore")
        include_deleted = (one("includeDeleted") or "false").lower() == "true"
        out = []
        with self._lock:
            for uid, obj in self._stored[kind].items():
                if obj.get("deleted") and not include_deleted:
                    continue
                if allowed is not None and obj.get("orgUnit") not in allowed:
                    continue
                if program and not self._in_program(kind, obj, program):
                    continue
                if wanted and uid not in wanted:
                    continue
                if (after and obj["updatedAt"] < after) or (before and obj["updatedAt"] > before):
                    continue
                occurred = (obj.get("occurredAt") or "")[:10]
                if (occurred_after and occurred < occurred_after[:10]) or (
                    occurred_before and occurred > occurred_before[:10]
                ):
                    continue
                out.append(copy.deepcopy(obj))
        return out

    def _in_program(self, kind: str, obj: dict, program: str) -> bool:
        if kind in (ENROLLMENT, EVENT):
            return obj.get("program") == program
        if kind == TE:
            return any(e.get("trackedEntity") == obj["trackedEntity"] and e.get("program") == program
                       for e in self._stored[ENROLLMENT].values() if not e.get("deleted"))  # fmt: skip
        return True

    def count(self, kind: str, *, program: str | None = None) -> int:
        """Live objects of ``kind`` (in ``program``), for tests that count what arrived."""
        with self._lock:
            return sum(
                1
                for o in self._stored[kind].values()
                if not o.get("deleted") and (program is None or self._in_program(kind, o, program))
            )

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        with self._lock:
            return copy.deepcopy(self._stored)

    def restore(self, stored: dict[str, dict[str, dict[str, Any]]]) -> None:
        with self._lock:
            for kind, objects in stored.items():
                self._stored[kind] = objects

    def get(self, kind: str, uid: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._stored[kind].get(uid)
            return copy.deepcopy(found) if found else None
