"""FHIR templates as a pipeline file writes them: the ``fhir:`` block, checked at parse time.

A template names a resource the bridge knows how to build from CHT documents (a Patient from a
CHT person, a ServiceRequest from a referral report...) and where its values come from. Each
value is a *field* whose source is a CHT mapping source (``doc.`` path, ``{path, optional}`` or
``{expr}``), evaluated by the same engine as a ``mapping:`` block; every field has a default
source relative to the template's ``from`` (a Patient's ``name`` is ``<from>.name``), so a
template is often two lines. ``build.py`` turns the evaluated fields into R4 resources.

This module is pure Python with no FHIR models: the DAG file parses it. ``parse`` reports
problems through ``add(key, message)`` with keys relative to the ``fhir:`` block.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A mapping source as the mapping engine reads it (a ``doc.`` path or ``{path, expr, optional}``).
Source = str | dict[str, Any]

BLOCK_KEYS = {"identifier_system", "identifier_type", "birth_date_extension", "phone_region", "resources"}
ENTRY_KEYS = {"template", "from", "key", "optional", "fields", "codes", "identifiers", "options"}
IDENTIFIER_KEYS = {"system", "type", "use", "value"}
IDENTIFIER_USES = ("usual", "official", "temp", "secondary", "old")
CODING_KEYS = {"system", "code", "display"}
URI_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
REGION_RE = re.compile(r"^[A-Z]{2}$")

#: R4 value sets the templates write (and ``validate.py`` checks, since the models do not).
SERVICE_REQUEST_STATUS = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
SERVICE_REQUEST_INTENT = (
    "proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order", "instance-order",
    "option",
)  # fmt: skip
TASK_STATUS = (
    "draft", "requested", "received", "accepted", "rejected", "ready", "cancelled", "in-progress", "on-hold",
    "failed", "completed", "entered-in-error",
)  # fmt: skip
TASK_INTENT = (
    "unknown", "proposal", "plan", "order", "original-order", "reflex-order", "filler-order", "instance-order",
    "option",
)  # fmt: skip
PRIORITY = ("routine", "urgent", "asap", "stat")
ENCOUNTER_STATUS = (
    "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown",
)  # fmt: skip
OBSERVATION_STATUS = (
    "registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown",
)  # fmt: skip
VALUE_TYPES = ("quantity", "integer", "string", "boolean", "codeable", "datetime")
#: Home health (HL7 v3 ActCode): a CHW's visit, the default Encounter.class.
HOME_HEALTH = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH", "display": "home health"}


@dataclass(frozen=True)
class Field:
    """A template's field: its default source (a path under ``from``, None: no default) and whether it must have a value."""

    default: str | None
    required: bool = False


_PERSON = {
    "cht_id": Field("_id", True),
    "name": Field("name", True),
    "given_name": Field(None),
    "family_name": Field(None),
    "sex": Field("sex"),
    "date_of_birth": Field("date_of_birth"),
    # cht-core's default person form writes 'approx' here when the age was given instead of the date
    "birth_date_estimated": Field("date_of_birth_method"),
    "phone": Field("phone"),
    "phone_alternate": Field("phone_alternate"),
    "place": Field("parent"),
}
_REPORT = {
    "cht_id": Field("_id", True),
    "subject": Field("patient._id", True),
    "reported_date": Field("reported_date", True),
}
_ORDER = {
    **_REPORT,
    "requester": Field("contact._id"),
    "occurrence": Field(None),
    "reason": Field(None),
    "priority": Field(None),
    "note": Field(None),
}


@dataclass(frozen=True)
class Template:
    """What one template builds: its resource type, fields, code slots and static options with defaults."""

    resource_type: str
    fields: dict[str, Field]
    codes: tuple[str, ...] = ()
    required_codes: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # option -> default
    keyed: bool = False  # may (observation: must) carry a ``key`` that tells its id apart


