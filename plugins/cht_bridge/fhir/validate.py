"""Is a FHIR payload fit to send? The R4 models' checks plus the ones they do not make.

``fhir.resources`` (R4B models, structurally R4 for the resources we write) checks types, required
elements and unknown keys, but not value-set codes, references or identifiers
(``destinations.md`` §6.2). A payload that fails here is refused with the reason before anything
is sent, so the EMR never sees a half-valid patient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from cht_bridge.errors import one_line
from cht_bridge.fhir.templates import (
    ENCOUNTER_STATUS,
    OBSERVATION_STATUS,
    PRIORITY,
    SERVICE_REQUEST_INTENT,
    SERVICE_REQUEST_STATUS,
    TASK_INTENT,
    TASK_STATUS,
)

GENDERS = ("male", "female", "other", "unknown")
#: An identifier's system names a namespace: an absolute URI (``https://…``, ``urn:oid:…``).
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
#: What a code looks like (FHIR ``code``s, status words): quoted in a reason; anything else is not.
_CODE_LIKE = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
#: Required-binding codes the models take as any string: (resource type, element) -> the R4 value set.
CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("ServiceRequest", "status"): SERVICE_REQUEST_STATUS,
    ("ServiceRequest", "intent"): SERVICE_REQUEST_INTENT,
    ("ServiceRequest", "priority"): PRIORITY,
    ("Task", "status"): TASK_STATUS,
    ("Task", "intent"): TASK_INTENT,
    ("Task", "priority"): PRIORITY,
    ("Encounter", "status"): ENCOUNTER_STATUS,
    ("Observation", "status"): OBSERVATION_STATUS,
    **{(kind, "gender"): GENDERS for kind in ("Patient", "Practitioner", "RelatedPerson", "Person")},
}
_WHO = ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device")
#: What a reference the templates write may point at (R4 target profiles); the models do not check it.
TARGETS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("Patient", "managingOrganization"): ("Organization",),
    ("PractitionerRole", "practitioner"): ("Practitioner",),
    ("PractitionerRole", "organization"): ("Organization",),
    ("Organization", "partOf"): ("Organization",),
    ("ServiceRequest", "subject"): ("Patient", "Group", "Location", "Device"),
    ("ServiceRequest", "requester"): _WHO,
    ("Task", "for"): None,  # any resource
    ("Task", "requester"): _WHO,
    ("Encounter", "subject"): ("Patient", "Group"),
    ("Encounter", "participant.individual"): ("Practitioner", "PractitionerRole", "RelatedPerson"),
    ("Observation", "subject"): ("Patient", "Group", "Device", "Location"),
    ("Observation", "encounter"): ("Encounter",),
}


def problems(
    resources: list[Any],
    *,
    known: Callable[[str], bool] = lambda reference: False,
    identifier_system: str | None = None,
) -> list[str]:
    """Every reason ``resources`` may not be sent, each one line naming the resource and the element.

    A reference must name a resource of the same payload (or, inside a Bundle, an entry's
    ``fullUrl``), or one ``known`` says exists at the destination (the ledger holds its id). With
    ``identifier_system``, a Patient must carry an identifier in that system (the CHT id the
    destination finds it again by). A code is quoted only when it looks like one (``_code``); no
    other value of the payload is.

    Total over any JSON: every element is type-checked before it is used, so an odd shape (an
    ``identifier`` that is a number, an entry that is a string) is a reason, never an exception.
    """
    found: list[str] = []
    present = _present(resources)
    seen: set[str] = set()
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            found.append(f"resource {index}: not a FHIR resource (no resourceType)")
            continue
        label = f"{resource['resourceType']}/{_id(resource) or index}"
        if _id(resource) and label in seen:
            found.append(f"{label}: appears twice in the payload")
        seen.add(label)
        found.extend(f"{label}: {reason}" for reason in _model_problems(resource))
        if resource["resourceType"] == "Bundle":
            found.extend(f"{label}: {reason}" for reason in _bundle_problems(resource))
        for inner_label, inner in _contained(resource, label):
            found.extend(_rule_problems(inner_label, inner, present, known, identifier_system))
    return found


def as_resources(payload: Any) -> list[Any]:
    """A FHIR pipeline's payload as the list of resources it is.

    A template's list as it is; a resource built by ``expr`` mappings (``resourceType: {expr:
    "'Patient'"}``, ...) or a ``Bundle`` as a list of one; a mapping of one key whose ``expr``
    returns a list of resources (``resources: {expr: "[...]"}``, since a CHT mapping always makes
    an object) as that list.
    """
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and "resourceType" not in payload and len(payload) == 1:
        (inner,) = payload.values()
        if isinstance(inner, list) and all(isinstance(r, dict) and "resourceType" in r for r in inner):
            return inner
    return [payload]


def _present(resources: list[Any]) -> set[str]:
    """What a reference may name inside the payload: each resource's ``Type/id`` and each bundle entry's ``fullUrl``."""
    out: set[str] = set()
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        if _id(resource) and isinstance(resource.get("resourceType"), str):
            out.add(f"{resource['resourceType']}/{_id(resource)}")
        if resource.get("resourceType") == "Bundle":
            for entry in _list(resource.get("entry")):
                if isinstance(entry, dict):
                    if isinstance(entry.get("fullUrl"), str):
                        out.add(entry["fullUrl"])
                    out |= _present([entry.get("resource")])
    return out


def _contained(resource: dict[str, Any], label: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """The resource itself, or for a Bundle each entry's resource (labelled with its entry)."""
    if resource.get("resourceType") != "Bundle":
        yield label, resource
        return
    for i, entry in enumerate(_list(resource.get("entry"))):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str):
            yield f"{label} entry.{i} {inner['resourceType']}/{_id(inner) or i}", inner


