"""``destination.type: fhir``: FHIR R4 servers (HAPI, shared health records) through transaction Bundles.

A FHIR pipeline's mapped payload is a list of resources (``fhir.validate.as_resources``: the FHIR
templates' list, one resource alone, or the list one mapping key's ``expr`` returns), each with
``resourceType`` and its deterministic ``id`` (``fhir.ids.resource_id``),
referring to each other as ``"Type/id"``. Every payload is checked before anything is sent
(``fhir.validate.problems``, plus what a bundle needs: ids, and the CHT identifier under
``identifier_system`` for the conditional strategy); an invalid one is refused with the reasons and
never sent. A reference outside the payload must name a record the ledger says was delivered
to this Connection (``use_ledger`` with ``StateStore.for_destination``: the pipelines of the same
folder with the same ``conn_id`` and kind): a referral whose Patient was never sent carries its Patient in its own payload.

One transaction Bundle carries the documents of a batch (``destination.batch_size``); a resource
two documents share (the Patient of two referrals) is entered once. Strategies
(``config/kinds/fhir.py``):

* ``conditional``: entries ``POST Type`` with ``ifNoneExist: identifier=<system>|<CHT id>`` and
  ``fullUrl: urn:uuid:<id>``; references between entries are rewritten to those ``urn:uuid``s, which
  the server rewrites to the ids it assigns. A retry or a re-run finds the earlier copy (``200``)
  instead of creating a second one. Conditional create never updates (§6.1) and the matched copy is
  the EMR's record: it is left alone unless the CHT document changed since this pipeline last
  delivered it (the ledger's hash, ``use_ledger``; never the server's body, which HAPI leaves out of
  its answer). Such an edit is then written with ``PUT Type/<server id>`` in a second transaction
  of that document, merged over the server's copy: what the EMR added that the CHT payload does
  not carry (its MRN identifier, an email) is kept. Without a ledger nothing is ever updated;
* ``put``: entries ``PUT Type/<deterministic id>`` (update-as-create), so a re-send and an edit
  both update the same resource.

Each document's answer is read from the ``transaction-response`` (``entry.response.status``,
``location``, ``outcome``); a 2xx that is not one, with one entry per request entry (a proxy's
login page, a wrong ``destination.path``), delivers nothing: its documents are refused with a
reason naming the Connection. ``destination.path`` is the FHIR base under the Connection's host
(``fhir_base``) for the pre-flight, the bundles, ``fullUrl``s and deletes alike. A refused transaction (400, 409, 412 several matches, 422) is atomic,
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
    identifiers = resource.get("identifier")
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("system") == system:
            value = identifier.get("value")
            if isinstance(value, str) and value:
                return value
    return None


class FhirDestination(RestDestination):
    """Transaction Bundles to a FHIR R4 base URL (the Connection's host), one per batch."""

    reason_style = REFUSAL
    reads_ledger_while_sending = True  # references delivered before, a document's last delivery

    def __init__(self, session: requests.Session, base_url: str, path: str = "/", *, settings: Any = None, **kw: Any):
        kw.update(mode="batch", concurrency=1, method="POST")  # one bundle at a time, in order
        super().__init__(session, base_url, path, **kw)
        session.headers.update({"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        self.url = self.fhir_base()
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

    def fhir_base(self, rest: str = "") -> str:
        """The FHIR base (the Connection's host + ``destination.path``), or ``rest`` under it.

        The one place the base is made: the pre-flight's ``metadata``, the bundles, the ``fullUrl``s
        of ``PUT`` entries and a deleted document's ``DELETE`` all hang off it.
        """
        base = self.base_url if not self.path.strip("/") else self._url(self.path).rstrip("/")
        return f"{base}/{rest.lstrip('/')}" if rest else base

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
                self._session, "GET", self.fhir_base("metadata"), self.limits, timeout=self.timeout
            )
        except (requests.RequestException, AnswerLimitError):
            return
        kind = classify(response.status_code)
        if kind == "auth":
            raise AuthError(self.conn_id, response.status_code, "The destination")
        if kind != "delivered":
            return
        body = _json(response)
        if not isinstance(body, dict) or body.get("resourceType") != "CapabilityStatement":
            # A login page or another service behind a 200: every bundle would get the same page
            # and be refused, so the run stops here with what to fix instead.
            kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
            raise PreflightError(
                self.conn_id,
                f"GET {urlsplit(self.fhir_base('metadata')).path} answered HTTP {response.status_code} ({kind}), "
                "not a FHIR CapabilityStatement: is the Connection's host and destination.path the FHIR base?",
            )
        try:
            rest = (body.get("rest") or [{}])[0]
        except (AttributeError, IndexError, TypeError):
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
        """Why ``delivery`` may not be sent, or None (its resources kept for the bundle).

        Any JSON is answered for: a shape the checks did not foresee refuses this document (a dead
        letter with the reason) rather than failing the run, and every run after it, on it.
        """
        try:
            return self._checked(delivery)
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            self._payloads.pop(delivery.key, None)
            return f"invalid FHIR payload: an element has an unexpected shape ({type(exc).__name__})"

    def _checked(self, delivery: Delivery) -> str | None:
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
        return {"fullUrl": self.fhir_base(key), "resource": resource, "request": {"method": "PUT", "url": key}}

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
        entries, problem = _transaction_entries(response, len(order))
        if entries is None:
            return [Result(item.doc_id, False, response.status_code, error=problem) for item in items]
        previous = self._last_delivered(items)
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
                result = self._update_matches(item, keys, answered, result, previous.get(item.doc_id))
            if result.ok and self.settings.write_back is not None:
                result = self._write_back(item, keys, answered, result)
            results.append(result)
        return results

    def _last_delivered(self, items: list[Delivery]) -> dict[str, str]:
        """Each document's key of its last successful delivery (``conditional`` only; one ledger query)."""
        if self.settings.strategy != "conditional" or self.ledger is None:
            return {}
        return self.ledger.last_delivered([item.doc_id for item in items])

    def _update_matches(
        self, item: Delivery, keys: list[str], answered: dict[str, Any], result: Result, previous: str | None
    ) -> Result:
        """After a conditional create matched earlier copies: update them only for an edit in CHT.

        ``ifNoneExist`` never updates (§6.1), and the copy it matched is the EMR's record now: the
        EMR may have added its own identifiers (an MRN) and contacts. So a matched copy is left
        alone unless the CHT document changed since this pipeline last delivered it: the ledger
        says so (``previous``, the key of its last successful delivery, differs from this one's,
        which is made from the payload's hash), never the server's body, which HAPI leaves out of
        a transaction-response by default. A document never delivered (a crash before the ledger
        recorded it, or a record the EMR made itself) is not an edit. An edit is then written with
        ``PUT Type/<server id>`` in one transaction for the document, merged over the server's copy
        (``_merged``): what the EMR added that the CHT payload does not carry is kept.
        """
        if previous is None or previous == item.key:
            return result
        servers = {key: a.location for key, a in answered.items() if a.location}
        stale = []
        for key in keys:
            if answered[key].status != 200:
                continue  # created just now: nothing earlier to update
            location = servers.get(key)
            if location is None:
                return replace(result, ok=False, error="the server matched an earlier copy without saying where it is")
            theirs = answered[key].resource
            if theirs is None:
                theirs, problem = self._read(location)
                if theirs is None:
                    return replace(result, ok=False, status=None, error=problem, retryable=True)
            ours = _merged(_rewritten(self._resource(item, key), servers), theirs)
            if _content(theirs) != _content(ours):
                stale.append((location, ours))
        if not stale:
            return result
        entries = [
            {
                "fullUrl": self.fhir_base(location),
                "resource": {**ours, "id": location.split("/", 1)[1]},
                "request": {"method": "PUT", "url": location},
            }
            for location, ours in stale
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response, problem = self._call("POST", self.url, json.dumps(bundle), item.key)
        if response is None:
            return replace(result, ok=False, status=None, error=f"updating the earlier copy: {problem}", retryable=True)
        kind = classify(response.status_code)
        if kind == "delivered":
            answer, problem = _transaction_entries(response, len(entries))
            if answer is None:
                return replace(
                    result, ok=False, status=response.status_code, error=f"updating the earlier copy: {problem}"
                )
            return replace(result, attempts=result.attempts + 1)
        reason = reasons.answer_reason(response, REFUSAL).text
        error = f"updating the earlier copy: HTTP {response.status_code}: {reason}"[:REASON_CHARS]
        return replace(result, ok=False, status=response.status_code, error=error, retryable=kind == "retryable")

    def _read(self, location: str) -> tuple[dict[str, Any] | None, str]:
        """The server's copy at ``Type/id`` (to merge an edit over it), or None and why not."""
        response, problem = self._call("GET", self.fhir_base(location), None, None)
        if response is None:
            return None, f"reading the earlier copy: {problem}"
        body = _json(response)
        if classify(response.status_code) != "delivered" or not isinstance(body, dict):
            return None, f"reading the earlier copy: HTTP {response.status_code}"
        return body, ""

    def _call(self, method: str, url: str, body: str | None, key: str | None) -> tuple[requests.Response | None, str]:
        """One request of the update path; ``(None, why)`` without a usable answer.

        :raises AuthError: refused credentials, now and for every later request.
        """
        with self._lock:
            self.requests += 1
        try:
            response = request_within(
                self._session, method, url, self.limits,
                data=None if body is None else body.encode("utf-8"),
                headers={"Idempotency-Key": key} if key else None, timeout=self.timeout,
            )  # fmt: skip
        except requests.RequestException as exc:  # no str(exc): it holds the URL
            return None, type(exc).__name__
        except AnswerLimitError as exc:
            return None, f"HTTP {exc.status}: {exc}"
        if classify(response.status_code) == "auth":
            self._refused = AuthError(self.conn_id, response.status_code, "The destination")
            raise self._refused
        return response, ""

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
            under = self.fhir_base()[len(self.base_url) :]  # destination.path: the DELETE is joined to base_url
            made = replace(made, path=f"{under}/{quote(kind, safe='')}/{quote(rid, safe='')}")
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


def _transaction_entries(response: requests.Response, count: int) -> tuple[list[Any] | None, str]:
    """The ``count`` entries of a 2xx ``transaction-response``, or None and why the answer is not one.

    Only a transaction-response says what the server did with each entry. Any other 2xx (a proxy's
    login page, an HTML error page, a wrong ``destination.path`` answered by some other service)
    is not a delivery: it is refused, not retried, because sending again gets the same page and
    only a person can fix it (the Connection's host or ``destination.path``); the reason says so,
    and the dead letters are replayed once the Connection is right.
    """
    answer = _json(response)
    if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
        kind = (response.headers.get("Content-Type") or "no content type").split(";")[0].strip()
        return None, (
            f"HTTP {response.status_code} ({kind}) is not a FHIR transaction-response Bundle: is the Connection's host "
            "and destination.path the FHIR base (not a login page or a proxy)?"
        )
    if answer.get("type") != "transaction-response":
        return None, f"HTTP {response.status_code}: the server answered a Bundle that is not a transaction-response"
    entries = answer.get("entry")
    if not isinstance(entries, list) or len(entries) != count:
        given = len(entries) if isinstance(entries, list) else 0
        return None, f"HTTP {response.status_code}: the transaction-response has {given} entries for {count} requests"
    return entries, ""


def _merged(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Our resource over the server's copy, keeping what the EMR added that CHT does not carry.

    Elements the CHT payload lacks are the server's (a ``generalPractitioner`` the EMR set);
    ``identifier`` and ``telecom`` keep the server's entries in systems the CHT payload has none
    in (the EMR's MRN, an email), while CHT's own systems (its id, its phone) are CHT's.
    """
    out = {k: v for k, v in _content(theirs).items() if k not in ours}
    out.update(ours)
    for element in ("identifier", "telecom"):
        mine, kept = ours.get(element), theirs.get(element)
        if isinstance(mine, list) and isinstance(kept, list):
            systems = [e.get("system") for e in mine if isinstance(e, dict)]
            out[element] = mine + [e for e in kept if isinstance(e, dict) and e.get("system") not in systems]
        elif mine is None and isinstance(kept, list):
            out[element] = kept
    return out


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource without what the server sets (id, meta, narrative), to compare with ours."""
    return {k: v for k, v in resource.items() if k not in ("id", "meta", "text")}


DESTINATION = FhirDestination  # what ``destination.type: fhir`` opens (see ``registry``)
