"""Hydrate documents the way CHT does before ``relevant_to`` and ``mapping`` see them.

The rules (CHT's ``hydrateDocs`` in shared-libs/lineage) are implemented in
``sandbox/hydration.js``, next to the mappings that use the result, so a batch is parsed,
hydrated and mapped in V8 without crossing back into Python document by document. This module
does the I/O: it resolves shortcodes with the ``medic-client/contacts_by_reference`` view and
fetches what the sandbox's per-run cache lacks, one ``_all_docs?keys=`` request per round (at
most three rounds: submitters and subjects, then their parents, then the parents' primary
contacts). With the cache warm, most batches need one request or none.

An answer that cannot be read (truncated, not JSON, not the shape CouchDB sends) is a
``SourceError`` naming the Connection, never quoting the answer: it is patient data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cht_bridge.cht.couch import CouchClient
from cht_bridge.errors import SourceError
from cht_bridge.source.pages import Page
from cht_bridge.v8 import Sandbox, ScriptTimeout

MAX_ROUNDS = 4


@dataclass(frozen=True)
class LoadedBatch:
    """A page hydrated inside the sandbox, ready for ``Mapper.map_batch``: a handle, not a copy.

    The documents stay in V8 (copying them out and back would cost more than mapping them), so the
    handle names the sandbox that holds them and which load it was: once the next page is loaded
    there, this handle is stale and mapping it is refused rather than mapping the wrong documents.
    """

    hydrator: Hydrator
    ids: list[str]
    generation: int

    @property
    def sandbox(self) -> Sandbox:
        return self.hydrator.sandbox

    @property
    def current(self) -> bool:
        return self.generation == self.hydrator.generation


class Hydrator:
    """Hydration for one run: a sandbox's cache plus the requests that fill it."""

    def __init__(self, client: CouchClient, sandbox: Sandbox | None = None, cache_size: int = 50_000) -> None:
        self._client = client
        self.sandbox = sandbox or Sandbox(cache_size=cache_size)
        self.sandbox.on_reload = self._reload  # a rebuilt isolate has the batch but not the cache
        self._refs: list[Any] = []
        self._view_available = True
        self.requests = 0  # view and _all_docs requests made, for logs and benchmarks
        self.generation = 0  # pages loaded so far: which one a ``LoadedBatch`` is

    def load_page(self, page_text: str, filter_json: str | None = None) -> Page:
        """Load a ``_changes``, view or ``_all_docs`` page into the sandbox: what to process, what was skipped."""
        try:
            info = self.sandbox.load_page(page_text, filter_json)
        except ScriptTimeout:  # or out of memory: a page no sane CouchDB sends at this batch_size
            raise self._unreadable(
                "a page it sent was too large to read within the sandbox's time and memory"
            ) from None
        if "invalid" in info:
            raise self._unreadable(f"a page it sent {info['invalid']}")
        self._refs = info["refs"]
        self.generation += 1
        return Page(**info)

    def hydrated(self, page: Page) -> LoadedBatch:
        """Hydrate the page just loaded (``fetch``) and hand it on to be mapped where it lies."""
        self.fetch()
        return LoadedBatch(self, page.ids, self.generation)

    def load_changes(self, page_text: str) -> Page:
        """Load a ``_changes`` page, which must say where the feed resumes.

        Without ``last_seq`` the checkpoint would have nowhere to go (storing null would start the
        next run from the beginning), so such an answer is refused.
        """
        page = self.load_page(page_text)
        if page.last_seq is None:
            raise self._unreadable("a _changes page it sent has no last_seq")
        return page

    def _unreadable(self, what: str) -> SourceError:
        return SourceError(f"CHT connection '{self._client.conn_id}': {what}; nothing of it was used")

    def _reload(self, refs: list[Any]) -> None:
        """After the sandbox was rebuilt: fetch again what hydrating the reloaded batch needs."""
        self._refs = refs
        self.fetch()

    def remember(self, docs: list[dict]) -> None:
        """Cache documents already in hand (the feed's own contacts are cached on load)."""
        self.sandbox.learn(json.dumps(docs))

    def fetch(self) -> None:
        """Resolve the loaded batch's shortcodes and fetch the documents its hydration needs."""
        refs, self._refs = self._refs, []
        if refs and self._view_available:
            try:
                for chunk, answer in self._client.view_texts(
                    "medic-client", "contacts_by_reference", [["shortcode", ref] for ref in refs]
                ):
                    self.requests += 1
                    problem = self.sandbox.resolve(answer, [key[1] for key in chunk])
                    if problem:
                        raise self._unreadable(f"the contacts_by_reference view's answer {problem}")
            except SourceError as exc:
                if exc.status != 404:
                    raise
                self._view_available = False  # not a CHT database: refs can only be uuids
        if refs and not self._view_available:
            self.sandbox.resolve('{"rows": []}', refs)
        for _ in range(MAX_ROUNDS):
            ids = self.sandbox.missing()
            if not ids:
                return
            self.requests += 1
            problem = self.sandbox.add_docs(self._client.all_docs_text(ids), ids)
            if problem:
                raise self._unreadable(f"an _all_docs answer {problem}")

    def hydrate(self, docs: list[dict]) -> list[dict]:
        """Hydrated copies of ``docs`` (for tools and tests; runs map inside the sandbox)."""
        self._refs = self.sandbox.load_docs(json.dumps(docs))
        self.fetch()
        return self.sandbox.hydrated()
