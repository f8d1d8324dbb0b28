"""Apply a pipeline's ``relevant_to`` and ``mapping`` to hydrated CHT documents.

The semantics are CHT's outbound ones (see ``sandbox/mapping.js``); this module feeds batches to
the sandbox, isolates a document that runs too long, and hashes the payloads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cht_bridge.mapping.hashing import payload_hash
from cht_bridge.sandbox import MapResult, Sandbox, ScriptTimeout


@dataclass(frozen=True)
class Mapped:
    """What one document became.

    ``body`` is the payload as the JSON text CHT would send; ``error`` says why a relevant
    document has no payload (a mapping or ``relevant_to`` failure).
    """

    doc_id: str
    relevant: bool
    body: str | None = None
    payload_hash: str | None = None
    error: str | None = None

    @property
    def payload(self) -> Any:
        return None if self.body is None else json.loads(self.body)


class Mapper:
    """A compiled pipeline: create once per run, then map batch after batch."""

    def __init__(
        self,
        name: str,
        relevant_to: str,
        mapping: dict[str, Any],
        *,
        source: str = "<pipeline>",
        timeout_ms: int = 1000,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_ms / 1000
        self.sandbox = sandbox or Sandbox()
        self._handle = self.sandbox.compile(name, relevant_to, mapping, source)

    @classmethod
    def for_pipeline(cls, pipeline: Any, sandbox: Sandbox | None = None) -> Mapper:
        return cls(
            pipeline.name,
            pipeline.relevant_to,
            pipeline.mapping,
            source=pipeline.source,
            timeout_ms=pipeline.script_timeout_ms,
            sandbox=sandbox,
        )

    def map(self, docs: list[dict]) -> list[Mapped]:
        """Map already-hydrated documents in one sandbox call."""
        if not docs:
            return []
        ids = [doc.get("_id") for doc in docs]

        def evaluate(start: int, end: int, timeout_s: float | None) -> list[MapResult]:
            return self.sandbox.map_docs(self._handle, json.dumps(docs[start:end]), end - start, timeout_s)

        return self._map(ids, evaluate)

    def map_loaded(self, ids: list[str]) -> list[Mapped]:
        """Hydrate and map the batch loaded in the sandbox (``ids`` in its order), in one call."""
        if not ids:
            return []

        def evaluate(start: int, end: int, timeout_s: float | None) -> list[MapResult]:
            return self.sandbox.map_loaded(self._handle, start, end, timeout_s)

        return self._map(ids, evaluate)

    def _map(self, ids: list[str], evaluate: Callable[[int, int, float | None], list[MapResult]]) -> list[Mapped]:
        try:
            raw = evaluate(0, len(ids), None)
        except ScriptTimeout:
            return [self._one(i, doc_id, evaluate) for i, doc_id in enumerate(ids)]
        return [self._result(doc_id, r) for doc_id, r in zip(ids, raw, strict=True)]

    def _one(self, i: int, doc_id: str, evaluate: Callable[[int, int, float | None], list[MapResult]]) -> Mapped:
        """Map one document alone, so a snippet that never ends fails only that document."""
        try:
            return self._result(doc_id, evaluate(i, i + 1, self.timeout_s)[0])
        except ScriptTimeout:
            ms = int(self.timeout_s * 1000)
            return Mapped(doc_id, True, error=f"JavaScript of '{self.name}' ran past {ms} ms on '{doc_id}'")

    @staticmethod
    def _result(doc_id: str, r: MapResult) -> Mapped:
        if r.error is not None:
            return Mapped(doc_id, r.relevant, error=r.error)
        if not r.relevant:
            return Mapped(doc_id, False)
        return Mapped(doc_id, True, body=r.body, payload_hash=payload_hash(r.canonical))

    def close(self) -> None:
        self.sandbox.close()
