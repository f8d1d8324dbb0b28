"""The settings block each destination kind reads from its pipeline file: ``destination.<kind>:``.

A kind whose destination needs keys of its own (a FHIR system URI, DHIS2 data elements, RapidPro
flows) reads them from a block named after it, for example::

    destination:
      type: fhir
      conn_id: hapi
      fhir: {identifier_system: "https://cht.example.org/id", ...}

This package maps each such kind to the light module that checks its block at parse time. The
module is pure Python (no requests, no FHIR models): DAG files parse it. It defines
``parse(block, add) -> settings``, where ``add(key, message)`` reports a problem under a key
relative to the block (``"identifier_system"`` is shown as ``destination.fhir.identifier_system``)
and ``settings`` is a frozen object the destination reads as ``destination.settings``. It may
define ``DEFAULT_PATH`` when a kind's requests go to fixed paths, so a file need not name one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

#: ``destination.type`` -> the module under ``cht_bridge.config.kinds`` that checks its block.
SETTINGS: dict[str, str] = {
    "dhis2": "cht_bridge.config.kinds.dhis2",
    "rapidpro": "cht_bridge.config.kinds.rapidpro",
    "openmrs": "cht_bridge.config.kinds.openmrs",
    "fhir": "cht_bridge.config.kinds.fhir",
}


def settings_module(kind: str) -> ModuleType | None:
    """The checker of ``destination.<kind>:``, or None for a kind without a block of its own."""
    name = SETTINGS.get(kind)
    return importlib.import_module(name) if name else None


def parse_settings(kind: str, block: Any, add: Callable[[str, str], None]) -> Any:
    """The kind's settings from its block (None when the kind has none); problems go to ``add``."""
    module = settings_module(kind)
    if module is None:
        if block is not None:
            add(kind, f"destination type '{kind}' takes no '{kind}:' block")
        return None
    if block is None:
        block = {}
    if not isinstance(block, dict):
        add(kind, "must be a mapping")
        return None
    return module.parse(block, lambda key, message: add(f"{kind}.{key}" if key else kind, message))
