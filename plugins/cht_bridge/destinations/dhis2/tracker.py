"""DHIS2 tracker destination (``dhis2.kind: tracker``): CHT reports as events, and people as tracked entities.

Each mapped report becomes one event of the pipeline's program stage; in a tracker program its
person also becomes a tracked entity (with the mapped attributes) enrolled in the program. All of
them are sent as one flat payload per batch to
``POST /api/tracker?async=false&importStrategy=CREATE_AND_UPDATE&atomicMode=OBJECT`` (§1.4):
synchronous, so the answer is the validation report; every object's UID is derived from a CHT id
(``uids.py``), so a batch sent again after a crash or a retry updates what the first try
created instead of adding a duplicate; and ``atomicMode=OBJECT`` commits every valid object
even when others in the batch are refused.

The report is read per object: a document is delivered when none of its objects (its event, and
its tracked entity and enrollment) has an error report, and refused with DHIS2's
``errorCode`` and ``message`` otherwise. A 409 is such a partial answer, read whole (§1.4: HTTP
409 when ``status`` is ``ERROR``, valid objects committed). What may pass later (no answer, 429,
5xx) is retried as the REST destination retries (``RestDestination._deliver``: backoff,
``Retry-After``, the circuit breaker); 401/403 stop the run. A report whose org unit is not in
the place table, or whose payload lacks the person's id, is refused before sending, with why.

A person's tracked entity and enrollment are shared by all their reports, so they are sent once,
with the first report(s) that carry the person, and never again: a later report sends its event
alone, naming them. §1.4: an update under ``CREATE_AND_UPDATE`` "must carry all non-collection
fields", so an enrollment sent again would have to carry ``enrolledAt``, ``occurredAt`` and
``status`` again (moving the enrollment date to the later report's and reopening an enrollment
completed at DHIS2), and a tracked entity its ``orgUnit`` (moving the person to the later report's
org unit); leaving a field out is no way around that. Whether they were sent is in the ledger,
under ``<pipeline>~enrollments`` (one row per enrollment UID, ``destination_id`` its tracked
entity's UID), written once DHIS2 accepted both (``attach`` gives the store; without one, as in a
bare destination, they go with every batch). Within one batch the earliest date of the person's
reports is the enrollment's, and the first report's org unit the tracked entity's. What this
gives up: attributes changed in CHT after the person was sent do not reach DHIS2.

Dates are sent as DHIS2 reads date-times without an offset: local wall-clock time of the
instance's ``time_zone`` (the setting the aggregate kind has, default UTC). An instant (epoch ms,
CHT's ``reported_date``, or ISO text with an offset or ``Z``) is converted to it; a date or a local
date-time without an offset is sent as given.

A report deleted in CHT deletes its event (``importStrategy=DELETE``); the tracked entity and
the enrollment stay, other reports may hang on them. A deleted UID can never be used again in
DHIS2 (E1082): a report restored in CHT after that is refused with that message.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Self
from zoneinfo import ZoneInfo

import requests

from cht_bridge.destinations.base import Delivery, Result
from cht_bridge.destinations.dhis2 import preflight, uids
from cht_bridge.destinations.rest import REASON_CHARS, RestDestination, _Answer, _failed, _json, _reason
from cht_bridge.errors import AuthError
from cht_bridge.http.read import Unanswered, answer_or_reason
from cht_bridge.http.retry import RetryPolicy, classify, delivery_policy, retry_after
from cht_bridge.state import DELIVERED, Outcome
from cht_bridge.state.store import bookkeeping

log = logging.getLogger(__name__)

IMPORT_PARAMS = {
    "async": "false",
    "importStrategy": "CREATE_AND_UPDATE",
    "atomicMode": "OBJECT",
    "reportMode": "ERRORS",
}
#: Error codes whose message quotes a data value (an attribute's, a data element's, a date): the
#: quoted text is dropped from the ledger's reason unless it is a UID, as patient data stays out of
#: reasons (they are logged). dhis2-core TrackerErrorCode texts.
VALUE_CODES = {"E1007", "E1009", "E1020", "E1021", "E1023", "E1025", "E1064", "E1077", "E1084", "E1085", "E1112",
               "E1125", "E1302", "E1307", "E1309"}  # fmt: skip
QUOTED = re.compile(r"`([^`]*)`")
#: A delete of an event DHIS2 no longer has (never created, or deleted before) leaves the same state.
GONE = {"E1032", "E1082"}
TE, ENROLLMENT, EVENT = "trackedEntities", "enrollments", "events"


def enrollments_of(pipeline: str) -> str:
    """The ledger's rows of the enrollments (and their tracked entities) a pipeline has sent."""
    return bookkeeping(pipeline, "enrollments")