TEMPLATES: dict[str, Template] = {
    "patient": Template("Patient", {**_PERSON, "organization": Field(None)}),
    "practitioner": Template("Practitioner", dict(_PERSON)),
    "practitioner_role": Template(
        "PractitionerRole", {"cht_id": Field("_id", True), "organization": Field("parent")}, codes=("role",)
    ),
    "organization": Template(
        "Organization", {"cht_id": Field("_id", True), "name": Field("name", True), "parent": Field("parent")}
    ),
    "service_request": Template(
        "ServiceRequest",
        dict(_ORDER),
        codes=("code", "category", "reason"),
        options={"status": "active", "intent": "order", "requester_type": "Practitioner"},
        keyed=True,
    ),
    "task": Template(
        "Task",
        {**_ORDER, "description": Field(None)},
        codes=("code", "reason"),
        options={"status": "requested", "intent": "order", "requester_type": "Practitioner", "focus": None},
        keyed=True,
    ),
    "encounter": Template(
        "Encounter",
        {**_REPORT, "participant": Field("contact._id"), "reason": Field(None)},
        codes=("class", "type", "reason"),
        options={"status": "finished"},
    ),
    "observation": Template(
        "Observation",
        {**_REPORT, "value": Field(None, True), "encounter": Field(None)},
        codes=("code", "category"),
        required_codes=("code",),
        options={"status": "final", "unit": None, "value_codes": None, "value_type": None},
        keyed=True,
    ),
}
STATUSES = {
    "service_request": SERVICE_REQUEST_STATUS,
    "task": TASK_STATUS,
    "encounter": ENCOUNTER_STATUS,
    "observation": OBSERVATION_STATUS,
}
INTENTS = {"service_request": SERVICE_REQUEST_INTENT, "task": TASK_INTENT}
REQUESTER_TYPES = ("Practitioner", "PractitionerRole")


@dataclass(frozen=True)
class Identifier:
    """An extra identifier of a Patient or Practitioner: its value comes from ``source``."""

    source: Source
    system: str | None = None
    type_text: str | None = None  # OpenMRS: the identifier type's name or uuid (destinations.md §2.3)
    use: str | None = None


@dataclass(frozen=True)
class ResourceTemplate:
    """One entry of ``fhir.resources``: a template, the source of each of its fields, its codes and options."""

    index: int
    template: str
    origin: str  # the ``from`` path
    sources: dict[str, Source]  # field -> source, defaults applied; fields with no source are absent
    codes: dict[str, Any]  # code slot -> a list of codings (``text`` kept when given)
    options: dict[str, Any]
    identifiers: tuple[Identifier, ...] = ()
    key: str | None = None
    optional: bool = False  # the resource is left out when its ``cht_id`` has no value

    @property
    def resource_type(self) -> str:
        return TEMPLATES[self.template].resource_type

    @property
    def where(self) -> str:
        return f"resources.{self.index}"


@dataclass(frozen=True)
class FhirTemplates:
    """A pipeline's ``fhir:`` block: the resources each document becomes."""

    identifier_system: str
    resources: tuple[ResourceTemplate, ...]
    identifier_type: str | None = None  # type.text of the CHT identifier (OpenMRS identifier type)
    birth_date_extension: str | None = None  # URL of a boolean extension on an estimated birthDate
    phone_region: str = "KE"  # region of phone numbers written without a country code

    def mapping(self) -> dict[str, Source]:
        """Every field's source under the key ``resources.<i>.<field>``, as one CHT mapping.

        The engine evaluates it like any ``mapping:``; a required source it cannot find fails the
        document with CHT's own message naming that key. A resource marked ``optional`` has every
        source optional: ``build`` decides once it knows whether the resource is there.
        """
        out: dict[str, Source] = {}
        for r in self.resources:
            for name, source in r.sources.items():
                out[f"{r.where}.{name}"] = _optional(source) if r.optional else source
            for j, identifier in enumerate(r.identifiers):
                out[f"{r.where}.identifier_{j}"] = _optional(identifier.source) if r.optional else identifier.source
        return out


