"""Hydrate documents the way CHT does before ``relevant_to`` and ``mapping`` see them.

CHT's ``hydrateDocs`` (shared-libs/lineage) fills in, for every document:
- a report's ``contact`` (the submitter) and the submitter's parents;
- a report's ``patient`` and ``place``, found from ``fields.patient_id``/``fields.patient_uuid``/
  ``patient_id`` and ``fields.place_id``/``place_id``, which may be shortcodes (looked up in the
  ``medic-client/contacts_by_reference`` view) or uuids; each with its parents;
- any other document's ``parent`` chain;
- on the document and every parent, ``contact`` (a place's primary contact) and ``linked_docs``
  replaced by the full documents.
A parent that cannot be found stays as ``{_id}``.

We do the same for a whole batch: each round of missing ids is one ``_all_docs`` request (at most
three rounds: subjects and submitters, then their parents, then the parents' primary contacts),
and a bounded per-run cache, fed also by the contacts that pass through the changes feed, makes
most batches need one request or none.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from cht_bridge.errors import SourceError
from cht_bridge.source.couch import CouchClient

HARDCODED_TYPES = ("district_hospital", "health_center", "clinic", "person")
MAX_ROUNDS = 4
_MISSING = object()


def is_report(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("type") == "data_record"


def is_contact(doc: Any) -> bool:
    return isinstance(doc, dict) and (doc.get("type") == "contact" or doc.get("type") in HARDCODED_TYPES)


def get_id(item: Any) -> str | None:
    """CHT's ``getId``: a reference is either an id string or an object with ``_id``."""
    if isinstance(item, str):
        return item or None
    if isinstance(item, dict):
        return item.get("_id") or None
    return None


def _js_or(*values: Any) -> Any:
    """JavaScript ``a || b``: the first truthy value, else the last one."""
    for value in values:
        if value not in (None, False, 0, "") and value == value:  # value == value: not NaN
            return value
    return values[-1]


def patient_ref(doc: dict) -> Any:
    fields = doc.get("fields") if isinstance(doc.get("fields"), dict) else {}
    return _js_or(_js_or(fields.get("patient_id"), fields.get("patient_uuid")), doc.get("patient_id"))


def place_ref(doc: dict) -> Any:
    fields = doc.get("fields") if isinstance(doc.get("fields"), dict) else {}
    return _js_or(fields.get("place_id"), doc.get("place_id"))


def chain_ids(node: Any) -> list[str]:
    """Ids along a minified lineage ``{_id, parent: {_id, parent: …}}``, nearest first."""
    ids: list[str] = []
    seen = 0
    while isinstance(node, dict) and seen < 64:  # 64: guards a corrupt, cyclic chain
        if node.get("_id"):
            ids.append(node["_id"])
        node = node.get("parent")
        seen += 1
    return ids


def _valid_linked_docs(doc: dict) -> bool:
    return is_contact(doc) and isinstance(doc.get("linked_docs"), dict)


def contact_refs(doc: dict) -> list[str]:
    """Ids of the documents CHT puts in place of ``doc.contact`` and ``doc.linked_docs``."""
    ids = [get_id(doc.get("contact"))]
    if _valid_linked_docs(doc):
        ids.extend(get_id(ref) for ref in doc["linked_docs"].values())
    return [i for i in ids if i]


def _hashable(ref: Any) -> bool:
    return isinstance(ref, (str, int, float)) and not isinstance(ref, bool)