@dataclass(frozen=True)
class Objects:
    """The tracker objects of one document, and the UIDs whose error reports are its own."""

    doc_id: str
    tracked_entity: dict[str, Any] | None
    enrollment: dict[str, Any] | None
    event: dict[str, Any] | None

    @property
    def uids(self) -> list[str]:
        return [o[k] for o, k in ((self.tracked_entity, "trackedEntity"), (self.enrollment, "enrollment"),
                                  (self.event, "event")) if o is not None]  # fmt: skip

    @property
    def main_uid(self) -> str:
        return self.uids[-1]


class TrackerDestination(RestDestination):
    """Sends mapped reports as DHIS2 tracker objects; ``settings`` is ``config.kinds.dhis2_tracker``'s."""

    reads_ledger_while_sending = True  # the enrollments (and tracked entities) already sent, in the store

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        api_path: str,
        settings: Any,
        *,
        conn_id: str,
        org_units: Any = None,
        batch_size: int = 100,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(session, base_url, api_path.rstrip("/") + "/tracker", conn_id=conn_id, method="POST",
                         mode="batch", batch_size=batch_size, concurrency=1, timeout=timeout, retry=retry, **kwargs)  # fmt: skip
        self.api_url = self.base_url + api_path.rstrip("/")
        self.settings = settings
        self.org_units = org_units  # the place table (OrgUnitTable) when the org unit comes from a CHT place
        self.params = dict(IMPORT_PARAMS)
        if settings.id_scheme != "UID":
            self.params["idScheme"] = settings.id_scheme
        self.zone = ZoneInfo(settings.time_zone)
        self._checked = False
        self._store: Any = None  # the run's state store (``attach``): which enrollments were sent
        self._pipeline = ""

    def attach(self, store: Any, pipeline: str) -> None:
        """The run's state store and the pipeline's name: enrollments already sent are not sent again."""
        self._store, self._pipeline = store, pipeline

    @classmethod
    def configured(cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None) -> Self:
        s = destination.settings
        api_path = destination.path.rstrip("/") + (f"/{s.api_version}" if s.api_version else "")
        retry = delivery_policy(delivery)
        table = None
        if s.org_unit_table:
            from cht_bridge.destinations.dhis2.org_units import load_org_unit_table  # the one reader of the table

            table = load_org_unit_table(s.org_unit_table)
        return cls(session, base_url, api_path, s, conn_id=destination.conn_id, org_units=table,
                   batch_size=destination.batch_size, timeout=destination.timeout, retry=retry)  # fmt: skip

    # -- the pre-flight -------------------------------------------------------------------------------

    def needs(self) -> preflight.Needs:
        """What this pipeline writes to, for the pre-flight."""
        s = self.settings
        te = s.tracked_entity
        org_units = {}
        if self.org_units is not None:
            for place, unit in sorted(self.org_units.org_units.items()):
                org_units.setdefault(unit, f"org unit table {self.org_units.file}, place {place}")
        stage = {s.program_stage: "program_stage"} if s.program_stage else {}
        return preflight.Needs(
            id_scheme=s.id_scheme,
            org_units=org_units,
            program=s.program,
            program_type="WITH_REGISTRATION" if te else "WITHOUT_REGISTRATION",
            program_stages=stage,
            stage_data_elements={de: f"data_values.{de}" for de, _ in s.data_values},
            tracked_entity_type=te.type if te else None,
            tracked_entity_attributes={a: f"tracked_entity.attributes.{a}" for a, _ in te.attributes} if te else {},
        )

    def check(self) -> None:
        """The pre-flight, once per run (this object lives for one run): see ``preflight``."""
        if self._checked:
            return
        preflight.verify(self._session, self.api_url, self.needs(), conn_id=self.conn_id, timeout=self.timeout)
        self._checked = True

    # -- building the payload ----------------------------------------------------------------------------

    def objects(self, doc_id: str, payload: Any) -> Objects | str:
        """The tracker objects of one mapped report, or why it cannot have any (a reason for the ledger)."""
        s = self.settings
        if not isinstance(payload, dict):
            return "the mapped payload is not a JSON object"
        org_unit = self._org_unit(payload)
        if not isinstance(org_unit, str):
            return org_unit[0]
        occurred = _date(_get(payload, s.occurred_at), self.zone)
        event = None
        te = enrollment = None
        if s.tracked_entity is not None:
            rule = s.tracked_entity
            person = _get(payload, rule.id)
            if not isinstance(person, str) or not person:
                return f"no person: the payload field '{rule.id}' (tracked_entity.id) is empty"
            te_uid = uids.tracked_entity_uid(person)
            attributes = [{"attribute": a, "value": _text(_get(payload, f))} for a, f in rule.attributes]
            te = {"trackedEntity": te_uid, "trackedEntityType": rule.type, "orgUnit": org_unit,
                  "attributes": [a for a in attributes if a["value"] is not None]}  # fmt: skip
            enrolled = _date(_get(payload, rule.enrolled_at), self.zone) if rule.enrolled_at else occurred
            enrollment = {"enrollment": uids.enrollment_uid(s.program, person), "trackedEntity": te_uid,
                          "program": s.program, "orgUnit": org_unit, "enrolledAt": enrolled,
                          "occurredAt": enrolled, "status": "ACTIVE"}  # fmt: skip
        if s.program_stage:
            values = [{"dataElement": de, "value": _text(_get(payload, f))} for de, f in s.data_values]
            event = {"event": uids.event_uid(s.program, doc_id), "program": s.program, "programStage": s.program_stage,
                     "orgUnit": org_unit, "occurredAt": occurred, "status": s.status,
                     "dataValues": [v for v in values if v["value"] is not None]}  # fmt: skip
            if s.status == "COMPLETED":
                event["completedAt"] = occurred
            if enrollment is not None:
                event.update(enrollment=enrollment["enrollment"], trackedEntity=te["trackedEntity"])
        return Objects(doc_id, te, enrollment, event)

    def _org_unit(self, payload: dict[str, Any]) -> str | tuple[str]:
        s = self.settings
        if s.org_unit_field:
            unit = _get(payload, s.org_unit_field)
            if isinstance(unit, str) and unit:
                return unit
            return (f"no org unit: the payload field '{s.org_unit_field}' (org_unit.field) is empty",)
        place = _get(payload, s.org_unit_place)
        unit = self.org_units.org_unit_for(place) if self.org_units is not None else None
        if unit is None:
            where = f"place '{place}'" if isinstance(place, str) and place else f"an empty '{s.org_unit_place}'"
            return (f"no DHIS2 org unit for CHT {where} in {self.org_units.file if self.org_units else 'the table'}",)
        return unit

    # -- one request ---------------------------------------------------------------------------------------

    def deletion(self, doc_id: str, destination_id: str | None, key: str, rules: Any) -> Delivery:
        """Delete the report's event (its tracked entity and enrollment stay)."""
        event = destination_id if uids.is_uid(destination_id) else uids.event_uid(self.settings.program, doc_id)
        body = json.dumps({EVENT: [{"event": event}]})
        query = "&".join(f"{k}={v}" for k, v in {**IMPORT_PARAMS, **self.params, "importStrategy": "DELETE"}.items())
        return Delivery(doc_id, body, key, method="POST", path=f"{self.path}?{query}")

    def _request(self, items: list[Delivery], retry: int) -> _Answer | None:
        """One POST of the items' objects, read per object; ``None`` once sending has stopped."""
        if self._refused is not None:
            raise self._refused
        if self._breaker.is_open:
            return None
        deleting = items[0].path is not None  # only a deletion names its own path (with importStrategy=DELETE)
        results: list[Result | None] = [None] * len(items)
        built: list[tuple[int, Objects]] = []
        payload: dict[str, list[dict[str, Any]]] = {TE: [], ENROLLMENT: [], EVENT: []}
        if deleting:
            payload = json.loads(items[0].body or "{}")
            event = payload[EVENT][0]["event"]
            built.append((0, Objects(items[0].doc_id, None, None, {"event": event})))
        for i, item in enumerate(items if not deleting else []):
            objects = self.objects(item.doc_id, _loads(item.body))
            if isinstance(objects, str):
                results[i] = Result(item.doc_id, False, None, error=objects)
                continue
            built.append((i, objects))
        built, done = self._unsent_enrollments_only(built)
        for i, result in done:
            results[i] = result
        for _, objects in built:
            _add(payload, objects)
        if not built:
            return _Answer([r for r in results if r is not None])
        with self._lock:
            self.requests += 1
            if retry:
                self.retries += 1
        url, params = (self._url(items[0].path), None) if deleting else (self.url, self.params)
        sent = [items[i] for i, _ in built]
        try:
            response = answer_or_reason(
                self._session, "POST", url, self.limits, conn_id=self.conn_id, system="DHIS2", params=params,
                whole=(409,), data=json.dumps({k: v for k, v in payload.items() if v}).encode(), timeout=self.timeout,
            )  # fmt: skip
        except AuthError as exc:
            self._refused = exc
            raise
        if isinstance(response, Unanswered):
            failed = _failed(sent, response.status, response.reason, retryable=response.retryable)
            return self._merge(results, built, failed)
        status = response.status_code
        kind = classify(status)
        wait = retry_after(response.headers.get("Retry-After"))
        report = _json(response) if status in (200, 409) else None
        if isinstance(report, dict) and isinstance(report.get("validationReport"), dict):
            return self._merge(results, built, self._read_report(built, report, status, deleting), wait)
        return self._merge(
            results, built, _failed(sent, status, _reason(response), retryable=kind == "retryable"), wait
        )

    def _unsent_enrollments_only(
        self, built: list[tuple[int, Objects]]
    ) -> tuple[list[tuple[int, Objects]], list[tuple[int, Result]]]:
        """The documents' objects without the tracked entities and enrollments the ledger says were
        sent (see the module docstring): their events alone go, naming them. A document that was
        its enrollment only (a program without ``program_stage``) has nothing left to send: done."""
        enrolled = {o.enrollment["enrollment"] for _, o in built if o.enrollment is not None}
        if self._store is None or not enrolled:
            return built, []
        states = self._store.states(enrollments_of(self._pipeline), enrolled)
        sent = {uid for uid, state in states.items() if state.status == DELIVERED}
        left: list[tuple[int, Objects]] = []
        done: list[tuple[int, Result]] = []
        for i, o in built:
            uid = o.enrollment["enrollment"] if o.enrollment is not None else None
            if uid not in sent:
                left.append((i, o))
            elif o.event is None:
                done.append((i, Result(o.doc_id, True, None, destination_id=uid)))
            else:
                left.append((i, replace(o, tracked_entity=None, enrollment=None)))
        return left, done

    def _remember_enrollments(self, built: list[tuple[int, Objects]], errors: dict[str, list[str]]) -> None:
        """Enrollments DHIS2 took with their tracked entity (``atomicMode=OBJECT`` commits them even when
        the event is refused): later reports do not send them again."""
        if self._store is None:
            return
        taken = {
            o.enrollment["enrollment"]: o.tracked_entity["trackedEntity"]
            for _, o in built
            if o.enrollment is not None and o.tracked_entity is not None
            and o.enrollment["enrollment"] not in errors and o.tracked_entity["trackedEntity"] not in errors
        }  # fmt: skip
        outcomes = [Outcome(uid, None, True, destination_id=te) for uid, te in sorted(taken.items())]
        if outcomes:
            self._store.record(enrollments_of(self._pipeline), outcomes)

    def _read_report(self, built: list[tuple[int, Objects]], report: dict, status: int, deleting: bool) -> list[Result]:
        """One result per sent document from the validation report's error reports (by object UID)."""
        errors: dict[str, list[str]] = {}
        for entry in report["validationReport"].get("errorReports") or []:
            if not isinstance(entry, dict):
                continue
            if deleting and entry.get("errorCode") in GONE:
                continue  # already gone: what a delete wants
            code, message = str(entry.get("errorCode", "?")), str(entry.get("message", ""))
            if code in VALUE_CODES:
                message = QUOTED.sub(lambda m: m.group(0) if uids.is_uid(m.group(1)) else "`…`", message)
            text = f"{code} {entry.get('trackerType', '')} {entry.get('uid', '')}: {message}"
            errors.setdefault(str(entry.get("uid")), []).append(text.replace("  ", " "))
        if not deleting:
            self._remember_enrollments(built, errors)
        results = []
        for _, objects in built:
            found = [e for uid in objects.uids for e in errors.get(uid, [])]
            if found:
                error = f"HTTP {status}: DHIS2 refused it: " + "; ".join(found)
                results.append(Result(objects.doc_id, False, status, error=error[: REASON_CHARS * 2]))
            else:
                results.append(Result(objects.doc_id, True, status, destination_id=objects.main_uid))
        return results

    @staticmethod
    def _merge(results: list[Result | None], built: list[tuple[int, Objects]], sent: list[Result],
               wait: float | None = None) -> _Answer:  # fmt: skip
        """The answer for every item: the refused-before-sending ones, and those sent, in order."""
        merged = list(results)
        for (i, _), result in zip(built, sent, strict=True):
            merged[i] = result
        return _Answer([r for r in merged if r is not None], wait)