_ENGINE_KEY = re.compile(r"\bmapping\.resources\.(\d+)\.(?:identifier_(\d+)|(\w+))\b")


def file_keys(message: str) -> str:
    """``message`` with the engine's keys (``mapping.resources.0.name``) as the file writes them
    (``fhir.resources.0.fields.name``, ``fhir.resources.0.identifiers.1.value``)."""

    def key(match: re.Match[str]) -> str:
        index, identifier, name = match.groups()
        where = f"identifiers.{identifier}.value" if identifier is not None else f"fields.{name}"
        return f"fhir.resources.{index}.{where}"

    return _ENGINE_KEY.sub(key, message)


def _optional(source: Source) -> Source:
    return {"path": source, "optional": True} if isinstance(source, str) else {**source, "optional": True}


def parse(
    block: Any,
    add: Callable[[str, str], None],
    check_source: Callable[[str, Any], None],
    *,
    default_system: str | None = None,
) -> FhirTemplates | None:
    """The ``fhir:`` block checked; problems go to ``add`` (keys relative to the block).

    ``check_source(key, source)`` is the loader's check of one mapping source (it reports through
    the same ``add``, with the full key). ``default_system`` is the destination's own identifier
    system, when its block names one: then ``identifier_system`` may be left out.
    """
    if not isinstance(block, dict):
        add("", "must be a mapping with identifier_system and resources")
        return None
    for key in block:
        if key not in BLOCK_KEYS:
            add(str(key), f"unknown key (allowed: {', '.join(sorted(BLOCK_KEYS))})")
    system = block.get("identifier_system", default_system)
    if not isinstance(system, str) or not URI_RE.match(system):
        add("identifier_system", "required: the URI of the system of the CHT ids (e.g. https://cht.example.org/id)")
    elif default_system is not None and system != default_system:
        add("identifier_system", "differs from the destination's identifier_system; name one URI for both")
    type_text = _text(block.get("identifier_type"), "identifier_type", add)
    extension = block.get("birth_date_extension")
    if extension is not None and (not isinstance(extension, str) or not URI_RE.match(extension)):
        add("birth_date_extension", "must be the URL of the extension")
    region = block.get("phone_region", "KE")
    if not isinstance(region, str) or not REGION_RE.match(region):
        add("phone_region", "must be a two-letter ISO country code such as KE")
    entries = block.get("resources")
    if not isinstance(entries, list) or not entries:
        add("resources", "required: a list of {template, from, fields, codes}")
        return None
    parsed = [_entry(i, raw, add, check_source, entries) for i, raw in enumerate(entries)]
    resources = tuple(r for r in parsed if r is not None)
    _check_distinct(resources, add)
    if len(resources) != len(entries) or not isinstance(system, str):
        return None
    return FhirTemplates(
        identifier_system=system,
        resources=resources,
        identifier_type=type_text,
        birth_date_extension=extension,
        phone_region=region if isinstance(region, str) else "KE",
    )


def _entry(
    index: int, raw: Any, add: Callable[[str, str], None], check_source: Callable[[str, Any], None], entries: list
) -> ResourceTemplate | None:
    where = f"resources.{index}"
    if not isinstance(raw, dict):
        add(where, "must be a mapping with template, from, fields")
        return None
    for key in raw:
        if key not in ENTRY_KEYS:
            add(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(ENTRY_KEYS))})")
    name = raw.get("template")
    if name not in TEMPLATES:
        add(f"{where}.template", f"must be one of {', '.join(TEMPLATES)} (got '{name}')")
        return None
    template = TEMPLATES[name]
    origin = raw.get("from", "doc")
    if not isinstance(origin, str) or not (origin == "doc" or origin.startswith("doc.")):
        add(f"{where}.from", "must be a 'doc.' path to the CHT document the resource is made from")
        return None
    optional = raw.get("optional", False)
    if not isinstance(optional, bool):
        add(f"{where}.optional", "must be true or false")
    key = raw.get("key")
    if key is not None and (
        not template.keyed or not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", key)
    ):
        add(f"{where}.key", "only service_request, task and observation take a key: letters, digits, '_' or '-'")
    if name == "observation" and key is None:
        add(f"{where}.key", "required: a name that tells this observation apart from the report's others")
    sources = _sources(where, template, origin, raw.get("fields", {}), add, check_source)
    if (
        name == "observation"
        and "encounter" not in sources
        and any(
            isinstance(e, dict) and e.get("template") == "encounter" and e.get("from", "doc") == origin for e in entries
        )
    ):
        sources["encounter"] = {"path": f"{origin}._id", "optional": True}
    codes = _codes(where, template, raw.get("codes", {}), add)
    options = _options(where, name, template, raw.get("options", {}), add)
    identifiers = _identifiers(where, name, raw.get("identifiers", []), add, check_source)
    return ResourceTemplate(index, name, origin, sources, codes, options, identifiers, key, optional is True)


