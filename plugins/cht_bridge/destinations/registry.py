"""Which module serves each ``destination.type``: the one place a new destination kind is named.

The modules are imported only when a run opens a destination of their kind, so the pipeline
loader can list the kinds (to refuse a typo with the list of what exists) without importing them.
"""

from __future__ import annotations

import importlib
from typing import Any

#: ``destination.type`` -> the module under ``cht_bridge.destinations`` that serves it. The module
#: exposes ``DESTINATION``: a class with ``configured(session, base_url, destination, delivery)``.
KINDS: dict[str, str] = {
    "rest": "cht_bridge.destinations.rest",
    "rapidpro": "cht_bridge.destinations.rapidpro",
    "openmrs": "cht_bridge.destinations.openmrs",
    "fhir": "cht_bridge.destinations.fhir",
    "dhis2": "cht_bridge.destinations.dhis2",
}

_registered: dict[str, Any] = {}  # kinds added at run time (a test's, a deployment's own)


def register(kind: str, factory: Any) -> None:
    """Serve ``destination.type: <kind>`` with ``factory`` (a class with ``configured``)."""
    _registered[kind] = factory


def unregister(kind: str) -> None:
    _registered.pop(kind, None)


def kinds() -> list[str]:
    """Every ``destination.type`` a pipeline file may name."""
    return sorted({*KINDS, *_registered})


def destination_class(kind: str) -> Any:
    """The class that serves ``kind``; ``KeyError`` names the kinds there are."""
    if kind in _registered:
        return _registered[kind]
    if kind not in KINDS:
        raise KeyError(f"no destination kind '{kind}' (available: {', '.join(kinds())})")
    return importlib.import_module(KINDS[kind]).DESTINATION


def open_destination(session: Any, base_url: str, destination: Any, delivery: Any = None) -> Any:
    """The destination a pipeline's ``destination`` block describes, on a session with its auth."""
    return destination_class(destination.type).configured(session, base_url, destination, delivery)
