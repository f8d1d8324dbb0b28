"""``destination.dhis2:``: which DHIS2 import a pipeline makes, and the keys every kind shares.

``kind: aggregate`` (data value sets computed from CHT reports) and ``kind: tracker`` (events,
tracked entities, enrollments) need different keys; each kind's own keys are checked by
``dhis2_<kind>.py`` beside this module, which returns the frozen settings the destination reads.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

KINDS = ("aggregate", "tracker")
ID_SCHEMES = ("UID", "CODE", "NAME", "ATTRIBUTE")
COMMON_KEYS = {"kind", "id_scheme", "dry_run"}
DEFAULT_PATH = "/api"  # each kind posts to its own endpoint under the instance's /api


def parse(block: dict[str, Any], add: Callable[[str, str], None]) -> Any:
    """The kind's settings; ``common`` (kind, id_scheme, dry_run) is passed to the kind's parser."""
    kind = block.get("kind")
    if kind not in KINDS:
        add("kind", f"required: one of {', '.join(KINDS)} (got {kind!r})")
        return None
    id_scheme = block.get("id_scheme", "UID")
    if id_scheme not in ID_SCHEMES:
        add("id_scheme", f"must be one of {', '.join(ID_SCHEMES)} (got {id_scheme!r})")
    dry_run = block.get("dry_run", False)
    if not isinstance(dry_run, bool):
        add("dry_run", "must be true or false")
    common = {"kind": kind, "id_scheme": id_scheme, "dry_run": dry_run is True}
    own = {key: value for key, value in block.items() if key not in COMMON_KEYS}
    return importlib.import_module(f"{__package__}.dhis2_{kind}").parse(own, add, common)
