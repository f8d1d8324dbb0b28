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
    if id_scheme == "ATTRIBUTE":
        # §1.3/§1.4 want ``attribute:<attrUid>`` (the attribute whose values identify the metadata);
        # no key names that UID, and a bare ATTRIBUTE would be sent as an invalid idScheme.
        add("id_scheme", "ATTRIBUTE needs the attribute's UID, which this block cannot name: use UID, CODE or NAME")
    elif id_scheme not in ID_SCHEMES:
        add("id_scheme", f"must be one of {', '.join(ID_SCHEMES)} (got {id_scheme!r})")
    dry_run = block.get("dry_run", False)
    if not isinstance(dry_run, bool):
        add("dry_run", "must be true or false")
    common = {"kind": kind, "id_scheme": id_scheme, "dry_run": dry_run is True}
    own = {key: value for key, value in block.items() if key not in COMMON_KEYS}
    return importlib.import_module(f"{__package__}.dhis2_{kind}").parse(own, add, common)


def parse_time_zone(block: dict[str, Any], add: Callable[[str, str], None]) -> str:
    """``time_zone``, the DHIS2 instance's (an IANA name; default UTC), as every kind reads it: the
    aggregate kind cuts periods at its midnight, the tracker kind sends its local date-times."""
    time_zone = block.get("time_zone", "UTC")
    if not isinstance(time_zone, str) or not _known_zone(time_zone):
        add("time_zone", f"must be an IANA time zone such as Africa/Nairobi (got {time_zone!r})")
        return "UTC"
    return time_zone


def _known_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