def _sources(
    where: str,
    template: Template,
    origin: str,
    given: Any,
    add: Callable[[str, str], None],
    check_source: Callable[[str, Any], None],
) -> dict[str, Source]:
    if not isinstance(given, dict):
        add(f"{where}.fields", "must be a mapping of field -> source")
        given = {}
    out: dict[str, Source] = {}
    for name, spec in template.fields.items():
        if spec.default is not None:
            path = f"{origin}.{spec.default}"
            out[name] = path if spec.required else {"path": path, "optional": True}
    for name, source in given.items():
        if name not in template.fields:
            add(f"{where}.fields.{name}", f"unknown field (allowed: {', '.join(template.fields)})")
            continue
        check_source(f"fhir.{where}.fields.{name}", source)
        out[name] = source
    for name, spec in template.fields.items():
        if spec.required and name not in out:
            add(f"{where}.fields.{name}", "required: the source of this field")
    return out


def _codes(where: str, template: Template, given: Any, add: Callable[[str, str], None]) -> dict[str, Any]:
    if not isinstance(given, dict):
        add(f"{where}.codes", "must be a mapping of code slot -> {system, code, display}")
        given = {}
    out: dict[str, Any] = {}
    for slot, value in given.items():
        if slot not in template.codes:
            allowed = ", ".join(template.codes) or "none"
            add(f"{where}.codes.{slot}", f"unknown code slot (allowed: {allowed})")
            continue
        concept = concept_of(value)
        if concept is None:
            add(f"{where}.codes.{slot}", "must be {system, code, display}, a list of them, or {text, coding: [...]}")
        else:
            out[slot] = concept
    for slot in template.required_codes:
        if slot not in out and slot not in given:
            add(f"{where}.codes.{slot}", "required: {system, code, display}")
    return out


def concept_of(value: Any) -> dict[str, Any] | None:
    """A CodeableConcept from a coding, a list of codings or ``{text, coding}``; None if it is none of those."""
    text = None
    if isinstance(value, dict) and "coding" in value:
        if set(value) - {"coding", "text"} or ("text" in value and not isinstance(value["text"], str)):
            return None
        text, value = value.get("text"), value["coding"]
    codings = value if isinstance(value, list) else [value]
    if not codings or not all(_is_coding(c) for c in codings):
        return None
    concept: dict[str, Any] = {"coding": [dict(c) for c in codings]}
    if text:
        concept["text"] = text
    return concept


def _is_coding(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= CODING_KEYS
        and isinstance(value.get("code"), str)
        and bool(value["code"])
        and all(isinstance(value[k], str) for k in value)
        and ("system" not in value or bool(URI_RE.match(value["system"])))
    )


