"""``destination.type: fhir``: FHIR R4 servers (HAPI, shared health records) through transaction Bundles.

A FHIR pipeline's mapped payload is a list of resources (``fhir.validate.as_resources``: the FHIR
templates' list, one resource alone, or the list one mapping key's ``expr`` returns), each with
``resourceType`` and its deterministic ``id`` (``fhir.ids.resource_id``),
referring to each other as ``"Type/id"``. Every payload is checked before anything is sent
(``fhir.validate.problems``, plus what a bundle needs: ids, and the CHT identifier under
``identifier_system`` for the conditional strategy); an invalid one is refused with the reasons and
never sent. A reference outside the payload must name a record the ledger says was delivered
(``use_ledger``): a referral whose Patient was never sent carries its Patient in its own payload.

One transaction Bundle carries the documents of a batch (``destination.batch_size``); a resource
two documents share (the Patient of two referrals) is entered once. Strategies
(``config/kinds/fhir.py``):

* ``conditional``: entries ``POST Type`` with ``ifNoneExist: identifier=<system>|<CHT id>`` and
  ``fullUrl: urn:uuid:<id>``; references between entries are rewritten to those ``urn:uuid``s, which
  the server rewrites to the ids it assigns. A retry or a re-run finds the earlier copy (``200``)
  instead of creating a second one. An entry that matched a copy holding other content (an edit in
  CHT) is then written over with ``PUT Type/<server id>`` in a second transaction of that document;
* ``put``: entries ``PUT Type/<deterministic id>`` (update-as-create), so a re-send and an edit
  both update the same resource.

Each document's answer is read from the ``transaction-response`` (``entry.response.status``,
``location``, ``outcome``). A refused transaction (400, 409, 412 several matches, 422) is atomic,
so, as the REST destination does with batches (this class keeps its retries, backoff, breaker and
bisection), it is sent again in halves until the document at fault is alone; that one is refused
with the server's words (its OperationOutcome) and the rest are delivered.

The document's destination id in the ledger is ``"Type/<server id>"`` of the **last** resource of
its payload: the main one (the Patient of a patient payload, the ServiceRequest of a referral's
``[Patient, ServiceRequest]``). A deleted document, with ``deletes: {action: send}`` and no path,
is ``DELETE``d at that ``Type/id``.

With ``write_back: {field, conn_id}``, the server's id of a delivered payload's Patient is written
to that property of the CHT person (the Patient's identifier in ``identifier_system`` names it)
through the CHT API, once: as the reverse path does before writing again, the person is read first
and left alone when it holds that id already, so a retry, a re-run after a crash or the next
referral of the same person writes nothing. A write that fails makes the document ``failed``
(sending it again is a no-op at the FHIR server; a person edited meanwhile is read again), a dead
letter with the reason after ``dead_after`` runs; a person CHT no longer has is noted on the
delivered document's ledger row.

Bundles go one at a time, in order: two transactions at once could both find no copy of a shared
Patient and create it twice (conditional create is not atomic across transactions on most servers).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests

from cht_bridge.cht.api import WriteError
from cht_bridge.destinations.base import Delivery, Result
from cht_bridge.destinations.rest import REASON_CHARS, RestDestination, _json, _overridden
from cht_bridge.errors import AnswerLimitError, AuthError, CircuitOpenError, PreflightError, SourceError
from cht_bridge.fhir import ids
from cht_bridge.http import reasons
from cht_bridge.http.read import request_within
from cht_bridge.http.retry import classify

FHIR_JSON = "application/fhir+json"
#: A FHIR server's refusal: its OperationOutcome's issues, else what a REST receiver would say.
REFUSAL = replace(reasons.DESTINATION, shape=reasons.fhir_outcome)
#: Reasons kept per refused payload: the first few say what to fix.
MAX_PROBLEMS = 5
_STATUS = re.compile(r"^\s*(\d{3})")


def cht_identifier(resource: dict[str, Any], system: str) -> str | None:
    """The value of ``resource``'s identifier in ``system`` (the CHT id it was made from)."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == system and identifier.get("value"):
            return str(identifier["value"])
    return None


