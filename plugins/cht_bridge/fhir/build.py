"""FHIR R4 resources from a document's evaluated template fields.

The mapping engine evaluates every field's source (``FhirTemplates.mapping``) in the sandbox; what
comes back is ``{"resources": [{field: value}, ...]}``, one object per template entry. ``build``
turns that into the payload: a list of resources with deterministic ids (``ids.resource_id``),
referring to each other as ``"Type/id"``, ordered so that a resource comes after those it refers
to (Organization, Patient, Practitioner, then the rest), which is the order OpenMRS needs them in.

A value that cannot be used (a date that is not one, a priority FHIR does not know) fails the
document with ``TemplateError``; the message names the pipeline, the field and the document, and
quotes a value only when it is a code from a short list, never a name, a date or a phone.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from cht_bridge.fhir.ids import reference, resource_id
from cht_bridge.fhir.templates import HOME_HEALTH, PRIORITY, FhirTemplates, ResourceTemplate
from cht_bridge.flags import PARTIAL_DATE, flag

#: A resource comes after the ones it may refer to.
ORDER = {"Organization": 0, "Patient": 1, "Practitioner": 1, "PractitionerRole": 2, "Encounter": 3}
MAX_LINEAGE = 20  # places above a person, at most (CHT hierarchies have a handful)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


class TemplateError(ValueError):
    """A document's values cannot make the template's resource; the document fails, the run goes on."""


class _Fail(Exception):
    """Raised inside a builder: ``field`` and ``problem`` are put into a ``TemplateError`` by ``build``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(problem)


def build(templates: FhirTemplates, values: Any, *, pipeline: str, doc_id: str) -> list[dict[str, Any]]:
    """The resources ``values`` (the engine's payload for one document) make.

    :raises TemplateError: naming the pipeline, ``resources.<i>.<field>`` and the document.
    """
    rows = values.get("resources") if isinstance(values, dict) else None
    rows = rows if isinstance(rows, list) else []
    made: list[tuple[ResourceTemplate, dict[str, Any]]] = []
    for r in templates.resources:
        row = rows[r.index] if r.index < len(rows) and isinstance(rows[r.index], dict) else {}
        if r.optional and _absent(row.get("cht_id")):
            continue
        if r.template == "observation" and _absent(row.get("value")) and _optional_source(r.sources["value"]):
            continue  # a question the form left unanswered: no Observation
        made.append((r, row))
    present = {
        reference(r.resource_type, _id_of(r, row)) for r, row in made if isinstance(row.get("cht_id"), (str, int))
    }
    out = []
    for r, row in made:
        try:
            out.append(_Builder(templates, r, row, present).resource())
        except _Fail as exc:
            raise TemplateError(
                f"FHIR template error for '{pipeline}/{r.where}.{exc.field}' on source document "
                f"'{_one_line(doc_id)}': {exc.problem}"
            ) from None
    return sorted(out, key=lambda resource: ORDER.get(resource["resourceType"], 9))


def _id_of(r: ResourceTemplate, row: dict[str, Any]) -> str:
    cht_id = str(row.get("cht_id"))
    return f"{cht_id}/{r.key}" if r.key else cht_id


