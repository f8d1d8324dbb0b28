"""Deterministic resource ids: the same CHT document always names the same FHIR resource.

A retried or re-run delivery then updates the resource it created instead of creating a second
one, on servers without conditional create (OpenMRS FHIR2) as on those with it.
"""

from __future__ import annotations

import uuid

#: Fixed for ever: changing it would give every CHT document a new resource at the destination.
NAMESPACE = uuid.UUID("6f1d3c2e-8a54-5b7e-9c1d-2b3a4c5d6e7f")


def resource_id(resource_type: str, cht_id: str) -> str:
    """The id of the ``resource_type`` made from the CHT document ``cht_id`` (a UUID, as OpenMRS wants)."""
    return str(uuid.uuid5(NAMESPACE, f"{resource_type}/{cht_id}"))


def reference(resource_type: str, cht_id: str) -> str:
    """``"Type/id"`` of the resource made from ``cht_id``."""
    return f"{resource_type}/{resource_id(resource_type, cht_id)}"
