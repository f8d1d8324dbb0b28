"""Apply a pipeline's ``relevant_to`` and ``mapping`` to hydrated CHT documents.

The semantics are CHT's outbound ones (see ``runtime.js``); this module feeds batches to the
sandbox, isolates a document that runs too long, and hashes the payloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cht_bridge.mapping.hashing import payload_hash
from cht_bridge.mapping.js import Sandbox, ScriptTimeout


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
    """A compiled pipeline: create once per run, then ``map`` batch after batch."""

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
        self._sandbox = sandbox or Sandbox()
        self._handle = self._sandbox.compile(name, relevant_to, mapping, source)

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
        """Map a batch in one sandbox call; on a timeout, find the slow documents one by one."""
        if not docs:
            return []
        try:
            raw = self._sandbox.run(self._handle, json.dumps(docs, separators=(",", ":")), len(docs))
        except ScriptTimeout:
            return [self._map_one(doc) for doc in docs]
        return [self._result(doc, r) for doc, r in zip(docs, raw, strict=True)]

    def _map_one(self, doc: dict) -> Mapped:
        try:
            raw = self._sandbox.run(self._handle, json.dumps([doc]), 1, timeout_s=self.timeout_s)
        except ScriptTimeout:
            return Mapped(
                doc_id=doc.get("_id"),
                relevant=True,
                error=f"JavaScript of '{self.name}' ran past {int(self.timeout_s * 1000)} ms on '{doc.get('_id')}'",
            )
        return self._result(doc, raw[0])

    @staticmethod
    def _result(doc: dict, r: dict) -> Mapped:
        doc_id = doc.get("_id")
        if "e" in r:
            return Mapped(doc_id=doc_id, relevant=bool(r["r"]), error=r["e"])
        if not r["r"]:
            return Mapped(doc_id=doc_id, relevant=False)
        return Mapped(doc_id=doc_id, relevant=True, body=r["b"], payload_hash=payload_hash(r["h"]))

    def close(self) -> None:
        self._sandbox.close()