def _rule_problems(
    label: str,
    resource: dict[str, Any],
    present: set[str],
    known: Callable[[str], bool],
    identifier_system: str | None,
) -> list[str]:
    """The checks the R4 models do not make (``destinations.md`` §6.2)."""
    found = []
    kind = resource["resourceType"]
    for (of, element), allowed in CODES.items():
        value = resource.get(element)
        if of == kind and value is not None and value not in allowed:
            found.append(f"{label}: {element} {_code(value)} is not one of {', '.join(allowed)}")
    for path, target in _references(resource):
        if target.startswith("#"):
            continue
        if target not in present and not known(target):
            found.append(f"{label}: {path} refers to {target}, which is neither in this payload nor delivered")
        allowed = TARGETS.get((kind, _element(path)))
        target_type = target.split("/", 1)[0] if "/" in target and not target.startswith("urn:") else None
        if allowed and target_type and target_type not in allowed:
            found.append(f"{label}: {path} must refer to {' or '.join(allowed)}, not {target_type}")
    identifiers = resource.get("identifier")
    for i, identifier in enumerate(identifiers if isinstance(identifiers, list) else [identifiers]):
        system = identifier.get("system") if isinstance(identifier, dict) else None
        if isinstance(system, str) and not _ABSOLUTE.match(system):
            found.append(f"{label}: identifier.{i}.system {_code(system)} is not an absolute URI")
    carried = (
        isinstance(i, dict) and i.get("system") == identifier_system and i.get("value")
        for i in _list(resource.get("identifier"))
    )
    if identifier_system is not None and kind == "Patient" and not any(carried):
        found.append(f"{label}: identifier: none in the system {identifier_system} (the CHT id)")
    return found


def _bundle_problems(bundle: dict[str, Any]) -> list[str]:
    """A transaction or batch Bundle's rules (R4 bundle.html): a request per entry, each ``fullUrl``
    once, and in a batch no entry referring to another (they are processed independently)."""
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        return []
    found = []
    entries = [e for e in _list(bundle.get("entry")) if isinstance(e, dict)]
    names: dict[str, int] = {}
    for i, entry in enumerate(entries):
        request = entry.get("request")
        if not isinstance(request, dict) or not request.get("method") or not request.get("url"):
            found.append(f"entry.{i}: a {kind} entry needs request.method and request.url")
        url = entry.get("fullUrl")
        if isinstance(url, str):
            if url in names:
                found.append(f"entry.{i}: fullUrl {url} is also entry.{names[url]}'s")
            names.setdefault(url, i)
    if kind == "batch":
        inside = set(names) | _present([e.get("resource") for e in entries])
        for i, entry in enumerate(entries):
            resource = entry.get("resource")
            for path, target in _references(resource if isinstance(resource, dict) else {}):
                if target in inside:
                    found.append(f"entry.{i}: {path} refers to another entry of the batch ({target})")
    return found


def _element(path: str) -> str:
    """``participant.0.individual`` -> ``participant.individual``: the element, without list positions."""
    return ".".join(part for part in path.split(".") if not part.isdigit())


def _code(value: Any) -> str:
    """A value where a code belongs, quoted only when it looks like a code (a short token).

    Anything else may be what a respondent typed (a phone mapped into ``gender``): reasons are
    stored and logged, so it is described, never echoed.
    """
    if isinstance(value, str) and _CODE_LIKE.match(value):
        return f"'{value}'"
    return "(a value that is not a code)"


def _id(resource: dict[str, Any]) -> str | None:
    """The resource's ``id`` when it is a string (a label never shows another value)."""
    rid = resource.get("id")
    return rid if isinstance(rid, str) and rid else None


def _list(value: Any) -> list[Any]:
    """``value`` when it is a list, else none (the R4 models report the wrong type)."""
    return value if isinstance(value, list) else []


def _model_problems(resource: dict[str, Any]) -> list[str]:
    from fhir.resources.R4B import get_fhir_model_class  # heavy: only when a payload is checked
    from pydantic import ValidationError

    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return [f"{_code(resource['resourceType'])} is not a FHIR R4 resource type"]
    try:
        model.model_validate(resource)
    except (TypeError, AttributeError, KeyError) as exc:  # a shape a model's own validator did not expect
        return [f"(resource): not a valid {resource['resourceType']} ({type(exc).__name__})"]
    except ValidationError as exc:
        return [
            one_line(f"{'.'.join(str(p) for p in error['loc']) or '(resource)'}: {error['msg']}") or ""
            for error in exc.errors()
        ]
    return []


def _references(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """``(element path, "Type/id")`` of every literal reference inside ``value``."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str):
            yield path or "reference", reference
        for key, item in value.items():
            if key != "reference":
                yield from _references(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, f"{path}.{index}")