def _add(payload: dict[str, list[dict[str, Any]]], objects: Objects) -> None:
    """Add a document's objects to the flat payload; a person's tracked entity and enrollment once
    per payload (two reports of one person in one batch: the later one's attributes win, the
    earlier date and the first org unit stay)."""
    for key, obj, uid_key in (
        (TE, objects.tracked_entity, "trackedEntity"),
        (ENROLLMENT, objects.enrollment, "enrollment"),
    ):
        if obj is None:
            continue
        same = next((o for o in payload[key] if o[uid_key] == obj[uid_key]), None)
        if same is None:
            payload[key].append(dict(obj))
        elif key == TE:  # the first report's org unit stays; each attribute as the latest report gives it
            merged = {a["attribute"]: a for a in same["attributes"] + obj["attributes"]}
            same["attributes"] = list(merged.values())
        else:  # the person's earliest report dates the enrollment
            for k in ("enrolledAt", "occurredAt"):
                dates = [d for d in (same.get(k), obj.get(k)) if d]
                same[k] = min(dates) if dates else None
    if objects.event is not None:
        payload[EVENT].append(objects.event)


def _loads(body: str | None) -> Any:
    try:
        return json.loads(body or "null")
    except ValueError:
        return None


def _get(payload: dict[str, Any], path: str | None) -> Any:
    """A dotted field of the mapped payload (``patient.id``), or None."""
    value: Any = payload
    for part in (path or "").split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any) -> str | None:
    """A data value or attribute value as DHIS2 takes it: text; lists joined by spaces (CHT's multi-selects)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _date(value: Any, zone: ZoneInfo) -> str | None:
    """A date-time as DHIS2 reads it: local wall-clock time in ``zone``, without an offset.

    Epoch milliseconds (CHT's ``reported_date``) and ISO text with an offset or ``Z`` are instants,
    converted to ``zone``; a date or a date-time without an offset is already local, sent as given
    (as is text that is no ISO date: DHIS2 names it in its refusal).
    """
    if isinstance(value, bool) or value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        when = datetime.fromtimestamp(value / 1000, tz=UTC)
    else:
        try:
            when = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
        if when.tzinfo is None:
            return str(value)
    return when.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