class _Builder:
    """One resource from one template entry's values."""

    def __init__(self, templates: FhirTemplates, r: ResourceTemplate, row: dict[str, Any], present: set[str]) -> None:
        self.t, self.r, self.row, self.present = templates, r, row, present

    # -- values ----------------------------------------------------------------------------

    def has(self, name: str) -> bool:
        return not _absent(self.row.get(name))

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.row.get(name)
        if _absent(value):
            if required:
                raise _Fail(name, "has no value")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Fail(name, f"must be text, not {_kind(value)}")
        text = str(value).strip()
        if not text and required:
            raise _Fail(name, "has no value (only spaces)")
        return text or None

    def cht_id(self, name: str = "cht_id") -> str:
        value = self.row.get(name)
        if isinstance(value, dict):  # a whole CHT document where its id was meant
            value = value.get("_id")
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise _Fail(name, "has no CHT id" if _absent(value) else f"must be a CHT id, not {_kind(value)}")
        return str(value)

    def instant(self, name: str, *, required: bool = False) -> str | None:
        """A CHT time (ms since 1970, or an ISO date/time) as a FHIR dateTime."""
        value = self.row.get(name)
        if _absent(value):
            if required:
                raise _Fail(name, "has no value")
            return None
        return _datetime(value, name)

    # -- the resource ----------------------------------------------------------------------

    def resource(self) -> dict[str, Any]:
        r = self.r
        self.id_value = _id_of(r, {"cht_id": self.cht_id()})
        resource: dict[str, Any] = {"resourceType": r.resource_type, "id": resource_id(r.resource_type, self.id_value)}
        resource.update(getattr(self, f"_{r.template}")())
        return {k: v for k, v in resource.items() if v not in (None, [], {})}

    def identifiers(self) -> list[dict[str, Any]]:
        cht: dict[str, Any] = {"system": self.t.identifier_system, "value": self.id_value}
        if self.t.identifier_type:
            cht["type"] = {"text": self.t.identifier_type}
        out = [cht]
        for j, extra in enumerate(self.r.identifiers):
            value = self.text(f"identifier_{j}")
            if value is None:
                continue
            identifier: dict[str, Any] = {"value": value}
            if extra.use:
                identifier["use"] = extra.use
            if extra.type_text:
                identifier["type"] = {"text": extra.type_text}
            if extra.system:
                identifier["system"] = extra.system
            out.append(identifier)
        return out

    def ref(self, resource_type: str, name: str, *, required: bool = False) -> dict[str, str] | None:
        """A literal reference to the resource made from the CHT id in field ``name``."""
        if not self.has(name):
            if required:
                raise _Fail(name, "has no CHT id")
            return None
        return {"reference": reference(resource_type, self.cht_id(name))}

    def place_ref(self, name: str) -> dict[str, Any] | None:
        """A reference to the Organization of a CHT place: literal when the payload holds it,
        else by identifier (a logical reference resolves at the server, or is kept as is)."""
        place = self.row.get(name)
        if _absent(place):
            return None
        place_id = self.cht_id(name)
        display = place.get("name") if isinstance(place, dict) and isinstance(place.get("name"), str) else None
        literal = reference("Organization", place_id)
        if literal in self.present:
            out: dict[str, Any] = {"reference": literal}
        else:
            out = {"type": "Organization", "identifier": {"system": self.t.identifier_system, "value": place_id}}
        if display:
            out["display"] = display
        return out

    def concept(self, slot: str) -> dict[str, Any] | None:
        return self.r.codes.get(slot)

    def reason(self) -> list[dict[str, Any]]:
        """Reasons: the coded one from ``codes.reason`` and the mapped text of field ``reason``."""
        out = [self.concept("reason")] if self.concept("reason") else []
        text = self.text("reason")
        if text:
            out.append({"text": text})
        return out

    def priority(self) -> str | None:
        value = self.text("priority")
        if value is not None and value not in PRIORITY:
            raise _Fail("priority", f"'{_code(value)}' is not a FHIR priority ({', '.join(PRIORITY)})")
        return value

    def requester(self) -> dict[str, str] | None:
        return self.ref(self.r.options["requester_type"], "requester")

    # -- the templates ---------------------------------------------------------------------

    def _patient(self) -> dict[str, Any]:
        out = self._person()
        out["managingOrganization"] = self.place_ref("organization")
        return out

    def _practitioner(self) -> dict[str, Any]:
        return self._person()

    def _person(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identifier": self.identifiers(), "name": [self.human_name()]}
        out["gender"] = gender(self.row.get("sex"))
        birth_date, estimated = self.birth_date()
        out["birthDate"] = birth_date
        if estimated and self.t.birth_date_extension:
            out["_birthDate"] = {"extension": [{"url": self.t.birth_date_extension, "valueBoolean": True}]}
        out["telecom"] = self.telecom()
        address = self.address()
        out["address"] = [address] if address else None
        return out

    def _practitioner_role(self) -> dict[str, Any]:
        role = self.concept("role")
        return {
            "identifier": self.identifiers(),
            "active": True,
            "practitioner": {"reference": reference("Practitioner", self.cht_id())},
            "organization": self.place_ref("organization"),
            "code": [role] if role else None,
        }

    def _organization(self) -> dict[str, Any]:
        return {
            "identifier": self.identifiers(),
            "active": True,
            "name": self.text("name", required=True),
            "partOf": self.place_ref("parent"),
        }

    def _service_request(self) -> dict[str, Any]:
        authored = self.instant("reported_date", required=True)
        category = self.concept("category")
        note = self.text("note")
        return {
            "identifier": self.identifiers(),
            "status": self.r.options["status"],
            "intent": self.r.options["intent"],
            "category": [category] if category else None,
            "priority": self.priority(),
            "code": self.concept("code"),
            "subject": self.ref("Patient", "subject", required=True),
            "occurrenceDateTime": self.instant("occurrence") or authored,
            "authoredOn": authored,
            "requester": self.requester(),
            "reasonCode": self.reason(),
            "note": [{"text": note}] if note else None,
        }

    def _task(self) -> dict[str, Any]:
        authored = self.instant("reported_date", required=True)
        reasons = self.reason()
        note = self.text("note")
        focus = None
        if self.r.options.get("focus") == "service_request":
            focus = {"reference": reference("ServiceRequest", self.cht_id())}
        return {
            "identifier": self.identifiers(),
            "status": self.r.options["status"],
            "intent": self.r.options["intent"],
            "priority": self.priority(),
            "code": self.concept("code"),
            "description": self.text("description"),
            "focus": focus,
            "for": self.ref("Patient", "subject", required=True),
            "executionPeriod": {"start": self.instant("occurrence") or authored},
            "authoredOn": authored,
            "requester": self.requester(),
            "reasonCode": reasons[0] if len(reasons) == 1 else _merge(reasons),
            "note": [{"text": note}] if note else None,
        }

    def _encounter(self) -> dict[str, Any]:
        kind = self.concept("type")
        participant = self.ref("Practitioner", "participant")
        return {
            "identifier": self.identifiers(),
            "status": self.r.options["status"],
            "class": (self.concept("class") or {"coding": [HOME_HEALTH]})["coding"][0],
            "type": [kind] if kind else None,
            "subject": self.ref("Patient", "subject", required=True),
            "participant": [{"individual": participant}] if participant else None,
            "period": {"start": self.instant("reported_date", required=True)},
            "reasonCode": self.reason(),
        }

    def _observation(self) -> dict[str, Any]:
        category = self.concept("category")
        out = {
            "identifier": self.identifiers(),
            "status": self.r.options["status"],
            "category": [category] if category else None,
            "code": self.concept("code"),
            "subject": self.ref("Patient", "subject", required=True),
            "encounter": self.ref("Encounter", "encounter"),
            "effectiveDateTime": self.instant("reported_date", required=True),
        }
        out.update(self.observation_value())
        return out

    # -- parts -----------------------------------------------------------------------------

    def human_name(self) -> dict[str, Any]:
        full = " ".join((self.text("name", required=True) or "").split())
        given, family = self.text("given_name"), self.text("family_name")
        parts = full.split(" ")
        name: dict[str, Any] = {"use": "official", "text": full}
        if given is not None or family is not None:
            name["given"] = given.split() if given else None
            name["family"] = family
        elif len(parts) > 1:
            name["given"], name["family"] = parts[:-1], parts[-1]
        else:
            name["given"] = parts
        return {k: v for k, v in name.items() if v}

    def birth_date(self) -> tuple[str | None, bool]:
        """``birthDate``, and whether it is estimated: then written to the month, which OpenMRS
        FHIR2 reads as ``birthdateEstimated`` (its BirthDateTranslator: month or year precision)."""
        value = self.row.get("date_of_birth")
        if _absent(value):
            return None, False
        if not isinstance(value, str):
            raise _Fail("date_of_birth", f"must be a date (YYYY-MM-DD), not {_kind(value)}")
        text = value.strip()[:10] if _DATETIME.match(value.strip()) else value.strip()
        if PARTIAL_DATE.fullmatch(text):
            return text, True  # already a year or a month: estimated by nature
        try:
            day = date.fromisoformat(text) if _DATE.match(text) else None
        except ValueError:
            day = None
        if day is None:
            raise _Fail("date_of_birth", "is not a date (YYYY-MM-DD)")
        estimated = flag(self.row.get("birth_date_estimated"))
        return (text[:7] if estimated else text), estimated

    def telecom(self) -> list[dict[str, Any]]:
        from cht_bridge.matching.phones import normalise_phone  # phonenumbers: only when a document is built

        out, seen = [], set()
        for name in ("phone", "phone_alternate"):
            value = self.row.get(name)
            if _absent(value) or isinstance(value, (bool, dict, list)):
                continue
            number = normalise_phone(value, self.t.phone_region)
            if number and number not in seen:  # a number that is no phone number is left out, not sent
                seen.add(number)
                out.append({"system": "phone", "value": number, "use": "mobile", "rank": len(out) + 1})
        return out

    def address(self) -> dict[str, Any] | None:
        """The CHT place and its parents (hydrated lineage), nearest first, as the address text."""
        place = self.row.get("place")
        names = []
        while isinstance(place, dict) and len(names) < MAX_LINEAGE:
            if isinstance(place.get("name"), str) and place["name"].strip():
                names.append(" ".join(place["name"].split()))
            place = place.get("parent")
        return {"use": "home", "text": ", ".join(names)} if names else None

    def observation_value(self) -> dict[str, Any]:
        value = self.row.get("value")
        if _absent(value):
            raise _Fail("value", "has no value")
        options = self.r.options
        kind = options.get("value_type") or (
            "codeable" if options.get("value_codes") else "quantity" if options.get("unit") else _value_kind(value)
        )
        if kind == "codeable":
            codes = options.get("value_codes") or {}
            key = str(value).lower() if isinstance(value, bool) else str(value)
            if key not in codes:
                raise _Fail("value", f"'{_code(key)}' is not one of the value_codes ({', '.join(codes)})")
            return {"valueCodeableConcept": codes[key]}
        if kind == "boolean":
            answer = flag(value, strict=True)
            if answer is None:
                raise _Fail("value", "is not yes/no or true/false")
            return {"valueBoolean": answer}
        if kind in ("quantity", "integer"):
            number = _number(value)
            if number is None or (kind == "integer" and number != int(number)):
                raise _Fail("value", f"is not {'a whole number' if kind == 'integer' else 'a number'}")
            if kind == "integer":
                return {"valueInteger": int(number)}
            return {"valueQuantity": {"value": number, **(options.get("unit") or {})}}
        if kind == "datetime":
            return {"valueDateTime": _datetime(value, "value")}
        if isinstance(value, (dict, list)):
            raise _Fail("value", f"must be text, not {_kind(value)}")
        return {"valueString": str(value)}


def gender(sex: Any) -> str | None:
    """FHIR ``gender`` from CHT ``sex``: male/female kept, anything else ``unknown``, nothing left out."""
    if _absent(sex) or (isinstance(sex, str) and not sex.strip()):
        return None
    text = sex.strip().lower() if isinstance(sex, str) else ""
    return text if text in ("male", "female") else "unknown"


def _datetime(value: Any, name: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            moment = datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Fail(name, "is not a time (milliseconds since 1970)") from None
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _datetime(int(text), name)
        if _DATE.match(text) or _DATETIME.match(text):
            try:
                (date.fromisoformat(text) if _DATE.match(text) else datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError:
                pass
            else:
                return text
    raise _Fail(name, "is not a time (milliseconds since 1970, or an ISO date or date-time with its offset)")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    return None


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "quantity"
    return "string"


def _merge(concepts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Task has one reasonCode: the coded reason with the mapped text as its text."""
    if not concepts:
        return None
    coded = dict(concepts[0])
    coded["text"] = concepts[-1].get("text") or coded.get("text")
    return {k: v for k, v in coded.items() if v}


def _optional_source(source: Any) -> bool:
    return isinstance(source, dict) and source.get("optional") is True


def _absent(value: Any) -> bool:
    return value is None or value == ""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "true/false"}.get(type(value), type(value).__name__)


def _code(value: str) -> str:
    """A code for a message: short, one line (a code, not patient data)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", value)[:40]


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(text))