class Hydrator:
    """Batch hydration with a bounded per-run cache of contacts and shortcodes."""

    def __init__(self, client: CouchClient, cache_size: int = 50_000) -> None:
        self._client = client
        self._cache_size = cache_size
        self._docs: OrderedDict[str, Any] = OrderedDict()  # id -> doc, or _MISSING
        self._codes: OrderedDict[Any, str] = OrderedDict()  # shortcode/uuid ref -> uuid
        self._view_available = True
        self.requests = 0  # _all_docs + view requests, for logs and benchmarks

    # -- cache -----------------------------------------------------------------------------

    def _put(self, store: OrderedDict, key: Any, value: Any) -> None:
        store[key] = value
        store.move_to_end(key)
        if len(store) > self._cache_size:
            store.popitem(last=False)

    def remember(self, docs: list[dict]) -> None:
        """Cache the contacts a changes page carries: they are the newest revisions there are."""
        for doc in docs:
            if is_contact(doc):
                self._put(self._docs, doc["_id"], doc)
                code = _js_or(doc.get("place_id"), doc.get("patient_id"))
                if _hashable(code) and code not in (None, ""):
                    self._put(self._codes, str(code), doc["_id"])

    def _fetch(self, ids: set[str], known: dict[str, Any]) -> None:
        """Fill ``known`` with ``ids`` from the cache, then one ``_all_docs`` for the rest."""
        missing = []
        for doc_id in ids:
            if doc_id in known:
                continue
            cached = self._docs.get(doc_id)
            if cached is not None:
                known[doc_id] = cached
            else:
                missing.append(doc_id)
        if not missing:
            return
        self.requests += 1
        for doc_id, doc in self._client.all_docs(sorted(missing)).items():
            value = doc if doc is not None else _MISSING
            known[doc_id] = value
            self._put(self._docs, doc_id, value)
        for doc_id in missing:
            known.setdefault(doc_id, _MISSING)

    def _resolve_refs(self, refs: set[Any]) -> None:
        """Map shortcodes to uuids as ``contacts_by_reference`` does; other refs map to themselves."""
        unknown = [r for r in refs if r not in self._codes]
        if not unknown:
            return
        found: dict[Any, str] = {}
        if self._view_available:
            self.requests += 1
            try:
                rows = self._client.view("medic-client", "contacts_by_reference", [["shortcode", r] for r in unknown])
            except SourceError as exc:
                if exc.status != 404:
                    raise
                self._view_available = False  # not a CHT database: refs can only be uuids
                rows = []
            for row in rows:
                key = row.get("key")
                if isinstance(key, list) and len(key) == 2 and key[1] not in found:
                    found[key[1]] = row.get("id")
        for ref in unknown:
            self._put(self._codes, ref, found.get(ref, ref))

    # -- hydration -------------------------------------------------------------------------

    def hydrate(self, docs: list[dict]) -> list[dict]:
        """Return hydrated copies of ``docs``; the inputs and the cache are never modified."""
        subjects: dict[int, tuple[Any, Any]] = {}
        refs: set[Any] = set()
        for i, doc in enumerate(docs):
            if is_report(doc):
                pair = (patient_ref(doc), place_ref(doc))
                subjects[i] = pair
                refs.update(r for r in pair if _hashable(r) and r not in (None, ""))
        self._resolve_refs(refs)

        known: dict[str, Any] = {doc["_id"]: doc for doc in docs}
        members: set[str] = set()  # ids whose parents and contacts must be filled
        for i, doc in enumerate(docs):
            if is_report(doc):
                contact = doc.get("contact")
                members.update(ref for ref in [get_id(contact), *chain_ids(contact)] if ref)
                for ref in subjects[i]:
                    if _hashable(ref) and ref not in (None, ""):
                        members.add(self._codes[ref])
            else:
                members.add(doc["_id"])
                members.update(chain_ids(doc.get("parent")))

        wanted = set(members)
        for _ in range(MAX_ROUNDS):
            self._fetch(wanted, known)
            grown: set[str] = set()
            for doc_id in list(members):
                doc = known.get(doc_id)
                if isinstance(doc, dict):
                    grown.update(chain_ids(doc.get("parent")))
            new_members = grown - members
            members |= new_members
            contacts = {c for m in members if isinstance(known.get(m), dict) for c in contact_refs(known[m])}
            wanted = {i for i in new_members | contacts if i not in known}
            if not wanted:
                break

        return [self._build(doc, subjects.get(i), known) for i, doc in enumerate(docs)]

    def _build(self, doc: dict, subject: tuple[Any, Any] | None, known: dict[str, Any]) -> dict:
        if not is_report(doc):
            return self._with_parents(self._with_contacts(doc, known), known)
        out = dict(doc)
        contact = doc.get("contact")
        submitter = known.get(get_id(contact) or "")
        if isinstance(submitter, dict):
            out["contact"] = self._with_parents(self._with_contacts(submitter, known), known)
        elif isinstance(contact, dict) and chain_ids(contact.get("parent")):
            out["contact"] = self._with_parents(contact, known)
        for field_name, ref in zip(("patient", "place"), subject, strict=True):
            if not _hashable(ref) or ref in (None, ""):
                continue
            found = known.get(self._codes.get(ref, ref))
            if isinstance(found, dict):
                out[field_name] = self._with_parents(self._with_contacts(found, known), known)
        return out

    @staticmethod
    def _with_contacts(doc: dict, known: dict[str, Any]) -> dict:
        """A copy of ``doc`` with ``contact`` and ``linked_docs`` replaced by full documents."""
        out = dict(doc)
        primary = known.get(get_id(doc.get("contact")) or "")
        if isinstance(primary, dict):
            out["contact"] = primary
        if _valid_linked_docs(doc):
            linked = dict(doc["linked_docs"])
            for tag, ref in linked.items():
                found = known.get(get_id(ref) or "")
                if isinstance(found, dict):
                    linked[tag] = found
            out["linked_docs"] = linked
        return out

    def _with_parents(self, node: dict, known: dict[str, Any]) -> dict:
        """A copy of ``node`` whose minified ``parent`` chain is replaced by full parents."""
        out = dict(node)
        current = out
        for parent_id in chain_ids(node.get("parent")):
            parent = known.get(parent_id)
            filled = self._with_contacts(parent, known) if isinstance(parent, dict) else {"_id": parent_id}
            current["parent"] = filled
            current = filled
        return out
