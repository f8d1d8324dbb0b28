"""The JavaScript sandbox: CHT hydration and the ``relevant_to``/``expr`` snippets, in V8.

CHT evaluates outbound snippets with Node's ``vm`` and only ``doc`` in scope. We embed V8 through
mini-racer: no filesystem, network or ``require``; a time limit on every call; a memory cap.
Documents cross from Python as the text the server sent and are parsed, hydrated and mapped in
V8 a whole batch per call, because crossing the boundary costs far more than any one document.

One snippet must not harm the others. ``lockdown.js`` removes timers and freezes the built-ins
before the bridge loads; the bridge keeps no global name (Python holds its functions as handles);
and a call that runs past its time or out of memory is followed by a new isolate, rebuilt with the
compiled pipelines and the loaded batch (``on_reload`` lets the hydrator fetch what the new
isolate's cache lacks), so no job left behind by that call can run, or fail, in the next one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, NamedTuple, NoReturn

from cht_bridge.errors import ScriptError

#: V8 heap cap for one sandbox; a runaway snippet fails its document instead of the worker.
MAX_MEMORY = 1024 * 1024 * 1024
#: Budget for one batch call: a floor plus a per-document allowance.
BATCH_FLOOR_S = 2.0
BATCH_PER_DOC_S = 0.005
#: Budget for calls that only move data (parse, hydrate), not user code.
DATA_TIMEOUT_S = 120.0
#: Time for an empty evaluation on an idle isolate (it takes well under a millisecond).
PROBE_S = 0.25
#: V8 collects garbage lazily and would let a long run's heap grow for ever; past this much live
#: heap, a batch ends with a full collection, which keeps the worker's memory flat.
TRIM_HEAP_BYTES = 32 * 1024 * 1024
#: Asking V8 for its heap size costs about 0.6 ms of CPU (a task on the isolate's thread), a third of
#: a microsecond per document if asked after every page. The heap grows with what the calls are
#: given (pages, answers, documents: their text, and what is built from it), so ``trim`` asks again
#: only once this much text has gone in since it last asked: every few pages of a run.
TRIM_CHECK_BYTES = 8 * 1024 * 1024
#: V8's young generation (each of its two semi-spaces, MB). A batch allocates a copy of every
#: hydrated document and payload, nearly all dead when the call ends; with room for a whole batch
#: they die young instead of being promoted and collected again, which cut the sandbox's CPU per
#: document by about a tenth in ``bench/``, for a worker's peak memory no higher. V8 takes flags
#: once per process: the first sandbox sets them (if anything started V8 before, its flags stay).
SEMI_SPACE_MB = 16
#: The bridge, loaded as one function of lockdown.js's ``restore``: hydration.js, purity.js and
#: mapping.js are its body, so their names stay local to it.
_BRIDGE = "(function (restore) {{\n'use strict';\n{hydration}\n{purity}\n{mapping}\nreturn __chtBridge(restore);\n}})"
_API = (
    "configure", "loadPage", "loadDocs", "learnDocs", "resolve", "missing", "addDocs", "hydratedJson",
    "addPipeline", "run", "runLoaded", "current",
)  # fmt: skip


class ScriptTimeout(Exception):
    """A batch or a single document ran past its time limit; the isolate was rebuilt.

    ``key`` is what was running when the time ran out: ``relevant_to`` or a mapping key.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key or None
        super().__init__(message)


class ScriptMemoryError(ScriptTimeout):
    """A batch or a single document ran out of V8 memory; the isolate was rebuilt.

    A kind of ``ScriptTimeout`` for callers: both mean "this call was stopped, try the documents
    alone", and neither says anything about the document itself.
    """


class ScriptTampered(ScriptTimeout):
    """A snippet changed the isolate in a way ``restore`` cannot undo (a global or a built-in's
    property made non-configurable); the isolate was rebuilt.

    Unlike a timeout it is the document's own doing, so the document alone run again fails again.
    """


#: What the bridge's ``undo`` throws when ``restore`` fails (mapping.js ``TAMPERED``).
TAMPERED = "cht-bridge: the sandbox was changed in a way that cannot be undone"


class MapResult(NamedTuple):
    """One document's outcome in the sandbox: relevant?, payload text and hash input, or error."""

    relevant: bool
    body: str | None = None
    canonical: str | None = None
    error: str | None = None


_NOT_RELEVANT = MapResult(False)


def _decode(text: str) -> list[MapResult]:
    """Read ``mapping.js``'s format (see ``encode`` there): three fields per document."""
    if not text:
        return []
    fields = text.split("\x1f")
    out = []
    for k in range(0, len(fields), 3):
        kind = fields[k]
        if kind == "1":
            out.append(MapResult(True, fields[k + 1], fields[k + 2]))
        elif kind == "0":
            out.append(_NOT_RELEVANT)
        elif kind == "2":
            out.append(MapResult(True, fields[k + 1], json.loads(fields[k + 2])))
        else:
            out.append(MapResult(kind[1] == "1", error=json.loads(fields[k + 1])))
    return out


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


