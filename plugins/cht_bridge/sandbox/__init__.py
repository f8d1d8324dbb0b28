"""The JavaScript sandbox: CHT hydration and the ``relevant_to``/``expr`` snippets, in V8.

CHT evaluates outbound snippets with Node's ``vm`` and only ``doc`` in scope. We embed V8 through
mini-racer: no filesystem, network or ``require``; a time limit on every call; a memory cap.
Documents cross from Python as the text the server sent and are parsed, hydrated and mapped in
V8 a whole batch per call, because crossing the boundary costs far more than any one document.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, NamedTuple

from cht_bridge.errors import ScriptError

#: V8 heap cap for one sandbox; a runaway snippet fails its batch instead of the worker.
MAX_MEMORY = 1024 * 1024 * 1024
#: Budget for one batch call: a floor plus a per-document allowance.
BATCH_FLOOR_S = 2.0
BATCH_PER_DOC_S = 0.005
#: Budget for calls that only move data (parse, hydrate), not user code.
DATA_TIMEOUT_S = 120.0
#: V8 collects garbage lazily and would let a long run's heap grow for ever; past this much live
#: heap, a batch ends with a full collection, which keeps the worker's memory flat.
TRIM_HEAP_BYTES = 32 * 1024 * 1024


class ScriptTimeout(Exception):
    """A batch or a single document ran past its time limit."""


class MapResult(NamedTuple):
    """One document's outcome in the sandbox: relevant?, payload text and hash input, or error."""

    relevant: bool
    body: str | None = None
    canonical: str | None = None
    error: str | None = None


def _decode(text: str) -> list[MapResult]:
    """Read ``mapping.js``'s line format (see ``encode`` there)."""
    if not text:
        return []
    out = []
    for line in text.split("\n"):
        kind = line[0]
        if kind == "1":
            _, body, canonical = line.split("\x1f")
            out.append(MapResult(True, body, canonical))
        elif kind == "0":
            out.append(MapResult(False))
        else:
            out.append(MapResult(line[1] == "1", error=json.loads(line[2:])))
    return out


def _text(value: str) -> str:
    """A Python string as a JavaScript string literal (JSON is valid JavaScript)."""
    return json.dumps(value)


class Sandbox:
    """One V8 isolate: the hydration cache of a run and any number of compiled pipelines."""

    def __init__(self, cache_size: int = 50_000) -> None:
        from py_mini_racer import MiniRacer  # heavy native import: only when a task runs

        self._ctx = MiniRacer()
        self._ctx.set_hard_memory_limit(MAX_MEMORY)
        for script in ("hydration.js", "mapping.js"):
            self._ctx.eval(resources.files(__package__).joinpath(script).read_text(encoding="utf-8"))
        self._eval(f"__chtHydration.configure({int(cache_size)})")

    def _eval(self, code: str, timeout_s: float = DATA_TIMEOUT_S) -> Any:
        from py_mini_racer import JSTimeoutException

        try:
            return self._ctx.eval(code, timeout_sec=timeout_s)
        except JSTimeoutException as exc:
            raise ScriptTimeout(f"JavaScript ran past {timeout_s:.2f} s") from exc

    # -- mapping ---------------------------------------------------------------------------

    def compile(self, name: str, relevant_to: str, mapping: dict[str, Any], source: str) -> int:
        """Compile a pipeline's snippets; return its handle.

        :raises ScriptError: naming the file and each snippet that does not compile.
        """
        args = ", ".join(json.dumps(a) for a in (name, relevant_to, mapping))
        answer = json.loads(self._eval(f"__chtMapping.addPipeline({args})"))
        if "problems" in answer:
            lines = "\n  - ".join(answer["problems"])
            raise ScriptError(f"{source}: JavaScript does not compile:\n  - {lines}")
        return answer["id"]

    def map_docs(self, handle: int, docs_json: str, count: int, timeout_s: float | None = None) -> list[MapResult]:
        """Evaluate a compiled pipeline over a JSON array of ``count`` hydrated documents."""
        budget = timeout_s if timeout_s is not None else BATCH_FLOOR_S + BATCH_PER_DOC_S * count
        return _decode(self._eval(f"__chtMapping.run({handle}, {_text(docs_json)})", budget))

    def map_loaded(self, handle: int, start: int, end: int, timeout_s: float | None = None) -> list[MapResult]:
        """Hydrate and evaluate documents ``[start, end)`` of the loaded batch."""
        budget = timeout_s if timeout_s is not None else BATCH_FLOOR_S + BATCH_PER_DOC_S * (end - start)
        return _decode(self._eval(f"__chtMapping.runLoaded({handle}, {start}, {end})", budget))

    # -- hydration -------------------------------------------------------------------------

    def load_page(self, page_text: str, filter_json: str | None = None) -> dict[str, Any]:
        """Parse a ``_changes``, view or ``_all_docs`` page; keep the documents to process, learn its contacts."""
        arg = _text(filter_json) if filter_json else "null"
        return json.loads(self._eval(f"__chtHydration.loadPage({_text(page_text)}, {arg})"))

    def load_docs(self, docs_json: str) -> list[Any]:
        """Load documents to hydrate; return the subject refs that still need resolving."""
        return json.loads(self._eval(f"__chtHydration.loadDocs({_text(docs_json)})"))["refs"]

    def learn(self, docs_json: str) -> None:
        self._eval(f"__chtHydration.learnDocs({_text(docs_json)})")

    def resolve(self, view_response: str, refs: list[Any]) -> None:
        self._eval(f"__chtHydration.resolve({_text(view_response)}, {_text(json.dumps(refs))})")

    def missing(self) -> list[str]:
        return json.loads(self._eval("__chtHydration.missing()"))

    def add_docs(self, all_docs_response: str, ids: list[str]) -> None:
        self._eval(f"__chtHydration.addDocs({_text(all_docs_response)}, {_text(json.dumps(ids))})")

    def hydrated(self) -> list[dict]:
        return json.loads(self._eval("__chtHydration.hydratedJson()"))

    def trim(self) -> None:
        """Collect V8 garbage once the heap has grown past ``TRIM_HEAP_BYTES``."""
        if self._ctx.heap_stats().get("used_heap_size", 0) > TRIM_HEAP_BYTES:
            self._ctx.low_memory_notification()

    def close(self) -> None:
        self._ctx.close()
