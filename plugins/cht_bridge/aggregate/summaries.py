"""DHIS2's answer to ``POST /api/dataValueSets``, read value by value (destinations.md §1.3).

Two shapes: API < 38 answers a bare ``ImportSummary``; 38+ and the unversioned path wrap it in a
``WebMessage`` (``{"httpStatus": ..., "response": {"responseType": "ImportSummary", ...}}``).
A 409 is often a partial success (``status: WARNING``: some values saved, others rejected), so
the answer is read at record level: each conflict is pinned to the values it names, by
``indexes``/``rejectedIndexes`` (2.39+, indexes into the posted ``dataValues``), else by
``objects`` (2.37+, e.g. ``{"orgUnit": "XXXXXXXXXXX"}``), else by the bare ``object`` id older
servers send. A conflict that names no value posted leaves every value of the request unproven.

``ignored`` is not a failure on its own: since 2.41 an unchanged value is counted as ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: The fields of a posted data value a conflict's ``objects`` may name (DHIS2's property names).
VALUE_PROPERTIES = ("dataElement", "orgUnit", "period", "categoryOptionCombo", "attributeOptionCombo")


class UnreadableSummary(ValueError):
    """The answer is not an import summary in either shape."""


@dataclass(frozen=True)
class Conflict:
    """One entry of ``conflicts``: DHIS2's message and what it names."""

    message: str
    object: str | None = None
    objects: dict[str, str] = field(default_factory=dict)
    error_code: str | None = None
    indexes: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        """The message as the ledger keeps it: the error code first, when there is one."""
        return f"{self.error_code}: {self.message}" if self.error_code else self.message


@dataclass(frozen=True)
class ImportSummary:
    """An import summary, whichever shape it came in."""

    status: str
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0
    conflicts: tuple[Conflict, ...] = ()
    rejected_indexes: tuple[int, ...] = ()
    description: str | None = None
    wrapped: bool = False

    @property
    def stored(self) -> int:
        """Values the server saved or deleted (``ignored`` ones are not counted as delivered)."""
        return self.imported + self.updated + self.deleted


def read_summary(body: Any) -> ImportSummary:
    """The import summary in a parsed answer, bare (API < 38) or wrapped (38+).

    :raises UnreadableSummary: when neither shape is there.
    """
    if not isinstance(body, dict):
        raise UnreadableSummary("the answer is not a JSON object")
    inner, wrapped = body, False
    if isinstance(body.get("response"), dict) and _is_summary(body["response"]):
        inner, wrapped = body["response"], True
    elif not _is_summary(body):
        raise UnreadableSummary("the answer holds no import summary (no importCount)")
    counts = inner.get("importCount") if isinstance(inner.get("importCount"), dict) else {}
    conflicts = tuple(_conflict(c) for c in inner.get("conflicts") or () if isinstance(c, dict))
    rejected = tuple(i for i in inner.get("rejectedIndexes") or () if isinstance(i, int) and not isinstance(i, bool))
    description = inner.get("description") or (body.get("message") if wrapped else None)
    return ImportSummary(
        status=str(inner.get("status") or body.get("status") or "ERROR").upper(),
        imported=_count(counts, "imported"),
        updated=_count(counts, "updated"),
        ignored=_count(counts, "ignored"),
        deleted=_count(counts, "deleted"),
        conflicts=conflicts,
        rejected_indexes=rejected,
        description=str(description) if description else None,
        wrapped=wrapped,
    )


def _is_summary(part: dict) -> bool:
    return part.get("responseType") == "ImportSummary" or isinstance(part.get("importCount"), dict)


def _count(counts: dict, key: str) -> int:
    value = counts.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _conflict(entry: dict) -> Conflict:
    objects = entry.get("objects") if isinstance(entry.get("objects"), dict) else {}
    indexes = entry.get("indexes") if isinstance(entry.get("indexes"), list) else []
    return Conflict(
        message=str(entry.get("value") or "conflict without a message"),
        object=str(entry["object"]) if entry.get("object") is not None else None,
        objects={str(k): str(v) for k, v in objects.items() if v is not None},
        error_code=str(entry["errorCode"]) if entry.get("errorCode") else None,
        indexes=tuple(i for i in indexes if isinstance(i, int) and not isinstance(i, bool)),
    )


@dataclass(frozen=True)
class Attribution:
    """Which posted values DHIS2 rejected and why; what no conflict could be pinned to."""

    rejected: dict[int, str]  # index into the posted dataValues -> DHIS2's message
    unpinned: tuple[str, ...]  # messages of conflicts that name no posted value


def attribute(summary: ImportSummary, values: Sequence[dict[str, Any]]) -> Attribution:
    """Pin each conflict to the posted values (``dataValues`` as sent) it is about."""
    rejected: dict[int, str] = {}
    unpinned: list[str] = []
    for conflict in summary.conflicts:
        hits = [i for i in conflict.indexes if 0 <= i < len(values)]
        if not hits and conflict.objects:
            hits = [i for i, v in enumerate(values) if _names(conflict.objects, v)]
        if not hits and conflict.object:
            hits = [i for i, v in enumerate(values) if conflict.object in (v.get(p) for p in VALUE_PROPERTIES)]
        if not hits:
            unpinned.append(conflict.text)
        for i in hits:
            rejected[i] = f"{rejected[i]}; {conflict.text}" if i in rejected else conflict.text
    for i in summary.rejected_indexes:
        if 0 <= i < len(values) and i not in rejected:
            rejected[i] = "rejected by DHIS2 (rejectedIndexes) without a conflict message"
    return Attribution(rejected, tuple(unpinned))


def _names(objects: dict[str, str], value: dict[str, Any]) -> bool:
    """Whether a conflict's ``objects`` names this value (every property it names that a value has)."""
    known = {k: v for k, v in objects.items() if k in VALUE_PROPERTIES}
    return bool(known) and all(value.get(k) == v for k, v in known.items())