class FhirDestination(RestDestination):
    """Transaction Bundles to a FHIR R4 base URL (the Connection's host), one per batch."""

    reason_style = REFUSAL

    def __init__(self, session: requests.Session, base_url: str, path: str = "/", *, settings: Any = None, **kw: Any):
        kw.update(mode="batch", concurrency=1, method="POST")  # one bundle at a time, in order
        super().__init__(session, base_url, path, **kw)
        session.headers.update({"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        self.url = self.base_url if not path.strip("/") else self._url(path)
        self.settings = settings
        self._payloads: dict[str, list[dict[str, Any]]] = {}  # idempotency key -> the resources to send
        self._known: set[str] = set()  # references the ledger said were delivered
        self._cht: Any = None  # the CHT API client of write_back (use_cht_api)
        self._written: dict[str, str] = {}  # CHT person id -> the EMR id it holds, seen this run

    @classmethod
    def configured(cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None) -> Self:
        made = super().configured(session, base_url, destination, delivery)
        made.settings = destination.settings
        return made

    def use_cht_api(self, client: Any) -> None:
        """The CHT API client ``write_back`` writes through (``ChtApiClient``)."""
        self._cht = client

    # -- the pre-flight ----------------------------------------------------------------------

    def check(self) -> None:
        """The server says it takes transactions (``CapabilityStatement.rest.interaction``).

        An unreachable or busy server is left to the run's retries; refused credentials stop here
        when the server guards its CapabilityStatement (R4 lets it be public: then the first bundle,
        sent alone, finds out).
        """
        try:
            response = request_within(
                self._session, "GET", self.base_url + "/metadata", self.limits, timeout=self.timeout
            )
        except (requests.RequestException, AnswerLimitError):
            return
        kind = classify(response.status_code)
        if kind == "auth":
            raise AuthError(self.conn_id, response.status_code, "The destination")
        if kind != "delivered":
            return
        try:
            rest = (response.json().get("rest") or [{}])[0]
        except (ValueError, AttributeError, IndexError, TypeError):
            return
        if not isinstance(rest, dict):
            return
        interactions = {i.get("code") for i in rest.get("interaction") or [] if isinstance(i, dict)}
        if interactions and "transaction" not in interactions:
            raise PreflightError(
                self.conn_id, "the FHIR server's CapabilityStatement lists no 'transaction' interaction"
            )

    # -- sending -----------------------------------------------------------------------------

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        """One ``Result`` per delivery, in order; an invalid payload is refused and never sent."""
        if self.settings is None:
            raise ValueError("FhirDestination needs its settings (destination.fhir)")
        results: list[Result | None] = [None] * len(deliveries)
        sendable: list[int] = []
        for i, delivery in enumerate(deliveries):
            problem = None if _overridden(delivery) else self._accept(delivery)
            if problem is None:
                sendable.append(i)
            else:
                results[i] = Result(delivery.doc_id, False, None, error=problem, attempts=0)
        try:
            sent = super().send([deliveries[i] for i in sendable])
        except CircuitOpenError as exc:  # what was refused unsent is finished too: the ledger records it
            exc.results = [r for r in results if r is not None] + exc.results
            raise
        finally:
            self._payloads.clear()
        for i, result in zip(sendable, sent, strict=True):
            results[i] = result
        return [r for r in results if r is not None]

    def _accept(self, delivery: Delivery) -> str | None:
        """Why ``delivery`` may not be sent, or None (its resources kept for the bundle)."""
        from cht_bridge.fhir.validate import as_resources, problems  # the R4 models load only when a payload is checked

        try:
            resources = as_resources(json.loads(delivery.body or "null"))
        except ValueError:
            return "invalid FHIR payload: not JSON"
        if not resources:
            return "invalid FHIR payload: no resources"
        found: list[str] = []
        seen: set[str] = set()
        for index, resource in enumerate(resources):
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                found.append(f"resource {index}: not a FHIR resource (no resourceType)")
                continue
            if not isinstance(resource.get("id"), str) or not resource["id"]:
                found.append(f"{resource['resourceType']} (resource {index}): no id (see fhir.ids.resource_id)")
                continue
            key = f"{resource['resourceType']}/{resource['id']}"
            if key in seen:
                found.append(f"{key}: twice in the payload")
            seen.add(key)
            if self.settings.strategy == "conditional" and not cht_identifier(
                resource, self.settings.identifier_system
            ):
                found.append(
                    f"{key}: no identifier in system {self.settings.identifier_system} (conditional create needs it)"
                )
        if not found and self.settings.validate:
            found = problems(resources, known=self._delivered, identifier_system=self.settings.identifier_system)
        if found:
            more = f"; and {len(found) - MAX_PROBLEMS} more" if len(found) > MAX_PROBLEMS else ""
            return "invalid FHIR payload: " + "; ".join(found[:MAX_PROBLEMS]) + more
        self._payloads[delivery.key] = resources
        return None

    def _delivered(self, reference: str) -> bool:
        """Does the ledger hold ``reference`` ("Type/id") as a delivered document's destination id?"""
        if reference in self._known:
            return True
        if self.ledger is not None and reference in self.ledger.delivered_destination_ids([reference]):
            self._known.add(reference)
            return True
        return False

    # -- the bundle --------------------------------------------------------------------------

    def _prepare(self, items: list[Delivery], as_array: bool) -> tuple[str, str, str | None, dict[str, str | None]]:
        method, url, body, headers = super()._prepare(items, as_array)
        if not as_array:
            return method, url, body, headers  # a DELETE of a deleted document's resource
        headers.pop("Idempotency-Keys", None)  # the bundle's own identifiers make it idempotent
        return "POST", self.url, json.dumps(self._bundle(items)[0]), headers

    def _bundle(self, items: list[Delivery]) -> tuple[dict[str, Any], list[str], list[list[str]]]:
        """The transaction, its entries' ``Type/id`` keys in order, and each item's keys."""
        resources: dict[str, dict[str, Any]] = {}
        owned: list[list[str]] = []
        for item in items:
            keys = []
            for resource in self._payloads[item.key]:
                key = f"{resource['resourceType']}/{resource['id']}"
                resources[key] = resource  # a shared resource is entered once (the latest copy)
                keys.append(key)
            owned.append(keys)
        order = list(resources)
        if self.settings.strategy == "put":
            entries = [self._put_entry(key, resources[key]) for key in order]
        else:
            urls = {key: _urn(key) for key in order}
            entries = [self._create_entry(key, resources[key], urls) for key in order]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}, order, owned

    def _put_entry(self, key: str, resource: dict[str, Any]) -> dict[str, Any]:
        return {"fullUrl": f"{self.base_url}/{key}", "resource": resource, "request": {"method": "PUT", "url": key}}

    def _create_entry(self, key: str, resource: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
        system = self.settings.identifier_system
        value = cht_identifier(resource, system) or ""
        body = _rewritten({k: v for k, v in resource.items() if k != "id"}, urls)  # the server picks the id
        condition = f"identifier={quote(system, safe=':/')}|{quote(value, safe='')}"
        request = {"method": "POST", "url": resource["resourceType"], "ifNoneExist": condition}
        return {"fullUrl": urls[key], "resource": body, "request": request}

    # -- the answer --------------------------------------------------------------------------

    def _array_results(self, items: list[Delivery], response: requests.Response) -> list[Result]:
        """Each document's result from the ``transaction-response``: its entries' statuses and ids."""
        _, order, owned = self._bundle(items)
        answer = _json(response)
        entries = answer.get("entry") if isinstance(answer, dict) else None
        if not isinstance(entries, list) or len(entries) != len(order):
            # Committed (2xx), but the answer cannot say which ids the server gave.
            return [Result(item.doc_id, True, response.status_code) for item in items]
        answered = dict(zip(order, (_entry_answer(e) for e in entries), strict=True))
        results = []
        for item, keys in zip(items, owned, strict=True):
            refused = [
                (key, answered[key]) for key in keys if answered[key].status is None or answered[key].status >= 300
            ]
            if refused:
                key, bad = refused[0]
                error = f"{key}: HTTP {bad.status}: {bad.reason}".rstrip(": ")[:REASON_CHARS]
                retryable = classify(bad.status) == "retryable"
                results.append(Result(item.doc_id, False, bad.status, error=error, retryable=retryable))
                continue
            result = Result(item.doc_id, True, response.status_code, answered[keys[-1]].location)
            if self.settings.strategy == "conditional":
                result = self._update_matches(item, keys, answered, result)
            if result.ok and self.settings.write_back is not None:
                result = self._write_back(item, keys, answered, result)
            results.append(result)
        return results

    def _update_matches(self, item: Delivery, keys: list[str], answered: dict[str, Any], result: Result) -> Result:
        """Write this document's resources over the copies its conditional create matched, when they differ.

        ``ifNoneExist`` never updates: a ``200`` entry is the copy an earlier delivery made, which an
        edit in CHT has since changed. One ``PUT Type/<server id>`` transaction for the document.
        """
        servers = {key: a.location for key, a in answered.items() if a.location}
        stale = []
        for key in keys:
            ours = _rewritten(self._resource(item, key), servers)
            theirs = answered[key].resource
            if answered[key].status == 200 and (theirs is None or _content(theirs) != _content(ours)):
                stale.append((servers.get(key), ours))
        if not stale:
            return result
        if any(location is None for location, _ in stale):
            return replace(result, ok=False, error="the server matched an earlier copy without saying where it is")
        entries = [
            {
                "fullUrl": f"{self.base_url}/{location}",
                "resource": {**ours, "id": location.split("/", 1)[1]},
                "request": {"method": "PUT", "url": location},
            }
            for location, ours in stale
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        with self._lock:
            self.requests += 1
        try:
            response = request_within(
                self._session, "POST", self.url, self.limits,
                data=json.dumps(bundle).encode("utf-8"), headers={"Idempotency-Key": item.key}, timeout=self.timeout,
            )  # fmt: skip
        except requests.RequestException as exc:
            return replace(
                result, ok=False, status=None, error=f"updating the earlier copy: {type(exc).__name__}", retryable=True
            )
        except AnswerLimitError as exc:
            error = f"updating the earlier copy: HTTP {exc.status}: {exc}"
            return replace(result, ok=False, status=exc.status, error=error, retryable=not exc.too_large)
        kind = classify(response.status_code)
        if kind == "auth":
            self._refused = AuthError(self.conn_id, response.status_code, "The destination")
            raise self._refused
        if kind == "delivered":
            return replace(result, attempts=result.attempts + 1)
        reason = reasons.answer_reason(response, REFUSAL).text
        error = f"updating the earlier copy: HTTP {response.status_code}: {reason}"[:REASON_CHARS]
        return replace(result, ok=False, status=response.status_code, error=error, retryable=kind == "retryable")

    def _write_back(self, item: Delivery, keys: list[str], answered: dict[str, Any], result: Result) -> Result:
        """The EMR's id of this document's Patient into the CHT person, unless it holds it already."""
        patient = next((key for key in keys if key.startswith("Patient/")), None)
        if patient is None or answered[patient].location is None:
            return result
        person = cht_identifier(self._resource(item, patient), self.settings.identifier_system)
        emr_id = answered[patient].location.split("/", 1)[1]
        if person is None or self._written.get(person) == emr_id:
            return result
        field = self.settings.write_back.field
        try:
            doc = self._cht_api().person(person)
            if doc is None:
                return replace(result, error=f"write_back: CHT has no person '{person}'")
            if doc.get(field) != emr_id:
                self._cht_api().update_person({**doc, field: emr_id})
        except WriteError as exc:
            # Even a refusal (a person edited meanwhile: its _rev moved on) is worth another run: sending
            # again is a no-op at the FHIR server, and after dead_after runs a person sees the reason.
            error = f"delivered, but writing the EMR id back to CHT failed: {exc}"[:REASON_CHARS]
            return replace(result, ok=False, error=error, retryable=True)
        except SourceError as exc:  # CHT could not be read, after the read's own retries
            error = f"delivered, but reading the CHT person for write_back failed: {exc}"[:REASON_CHARS]
            return replace(result, ok=False, status=exc.status, error=error, retryable=True)
        self._written[person] = emr_id
        return result

    @property
    def cht_api_conn_id(self) -> str | None:
        """The CHT API Connection ``write_back`` writes through; ``sync.resources`` opens it (``use_cht_api``)."""
        write_back = getattr(self.settings, "write_back", None)
        return write_back.conn_id if write_back is not None else None

    def _cht_api(self) -> Any:
        if self._cht is None:
            raise RuntimeError("write_back needs a CHT API client: use_cht_api() before sending")
        return self._cht

    def _resource(self, item: Delivery, key: str) -> dict[str, Any]:
        for resource in self._payloads[item.key]:
            if f"{resource['resourceType']}/{resource['id']}" == key:
                return {k: v for k, v in resource.items() if k != "id"}
        raise KeyError(key)

    # -- deletes -----------------------------------------------------------------------------

    def deletion(self, doc_id: str, destination_id: str | None, key: str, rules: Any) -> Delivery:
        """``DELETE Type/<server id>`` of the document's main resource, unless ``deletes.path`` says otherwise."""
        made = super().deletion(doc_id, destination_id, key, rules)
        if rules.path is None and destination_id and "/" in destination_id:
            kind, _, rid = destination_id.partition("/")
            made = replace(made, path=f"/{quote(kind, safe='')}/{quote(rid, safe='')}")
        return made


class _EntryAnswer:
    """One ``entry.response`` of a transaction-response, read."""

    __slots__ = ("location", "reason", "resource", "status")

    def __init__(self, status: int | None, location: str | None, reason: str, resource: dict[str, Any] | None):
        self.status, self.location, self.reason, self.resource = status, location, reason, resource


def _entry_answer(entry: Any) -> _EntryAnswer:
    entry = entry if isinstance(entry, dict) else {}
    response = entry.get("response") if isinstance(entry.get("response"), dict) else {}
    matched = _STATUS.match(str(response.get("status") or ""))  # "201 Created"; one server says bare "201"
    outcome = response.get("outcome")
    reason = reasons.outcome_issues(outcome) if isinstance(outcome, dict) else ""
    resource = entry.get("resource") if isinstance(entry.get("resource"), dict) else None
    return _EntryAnswer(
        int(matched.group(1)) if matched else None, _type_id(response.get("location")), reason, resource
    )


def _type_id(location: Any) -> str | None:
    """``Type/id`` out of ``[base/]Type/id[/_history/v]`` (never a query: it may hold a token)."""
    if not isinstance(location, str) or not location:
        return None
    parts = [p for p in urlsplit(location).path.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else None


def _urn(key: str) -> str:
    """``urn:uuid:`` of an entry: its id when that is a UUID (``fhir.ids``'), else one derived from it."""
    rid = key.split("/", 1)[1]
    try:
        return f"urn:uuid:{uuid.UUID(rid)}"
    except ValueError:
        return f"urn:uuid:{uuid.uuid5(ids.NAMESPACE, key)}"


def _rewritten(value: Any, references: dict[str, str]) -> Any:
    """``value`` with every ``reference`` found in ``references`` replaced by what it maps to."""
    if isinstance(value, dict):
        out = {k: _rewritten(v, references) for k, v in value.items()}
        if isinstance(value.get("reference"), str) and value["reference"] in references:
            out["reference"] = references[value["reference"]]
        return out
    if isinstance(value, list):
        return [_rewritten(v, references) for v in value]
    return value


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what the server sets (id, meta, narrative), to compare with ours."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}


DESTINATION = FhirDestination  # what ``destination.type: fhir`` opens (see ``registry``)
