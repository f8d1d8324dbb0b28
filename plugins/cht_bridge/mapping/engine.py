"""Apply a pipeline's ``relevant_to`` and ``mapping`` to hydrated CHT documents.

The semantics are CHT's outbound ones (see ``sandbox/mapping.js``); this module feeds batches to
the sandbox, isolates a document that runs too long or out of memory, and hashes the payloads.

A batch call that is stopped (time or memory) is followed by a new isolate and each document of
the batch alone, with ``timeout_ms``: the one at fault fails, named with its pipeline, id and the
key that was running, and the batch goes on. That failure is ``retryable``: a worker starved of
CPU stops valid documents too, so they are retried by the next runs and become dead letters only
after ``dead_after`` of them, like a busy destination's. When most documents stop, the snippet or
the worker is at fault, not the documents: ``ScriptStalled`` ends the run (see ``STALL_AFTER``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cht_bridge.errors import ChtBridgeError, ScriptError
from cht_bridge.mapping.hashing import payload_hash
from cht_bridge.v8 import MapResult, Sandbox, ScriptMemoryError, ScriptTampered, ScriptTimeout

if TYPE_CHECKING:
    from cht_bridge.fhir.templates import FhirTemplates
    from cht_bridge.source.hydration import LoadedBatch  # a handle only: mapping never reads CHT

#: A run stops once this many documents were stopped (time or memory) when evaluated alone, and
#: they are more than half of the documents evaluated alone: a thousand-document batch that all
#: loops then costs about ``STALL_AFTER`` × ``timeout_ms``, not a thousand of them.
STALL_AFTER = 10


class ScriptStalled(ChtBridgeError):
    """Most documents evaluated alone ran past their time or out of memory: the run stops.

    Either the worker is starved of CPU or a snippet loops on most documents; either way going on
    would take hours and fail valid documents. Nothing of the batch is recorded, so the checkpoint
    stays and the next run (or Airflow's retry) starts from it.
    """


@dataclass(slots=True)
class Mapped:
    """What one document became.

    ``body`` is the payload as the JSON text CHT would send; ``error`` says why a relevant
    document has no payload (a mapping or ``relevant_to`` failure). A value, like ``Outcome``, and
    not declared frozen for the same reason: one is made per document read.
    """

    doc_id: str
    relevant: bool
    body: str | None = None
    payload_hash: str | None = None
    error: str | None = None
    retryable: bool = False  # stopped (time, memory), not refused: the same revision may pass next time

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
        stall_after: int = STALL_AFTER,
        templates: FhirTemplates | None = None,
    ) -> None:
        self.name = name
        #: A FHIR pipeline's templates: the sandbox evaluates their fields (``mapping`` is
        #: ``templates.mapping()``), and each document's payload is the list of resources they make.
        self.templates = templates
        self.timeout_s = timeout_ms / 1000
        self.sandbox = sandbox or Sandbox()
        try:
            self._handle = self.sandbox.compile(name, relevant_to, mapping, source)
        except ScriptError as exc:
            if templates is None:
                raise
            from cht_bridge.fhir.templates import file_keys

            raise ScriptError(file_keys(str(exc))) from None
        self.stall_after = stall_after
        self.alone = 0  # documents evaluated alone after a stopped batch call, in this run
        self.stopped = 0  # of those, stopped again

    @property
    def shaped(self) -> bool:
        """Whether the hash input is written from the mapping's keys sorted once (``Sandbox.shaped``)."""
        return self.sandbox.shaped(self._handle)

    @property
    def shares(self) -> bool:
        """Whether a batch's documents share their hydrated lineages (``Sandbox.shares``)."""
        return self.sandbox.shares(self._handle)

    @classmethod
    def for_pipeline(cls, pipeline: Any, sandbox: Sandbox | None = None) -> Mapper:
        return cls(
            pipeline.name,
            pipeline.relevant_to,
            pipeline.mapping,
            source=pipeline.file,
            timeout_ms=pipeline.script_timeout_ms,
            sandbox=sandbox,
            templates=getattr(pipeline, "fhir", None),
        )

    def map(self, docs: list[dict]) -> list[Mapped]:
        """Map already-hydrated documents in one sandbox call."""
        if not docs:
            return []
        ids = [doc.get("_id") for doc in docs]

        def evaluate(start: int, end: int, timeout_s: float | None) -> list[MapResult]:
            return self.sandbox.map_docs(self._handle, json.dumps(docs[start:end]), end - start, timeout_s)

        return self._map(ids, evaluate)

    def map_batch(self, batch: LoadedBatch) -> list[Mapped]:
        """Map a batch the Hydrator left hydrated in this mapper's sandbox, in one call."""
        if batch.sandbox is not self.sandbox or not batch.current:
            raise ValueError("the batch is not the one loaded in this mapper's sandbox (another page replaced it)")
        return self.map_loaded(batch.ids)

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
        """Map one document alone, so a snippet that never ends, or fills the heap, fails only that document."""
        self.alone += 1
        try:
            return self._result(doc_id, evaluate(i, i + 1, self.timeout_s)[0])
        except ScriptTampered:
            # The document's own snippet did it (it would again): refused, like a mapping error.
            error = f"JavaScript of '{self.name}' changed the sandbox in a way that cannot be undone on '{_one_line(doc_id)}'"
            return Mapped(doc_id, True, error=error)
        except ScriptTimeout as exc:
            self.stopped += 1
            if self.stopped >= self.stall_after and 2 * self.stopped > self.alone:
                raise ScriptStalled(
                    f"pipeline '{self.name}': {self.stopped} of {self.alone} documents evaluated alone ran past "
                    f"{int(self.timeout_s * 1000)} ms or out of memory; the run stopped. The worker may be starved "
                    "of CPU, or a snippet loops or allocates without end; the checkpoint stays where it was."
                ) from None
            doc = _one_line(doc_id)
            if isinstance(exc, ScriptMemoryError):
                mb = self.sandbox.max_memory // (1024 * 1024)
                where = f"'{exc.key}'" if exc.key else "an unknown key"
                error = f"JavaScript of '{self.name}' ran out of memory (cap {mb} MB) on '{doc}' at {where}"
            else:
                error = f"JavaScript of '{self.name}' ran past {int(self.timeout_s * 1000)} ms on '{doc}'"
            return Mapped(doc_id, True, error=error, retryable=True)

    def _result(self, doc_id: str, r: MapResult) -> Mapped:
        if r.error is not None:
            return Mapped(doc_id, r.relevant, error=r.error)
        if not r.relevant:
            return Mapped(doc_id, False)
        if self.templates is not None:
            return self._resources(doc_id, r.body)
        return Mapped(doc_id, True, r.body, payload_hash(r.canonical))  # by position: a third cheaper, per document

    def _resources(self, doc_id: str, body: str) -> Mapped:
        """A templated document: its evaluated fields become the list of FHIR resources it is sent as.

        A value no resource can be made from fails the document alone, like a mapping error (a
        dead letter with the reason); the hash is over the resources, as CHT's is over a payload.
        """
        from cht_bridge.fhir.build import TemplateError, build

        try:
            resources = build(self.templates, json.loads(body), pipeline=self.name, doc_id=doc_id)
        except TemplateError as exc:
            return Mapped(doc_id, True, error=str(exc))
        text = json.dumps(resources, ensure_ascii=False, separators=(",", ":"))
        canonical = json.dumps(resources, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return Mapped(doc_id, True, body=text, payload_hash=payload_hash(canonical))

    def close(self) -> None:
        self.sandbox.close()


def _one_line(text: str) -> str:
    """An id for a message: control characters (a newline would forge a log line) as spaces."""
    return "".join(" " if ord(c) < 32 or c == "\x7f" else c for c in str(text))
