"""``destination.fhir:``: how a pipeline writes to a FHIR R4 server (HAPI, a shared health record).

``identifier_system`` is the URI under which each resource carries the CHT id it was made from
(``Patient.identifier = {system, value: <CHT _id>}``); the ``conditional`` strategy finds an
earlier copy by it (``ifNoneExist``), so it is required. ``strategy``:

* ``conditional`` (default): ``POST Type`` with ``ifNoneExist: identifier=<system>|<CHT id>``;
  the server picks the ids; an edit is then written over the match with ``PUT Type/<its id>``;
* ``put``: ``PUT Type/<deterministic id>``, for servers that allow update-as-create
  (``CapabilityStatement...updateCreate``); the ids are the bridge's own.

``validate`` (default true) checks every payload with the R4 models and the bridge's own rules
before anything is sent (``cht_bridge.fhir.validate``). Pure Python: DAG files parse it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEYS = ("identifier_system", "strategy", "validate")
STRATEGIES = ("conditional", "put")
#: The transaction goes to the FHIR base itself: the Connection's host is that base.
DEFAULT_PATH = "/"
# An absolute URI without spaces or '|', which would break the ``system|value`` search token.
_SYSTEM = re.compile(r"^(https?://[^\s|/]+[^\s|]*|urn:(uuid|oid):[^\s|]+)$")


@dataclass(frozen=True)
class FhirSettings:
    """What ``destinations/fhir.py`` reads as ``destination.settings``."""

    identifier_system: str
    strategy: str = "conditional"
    validate: bool = True


def parse(block: dict[str, Any], add: Callable[[str, str], None]) -> FhirSettings:
    """The settings of ``destination.fhir``; every problem goes to ``add`` under its key."""
    for key in sorted(set(block) - set(KEYS)):
        add(key, f"unknown key (allowed: {', '.join(KEYS)})")
    system = block.get("identifier_system")
    if not isinstance(system, str) or not _SYSTEM.match(system):
        add("identifier_system", "required: an absolute URI (https://…, urn:uuid:… or urn:oid:…) without '|' or spaces")
        system = ""
    strategy = block.get("strategy", "conditional")
    if strategy not in STRATEGIES:
        add("strategy", f"must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    validate = block.get("validate", True)
    if not isinstance(validate, bool):
        add("validate", "must be true or false")
    return FhirSettings(identifier_system=system, strategy=str(strategy), validate=validate is not False)
