"""The contract every reverse-pipeline source keeps: pages of raw records, each with a checkpoint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SourceRecord:
    """One item of the list as the source sent it.

    ``data`` is the raw record (a FHIR resource, a REST item, a CSV row as ``{column: value|None}``);
    ``id`` and ``version`` key the caller's ledger, so a record read twice is processed once and a
    changed record (new version) is processed again. ``error`` is set when the record was read but
    is unusable (a FHIR resource that fails validation): the caller records it as failed with that
    reason, like an unmappable document, instead of the whole run stopping on one bad record. It
    names fields, never values.
    """

    id: str
    version: str
    data: dict[str, Any] = field(repr=False)  # patient data: kept out of reprs, and so out of logs
    error: str | None = None


@dataclass(frozen=True)
class SourcePage:
    """A batch of records and the checkpoint to store once all of them are processed.

    The checkpoint is JSON-able; handing it back to ``pages()`` resumes after this page.
    """

    records: list[SourceRecord]
    checkpoint: Any


class Source(Protocol):
    """Anything that can list records page by page from a checkpoint (``None``: from the start).

    Optional attributes the receive step reads: ``once_per_id`` (True when a record is final
    once read, so a new version of it is not a new row, e.g. a completed RapidPro run) and
    ``counts`` (a dict of what the read did beyond its pages, added to the step's counts).
    """

    def pages(self, checkpoint: Any | None) -> Iterator[SourcePage]: ...


def content_hash(value: Any) -> str:
    """A stable sha256 of a JSON-able value (key order does not matter), used as a version."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dotted(value: Any, path: str) -> Any:
    """``value["a"]["b"]`` for ``"a.b"``; ``value`` itself for ``""``; ``None`` when a key is missing."""
    for key in path.split(".") if path else []:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value