def _options(where: str, name: str, template: Template, given: Any, add: Callable[[str, str], None]) -> dict[str, Any]:
    if not isinstance(given, dict):
        add(f"{where}.options", "must be a mapping")
        given = {}
    options = dict(template.options)
    for option, value in given.items():
        if option not in template.options:
            allowed = ", ".join(template.options) or "none"
            add(f"{where}.options.{option}", f"unknown option (allowed: {allowed})")
        else:
            options[option] = value
    key = f"{where}.options"
    allowed: dict[str, tuple] = {
        "status": STATUSES.get(name, ()),
        "intent": INTENTS.get(name, ()),
        "requester_type": REQUESTER_TYPES,
        "value_type": VALUE_TYPES,
    }
    for option, values in allowed.items():
        if option in given and given[option] not in values:
            add(f"{key}.{option}", f"must be one of {', '.join(values)} (got '{given[option]}')")
    if "focus" in given and given["focus"] not in (None, "service_request"):
        add(f"{key}.focus", "may only be service_request (the ServiceRequest made from the same report)")
    unit = options.get("unit")
    if unit is not None and not _is_unit(unit):
        add(
            f"{key}.unit",
            "must be {unit, system, code}, e.g. {unit: Cel, system: http://unitsofmeasure.org, code: Cel}",
        )
    value_codes = options.get("value_codes")
    if value_codes is not None:
        if not isinstance(value_codes, dict) or not value_codes:
            add(f"{key}.value_codes", "must map each CHT value to {system, code, display}")
        else:
            concepts = {str(value): concept_of(coding) for value, coding in value_codes.items()}
            for value, concept in concepts.items():
                if concept is None:
                    add(f"{key}.value_codes.{value}", "must be {system, code, display}")
            options["value_codes"] = concepts
    return options


def _is_unit(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= {"unit", "system", "code"}
        and bool(value)
        and all(isinstance(v, str) and v for v in value.values())
        and ("system" not in value or bool(URI_RE.match(value["system"])))
    )


def _identifiers(
    where: str, name: str, given: Any, add: Callable[[str, str], None], check_source: Callable[[str, Any], None]
) -> tuple[Identifier, ...]:
    if given in (None, []):
        return ()
    if name not in ("patient", "practitioner"):
        add(f"{where}.identifiers", "only patient and practitioner take extra identifiers")
        return ()
    if not isinstance(given, list):
        add(f"{where}.identifiers", "must be a list of {system or type, value, use}")
        return ()
    out = []
    for j, raw in enumerate(given):
        key = f"{where}.identifiers.{j}"
        if not isinstance(raw, dict):
            add(key, "must be a mapping with value and system or type")
            continue
        for k in raw:
            if k not in IDENTIFIER_KEYS:
                add(f"{key}.{k}", f"unknown key (allowed: {', '.join(sorted(IDENTIFIER_KEYS))})")
        system, type_text, use = raw.get("system"), _text(raw.get("type"), f"{key}.type", add), raw.get("use")
        if system is not None and (not isinstance(system, str) or not URI_RE.match(system)):
            add(f"{key}.system", "must be a URI")
        if system is None and type_text is None:
            add(key, "needs a system (a URI) or a type (OpenMRS: the identifier type's name or uuid)")
        if use is not None and use not in IDENTIFIER_USES:
            add(f"{key}.use", f"must be one of {', '.join(IDENTIFIER_USES)}")
        if "value" not in raw:
            add(f"{key}.value", "required: the source of the identifier's value")
            continue
        check_source(f"fhir.{key}.value", raw["value"])
        out.append(Identifier(raw["value"], system, type_text, use))
    return tuple(out)


def _text(value: Any, key: str, add: Callable[[str, str], None]) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        add(key, "must be a non-empty string")
        return None
    return value


def _check_distinct(resources: tuple[ResourceTemplate, ...], add: Callable[[str, str], None]) -> None:
    """Two entries that would give the same document the same resource id are refused."""
    seen: dict[tuple[str, str, str | None], int] = {}
    for r in resources:
        identity = (r.resource_type, str(r.sources.get("cht_id")), r.key)
        if identity in seen:
            add(
                f"{r.where}", f"names the same resource as resources.{seen[identity]} (give one of them a distinct key)"
            )
        seen.setdefault(identity, r.index)
