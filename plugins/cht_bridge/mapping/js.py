"""The JavaScript sandbox that runs ``relevant_to`` and ``expr`` snippets.

CHT evaluates them with Node's ``vm`` and only ``doc`` in scope. We embed V8 through mini-racer:
no filesystem, network or ``require``; a time limit on every call; a memory cap. Snippets are
compiled once per pipeline, and a whole batch is evaluated in one call, because crossing from
Python into V8 costs far more than evaluating one snippet.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from cht_bridge.errors import ScriptError

#: V8 heap cap for one sandbox; a runaway snippet fails its batch instead of the worker.
MAX_MEMORY = 512 * 1024 * 1024
#: Budget for one batch call: a floor plus a per-document allowance.
BATCH_FLOOR_S = 1.0
BATCH_PER_DOC_S = 0.005


class ScriptTimeout(Exception):
    """A batch or a single document ran past its time limit."""


class Sandbox:
    """One V8 isolate holding the runtime and any number of compiled pipelines."""

    def __init__(self) -> None:
        from py_mini_racer import MiniRacer  # heavy native import: only when a task runs

        self._ctx = MiniRacer()
        self._ctx.set_hard_memory_limit(MAX_MEMORY)
        self._ctx.eval(resources.files(__package__).joinpath("runtime.js").read_text(encoding="utf-8"))

    def compile(self, name: str, relevant_to: str, mapping: dict[str, Any], source: str) -> int:
        """Compile a pipeline's snippets; return its handle.

        :raises ScriptError: naming the file and each snippet that does not compile.
        """
        answer = json.loads(self._ctx.call("__chtBridge.addPipeline", name, relevant_to, mapping))
        if "problems" in answer:
            lines = "\n  - ".join(answer["problems"])
            raise ScriptError(f"{source}: JavaScript does not compile:\n  - {lines}")
        return answer["id"]

    def run(self, handle: int, docs_json: str, count: int, timeout_s: float | None = None) -> list[dict]:
        """Evaluate a compiled pipeline over a JSON array of ``count`` documents."""
        from py_mini_racer import JSTimeoutException

        budget = timeout_s if timeout_s is not None else BATCH_FLOOR_S + BATCH_PER_DOC_S * count
        try:
            return json.loads(self._ctx.call("__chtBridge.run", handle, docs_json, timeout_sec=budget))
        except JSTimeoutException as exc:
            raise ScriptTimeout(f"JavaScript ran past {budget:.2f} s") from exc

    def close(self) -> None:
        self._ctx.close()
