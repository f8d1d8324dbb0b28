"""Is a FHIR payload fit to send? The R4 models' checks plus the ones they do not make.

``fhir.resources`` (R4B models, structurally R4 for the resources we write) checks types, required
elements and unknown keys, but not value-set codes, references or identifiers
(``destinations.md`` §6.2). A payload that fails here is refused with the reason before anything
is sent, so the EMR never sees a half-valid patient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cht_bridge.errors import one_line

GENDERS = ("male", "female", "other", "unknown")


def problems(resources: list[Any], *, known: Callable[[str], bool] = lambda reference: False) -> list[str]:
    """Every reason ``resources`` may not be sent, each one line naming the resource and the element.

    A reference must name a resource of the same payload, or one ``known`` says exists at the
    destination (the ledger holds its id).
    """
    found: list[str] = []
    present = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources if isinstance(r, dict) and r.get("id")}
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            found.append(f"resource {index}: not a FHIR resource (no resourceType)")
            continue
        label = f"{resource['resourceType']}/{resource.get('id') or index}"
        found.extend(f"{label}: {reason}" for reason in _model_problems(resource))
        gender = resource.get("gender")
        if resource["resourceType"] in ("Patient", "Practitioner", "RelatedPerson") and gender not in (None, *GENDERS):
            found.append(f"{label}: gender '{gender}' is not one of {', '.join(GENDERS)}")
        for path, target in _references(resource):
            if target not in present and not target.startswith("#") and not known(target):
                found.append(f"{label}: {path} refers to {target}, which is neither in this payload nor delivered")
    return found


def _model_problems(resource: dict[str, Any]) -> list[str]:
    from fhir.resources.R4B import get_fhir_model_class  # heavy: only when a payload is checked
    from pydantic import ValidationError

    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return [f"'{resource['resourceType']}' is not a FHIR R4 resource type"]
    try:
        model.model_validate(resource)
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