class Sandbox:
    """One V8 isolate: the hydration cache of a run and any number of compiled pipelines.

    ``max_memory`` caps the isolate's heap (tests use a few MB). ``rebuilds`` counts the isolates
    replaced after a timeout or an out-of-memory, for logs and tests.
    """

    def __init__(self, cache_size: int = 50_000, max_memory: int = MAX_MEMORY) -> None:
        self._cache_size = int(cache_size)
        self.max_memory = max_memory
        self._pipelines: list[tuple[str, str, dict[str, Any]]] = []
        self._shaped: dict[int, bool] = {}  # handle -> mapping.js wrote its hash input from a compiled tree
        self._shares: dict[int, bool] = {}  # handle -> a batch's documents share their hydrated lineages
        self._loaded: tuple[str, tuple[str, ...]] | None = None  # the batch's load call, to repeat it
        self._rebuilding = False
        self._given = 0  # characters of text handed to calls since ``trim`` last asked for the heap size
        #: called with the loaded batch's unresolved refs after a rebuild re-loaded it
        self.on_reload: Callable[[list[Any]], None] | None = None
        self.rebuilds = 0
        self._start()

    def _start(self) -> None:
        from py_mini_racer import DEFAULT_V8_FLAGS, MiniRacer, init_mini_racer  # heavy: only when a task runs

        init_mini_racer(flags=(*DEFAULT_V8_FLAGS, f"--max-semi-space-size={SEMI_SPACE_MB}"), ignore_duplicate_init=True)
        self._ctx = MiniRacer()
        self._ctx.set_hard_memory_limit(self.max_memory)
        restore = self._ctx.eval(_script("lockdown.js"))
        bridge = self._ctx.eval(
            _BRIDGE.format(
                hydration=_script("hydration.js"), purity=_script("purity.js"), mapping=_script("mapping.js")
            )
        )
        api = bridge(restore)
        self._fn = {name: api[name] for name in _API}
        self._call("configure", self._cache_size)

    def _call(self, name: str, *args: Any, timeout_s: float = DATA_TIMEOUT_S, probe_s: float | None = None) -> Any:
        """Call a bridge function; after a timeout or out-of-memory, rebuild the isolate and say so.

        ``probe_s`` (for calls that run snippets): V8 runs the ``Promise`` jobs a call queued
        after it has returned, outside its time limit, and one that never ends would hang every
        later call; so the call is followed by an empty evaluation, which must end within
        ``probe_s``, or the call counts as stopped.
        """
        from py_mini_racer import JSEvalException, JSTimeoutException

        self._given += sum(len(a) for a in args if isinstance(a, str))
        try:
            result = self._fn[name](*args, timeout_sec=timeout_s)
        except JSTimeoutException:
            self._stop(ScriptTimeout, f"JavaScript ran past {timeout_s:.2f} s")
        except JSEvalException as exc:
            if TAMPERED in str(exc):
                self._stop(ScriptTampered, "a snippet changed the sandbox in a way that cannot be undone")
            # A call stopped at the memory cap comes back as a bare evaluation error ("null").
            if not self._ctx.was_hard_memory_limit_reached():
                raise
            mb = self.max_memory // (1024 * 1024)
            self._stop(ScriptMemoryError, f"JavaScript ran out of memory (the sandbox's cap is {mb} MB)")
        if probe_s is not None and not self._idle(probe_s):
            self._stop(ScriptTimeout, f"a job the JavaScript left queued ran past {probe_s:.2f} s")
        return result

    def _idle(self, timeout_s: float) -> bool:
        """Whether the isolate runs an empty evaluation in time (nothing left running in it).

        ``eval`` is the one call mini-racer can always cancel; a function call first makes its
        argument list with a call that waits for ever on an isolate that is busy.
        """
        return self._probe(timeout_s) is None

    def _probe(self, timeout_s: float) -> Exception | None:
        """Run an empty evaluation: None when it ran, else why not (``_idle``, ``_stop``)."""
        from py_mini_racer import JSEvalException

        try:
            self._ctx.eval("0", timeout_sec=timeout_s)
        except JSEvalException as exc:
            return exc
        return None

    def _stop(self, kind: type[ScriptTimeout], message: str) -> NoReturn:
        """Name what was running if the isolate still answers, rebuild it, and raise ``kind``."""
        from py_mini_racer import JSOOMException

        key = None
        # An isolate stopped at its memory cap may refuse every evaluation after it (mini-racer keeps
        # the flag), but a refusal that comes back at once still shows that nothing runs in it.
        failure = self._probe(PROBE_S)
        if failure is None or isinstance(failure, JSOOMException):
            try:
                key = self._fn["current"](timeout_sec=PROBE_S) or None
            except Exception:  # noqa: BLE001 - a broken isolate only loses the detail
                key = None
        self._rebuild()
        raise kind(message, key)

    def _rebuild(self) -> None:
        """A new isolate with the same pipelines (same handles) and the same batch loaded.

        A job the stopped call queued (a ``Promise``, a loop in a microtask) dies with the old
        isolate instead of running, and failing, in the next document's call.
        """
        if self._rebuilding:
            return  # a timeout while rebuilding: the caller's error stands; the next call starts afresh
        self._rebuilding = True
        try:
            self.rebuilds += 1
            old, self._ctx = self._ctx, None
            old.close()
            self._start()
            for name, relevant_to, mapping in self._pipelines:
                self._call("addPipeline", name, relevant_to, json.dumps(mapping))
            if self._loaded is not None:
                function, args = self._loaded
                refs = json.loads(self._call(function, *args))["refs"]
                if self.on_reload is not None:
                    self.on_reload(refs)
        finally:
            self._rebuilding = False

    # -- mapping ---------------------------------------------------------------------------

    def compile(self, name: str, relevant_to: str, mapping: dict[str, Any], source: str) -> int:
        """Compile a pipeline's snippets; return its handle.

        :raises ScriptError: naming the file and each snippet that does not compile.
        """
        answer = json.loads(self._call("addPipeline", name, relevant_to, json.dumps(mapping)))
        if "problems" in answer:
            lines = "\n  - ".join(answer["problems"])
            raise ScriptError(f"{source}: JavaScript does not compile:\n  - {lines}")
        self._pipelines.append((name, relevant_to, mapping))
        self._shaped[answer["id"]] = answer["shaped"]
        self._shares[answer["id"]] = answer["shares"]
        return answer["id"]

    def shaped(self, handle: int) -> bool:
        """Whether pipeline ``handle``'s hash input is written from its key tree sorted at compile time
        (``mapping.js`` ``shape``) rather than by parsing each payload back, so tests can tell the paths apart."""
        return self._shaped[handle]

    def shares(self, handle: int) -> bool:
        """Whether pipeline ``handle``'s documents of one batch share their hydrated lineages instead of
        each getting copies: its snippets can neither change them nor tell them apart (``purity.js``)."""
        return self._shares[handle]

    def map_docs(self, handle: int, docs_json: str, count: int, timeout_s: float | None = None) -> list[MapResult]:
        """Evaluate a compiled pipeline over a JSON array of ``count`` hydrated documents."""
        budget = timeout_s if timeout_s is not None else BATCH_FLOOR_S + BATCH_PER_DOC_S * count
        return _decode(self._call("run", handle, docs_json, timeout_s=budget, probe_s=timeout_s or PROBE_S))

    def map_loaded(self, handle: int, start: int, end: int, timeout_s: float | None = None) -> list[MapResult]:
        """Hydrate and evaluate documents ``[start, end)`` of the loaded batch."""
        budget = timeout_s if timeout_s is not None else BATCH_FLOOR_S + BATCH_PER_DOC_S * (end - start)
        return _decode(self._call("runLoaded", handle, start, end, timeout_s=budget, probe_s=timeout_s or PROBE_S))

    # -- hydration -------------------------------------------------------------------------

    def load_page(self, page_text: str, filter_json: str | None = None) -> dict[str, Any]:
        """Parse a ``_changes``, view or ``_all_docs`` page; keep the documents to process, learn its contacts.

        An answer that cannot be used comes back as ``{"invalid": reason}``, the reason quoting
        nothing of it.
        """
        args = (page_text, filter_json or "")
        self._loaded = None  # a rebuild while this page loads must not load the previous one again
        info = json.loads(self._call("loadPage", *args))
        self._loaded = None if "invalid" in info else ("loadPage", args)
        return info

    def load_docs(self, docs_json: str) -> list[Any]:
        """Load documents to hydrate; return the subject refs that still need resolving."""
        self._loaded = None
        refs = json.loads(self._call("loadDocs", docs_json))["refs"]
        self._loaded = ("loadDocs", (docs_json,))
        return refs

    def learn(self, docs_json: str) -> None:
        self._call("learnDocs", docs_json)

    def resolve(self, view_response: str, refs: list[Any]) -> str:
        """Store a ``contacts_by_reference`` answer; return why it cannot be used, or ``''``."""
        return self._call("resolve", view_response, json.dumps(refs))

    def missing(self) -> list[str]:
        return json.loads(self._call("missing"))

    def add_docs(self, all_docs_response: str, ids: list[str]) -> str:
        """Store an ``_all_docs`` answer; return why it cannot be used, or ``''``."""
        return self._call("addDocs", all_docs_response, json.dumps(ids))

    def hydrated(self) -> list[dict]:
        return json.loads(self._call("hydratedJson"))

    def trim(self) -> None:
        """Collect V8 garbage once the heap has grown past ``TRIM_HEAP_BYTES`` (looked at once
        ``TRIM_CHECK_BYTES`` of text went in since the last look)."""
        if self._given < TRIM_CHECK_BYTES:
            return
        self._given = 0
        if self._ctx.heap_stats().get("used_heap_size", 0) > TRIM_HEAP_BYTES:
            self._ctx.low_memory_notification()

    def close(self) -> None:
        self._ctx.close()
