"""``destination.type: openmrs``: FHIR resources into an OpenMRS FHIR2 module (KenyaEMR, Bahmni, O3).

OpenMRS has no bundles and no conditional create (``destinations.md`` §2.2), so idempotency comes
from the ids: a payload is a list of FHIR resources, each with the deterministic UUID
``fhir.ids.resource_id`` gives it, which OpenMRS keeps as its uuid. Each resource is one request,
in order (§2.7): ``GET Type/id``, then ``POST Type`` with the id (new) or ``PUT Type/id``
(existing); a ``PUT`` answered 404 (deleted in between) becomes a ``POST``. A resource this
destination already wrote in the run is ``PUT`` without the ``GET``, and not sent again when it is
unchanged (a Patient shared by several referrals of one run). A resource another one of the
payload refers to goes first, whatever the list's order, so a referral whose patient was never
sent brings its Patient with it and OpenMRS never sees a dangling reference.

Before anything is sent, a document's payload is prepared and refused with the reason when it
cannot go. Its CHT place (the Organization reference the templates write for a patient's
``organization``: an ``identifier`` in the CHT id system) becomes an OpenMRS Location through the
location table: the ``location`` of its Encounters and Tasks and the location extension of its
Patient identifiers (OpenMRS has no Organization, so the reference itself is left out); a
reference in ``place_system`` becomes ``Location/<uuid>`` where it is; a place the table lacks
refuses the document, naming the place. A reference outside the payload must exist at OpenMRS
(one ``GET``); the payload must pass ``fhir.validate.problems``; every Patient identifier gets the
OpenMRS identifier type ``identifier_types`` names for its system (else its own ``type.text``) in
``type.text``, without the system (OpenMRS drops an identifier whose system it has no mapping for,
§2.3), or the document is refused naming the system; ServiceRequest and Organization are refused,
since FHIR2 writes neither (§2.2, §2.5).

Authentication is the Connection's: ``auth: {type: cookie, login_path: /openmrs/ws/rest/v1/session}``
logs in once and sends ``JSESSIONID``, renewed once on a 401 (``http.auth``); a 401 or 403 that
reaches this module stops the task (``AuthError``). What may pass later (no answer, 408, 429,
5xx) is tried again after a backoff, from the ``GET``, so a ``POST`` whose answer was lost becomes
a ``PUT``; ``breaker_after`` such failures in a row stop the run (``CircuitOpenError``).

The document's destination id in the ledger is ``Type/<uuid>`` of the *last* resource of its
payload, as for the ``fhir`` kind: the templates list the document's own resource last (the
Patient of a person, the Task of a referral), after those it refers to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

import requests

from cht_bridge.destinations.base import BaseDestination, Delivery, Result, keep_alive
from cht_bridge.destinations.rest import _json, _reason
from cht_bridge.errors import AuthError, CircuitOpenError, PreflightError
from cht_bridge.fhir.validate import as_resources, problems
from cht_bridge.http import reasons
from cht_bridge.http.read import ANSWER_LIMITS, AnswerLimits, Unanswered, answer_or_reason
from cht_bridge.http.retry import CircuitBreaker, RetryPolicy, backoff, classify, delivery_policy, retry_after
from cht_bridge.tables import load_table, normal

log = logging.getLogger(__name__)

SYSTEM = "OpenMRS"
DEFAULT_PATH = "/openmrs/ws/fhir2/R4"
PLACE_SYSTEM = "https://communityhealthtoolkit.org/place"
#: What FHIR2 creates and updates (§2.2); ServiceRequest is read-only there (lab orders, §2.5).
WRITABLE = frozenset({"Patient", "Encounter", "Observation", "Task", "Location", "Practitioner", "Medication"})
#: The extension that gives a patient identifier its location (``destinations.md`` §2.3).
IDENTIFIER_LOCATION = "http://fhir.openmrs.org/ext/patient/identifier#location"
_DROP = object()  # a place reference left out of its resource


class Refusal(Exception):
    """A payload that cannot be sent as it is: refused before any request, with this reason."""


@dataclass(frozen=True)
class _Step:
    """How one resource's write ended: done, or failed (retryable or not) with the reason."""

    ok: bool
    status: int | None = None
    error: str | None = None
    retryable: bool = False
    wait: float | None = None


class OpenMrsDestination(BaseDestination):
    """Writes each document's FHIR resources to an OpenMRS FHIR2 base, one request per resource."""

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        *,
        conn_id: str,
        path: str = DEFAULT_PATH,
        identifier_types: dict[str, str] | None = None,
        locations: str | None = None,
        place_system: str = PLACE_SYSTEM,
        identifier_system: str | None = None,
        concurrency: int = 4,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        limits: AnswerLimits = ANSWER_LIMITS,
    ) -> None:
        self.path = path
        self.base = base_url.rstrip("/") + ("/" + path.strip("/") if path.strip("/") else "")
        self.conn_id = conn_id
        self.identifier_types = dict(identifier_types or {})
        self.locations = locations
        self.place_system = place_system
        self.identifier_system = identifier_system
        self.timeout = timeout
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = session
        keep_alive(session, concurrency, "application/fhir+json")
        self._pool = ThreadPoolExecutor(max_workers=max(concurrency, 1), thread_name_prefix="openmrs")
        self._places: dict[str, str] | None = None
        self._places_file = ""
        self._written: dict[str, str] = {}  # "Type/id" -> hash of what this destination last wrote there
        self._seen: set[str] = set()  # "Type/id" found at OpenMRS by a GET
        self._writing: dict[str, threading.Lock] = {}  # "Type/id" -> held while a thread writes it
        self._lock = threading.Lock()
        self._breaker = CircuitBreaker(self.retry.breaker_after)
        self._refused: AuthError | None = None
        self._answered = False
        self.requests = 0
        self.retries = 0

    @classmethod
    def configured(cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None) -> Self:
        """The destination a pipeline's ``destination`` block (with ``openmrs:``) and ``delivery`` describe."""
        retry = delivery_policy(delivery)
        settings = destination.settings
        return cls(
            session,
            base_url,
            conn_id=destination.conn_id,
            path=destination.path,
            identifier_types=settings.identifier_type if settings else None,
            locations=settings.locations if settings else None,
            place_system=settings.place_system if settings else PLACE_SYSTEM,
            identifier_system=settings.identifier_system if settings else None,
            concurrency=destination.concurrency,
            timeout=destination.timeout,
            retry=retry,
        )

    # -- the contract ----------------------------------------------------------------------------

    def check(self) -> None:
        """The location table reads, and the base answers as a FHIR server (its CapabilityStatement).

        :raises ConfigError: the location table cannot be read or has bad rows.
        :raises PreflightError: the base is not a FHIR server's (a wrong ``destination.path``).
        """
        self._place_table()
        answer = self._call("GET", f"{self.base}/metadata")
        if isinstance(answer, _Step):
            raise PreflightError(self.conn_id, f"GET {self.path}/metadata: {answer.error}")
        body = _json(answer)
        if classify(answer.status_code) != "delivered" or not isinstance(body, dict):
            raise PreflightError(self.conn_id, f"GET {self.path}/metadata: {_reason(answer, reasons.FHIR)}")
        if body.get("resourceType") != "CapabilityStatement":
            raise PreflightError(self.conn_id, f"GET {self.path}/metadata did not answer a FHIR CapabilityStatement")

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        """One ``Result`` per delivery, in order; documents go ``concurrency`` at a time.

        :raises AuthError: OpenMRS refused the credentials (after one renewal of the session).
        :raises CircuitOpenError: too many failed tries in a row; it carries the finished results.
        """
        if not deliveries:
            return []
        answered: list[Result | None] = []
        if not self._answered:
            answered.append(self._deliver(deliveries[0]))  # refused credentials cost one request
            self._answered = True
        answered.extend(self._pool.map(self._deliver, deliveries[len(answered) :]))
        finished = [r for r in answered if r is not None]
        if self._breaker.is_open:
            raise CircuitOpenError(self.conn_id, self._breaker.failures, self._breaker.last_error, finished)
        return finished

    def deletion(self, doc_id: str, destination_id: str | None, key: str, rules: Any) -> Delivery:
        """A document deleted in CHT (``deletes: {action: send}``) voids its resource at OpenMRS:
        ``DELETE Type/<uuid>`` from its destination id, unless ``deletes.path`` names another path
        (relative to the FHIR2 base, with ``{doc_id}`` and ``{destination_id}``)."""
        if rules.path is None and destination_id and "/" in destination_id:
            return Delivery(doc_id, None, key, method=rules.method, path="/" + destination_id)
        return super().deletion(doc_id, destination_id, key, rules)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._session.close()

    # -- one document ----------------------------------------------------------------------------

    def _deliver(self, item: Delivery) -> Result | None:
        """Every resource of one document, in order; None when the breaker stopped it midway."""
        if self._refused is not None:
            raise self._refused
        if self._breaker.is_open:
            return None
        if item.body is None or item.method is not None or item.path is not None:
            return self._plain(item)
        try:
            resources, last = self._prepared(item.body)
        except Refusal as refusal:
            return Result(item.doc_id, False, None, error=str(refusal))
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # A shape no check foresaw refuses this document (a dead letter), never the run: raised
            # out of send, it would fail this run and every run after it on the same document.
            return Result(item.doc_id, False, None, error=f"the payload has an unexpected shape ({type(exc).__name__})")
        except _Unreachable as step:
            if self._breaker.failure(step.step.error):
                return None  # down: the document stays pending, like the rest
            return Result(item.doc_id, False, step.step.status, error=step.step.error, retryable=True)
        status, attempts = None, 0
        for resource in resources:
            step, tries = self._write(resource)
            attempts = max(attempts, tries)
            if step is None:
                return None
            if not step.ok:
                reference = f"{resource['resourceType']}/{resource['id']}"
                return Result(
                    item.doc_id, False, step.status, error=f"{reference}: {step.error}", retryable=step.retryable,
                    attempts=max(attempts, 1),
                )  # fmt: skip
            status = step.status
        return Result(item.doc_id, True, status, destination_id=last, attempts=max(attempts, 1))

    def _prepared(self, body: str) -> tuple[list[dict[str, Any]], str]:
        """The payload as it will be sent, in sending order, and ``Type/id`` of its last resource.

        :raises Refusal: it cannot be sent (not resources, no id, a place without a location,
            invalid FHIR, an identifier without an OpenMRS type, a type OpenMRS does not write).
        :raises _Unreachable: OpenMRS could not say whether a referenced resource exists.
        """
        try:
            payload = json.loads(body)
        except ValueError:
            raise Refusal("the payload is not JSON") from None
        resources = as_resources(payload)
        if not resources or not isinstance(payload, (dict, list)):
            raise Refusal("the payload must be a FHIR resource or a non-empty list of them")
        sending_order = _order(resources)  # refuses what is not a resource with an id
        payload_last = resources[-1]
        for resource in resources:
            if resource["resourceType"] not in WRITABLE:
                raise Refusal(
                    f"{resource['resourceType']}/{resource['id']}: OpenMRS FHIR2 does not create "
                    f"{resource['resourceType']} resources (writable: {', '.join(sorted(WRITABLE))})"
                )
        resources = self._placed([resources[i] for i in sending_order])
        inside = {f"{r['resourceType']}/{r['id']}" for r in resources}
        outside = {target for r in resources for target in _references(r) if target not in inside}
        existing = {target for target in sorted(outside) if self._exists(target)}
        found = problems(
            resources, known=lambda reference: reference in existing, identifier_system=self.identifier_system
        )
        if found:
            raise Refusal("invalid FHIR: " + "; ".join(found))
        last = f"{payload_last['resourceType']}/{payload_last['id']}"
        return [self._identified(r) for r in resources], last

    def _placed(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """References to CHT places turned into OpenMRS Locations (the table), and the referral's location.

        A reference to a CHT place is logical: ``identifier`` in the CHT id system (``type``
        Organization, as the templates write a person's ``organization``) or in ``place_system``.
        An Organization one is the document's place: OpenMRS has no Organization resource, so it is
        left out and its Location becomes each Encounter's and Task's ``location`` (when they have
        none) and the location extension of each Patient identifier (§2.3). Any other becomes
        ``Location/<uuid>`` where it is.

        :raises Refusal: a place is not in the table, or an Encounter or Task has no location.
        """
        found: list[str] = []
        placed = [self._place_refs(resource, found) for resource in resources]
        location = {"reference": f"Location/{found[0]}"} if found else None
        for resource in placed:
            kind = resource["resourceType"]
            if kind in ("Encounter", "Task") and not resource.get("location"):
                if location is None:
                    raise Refusal(
                        f"{kind}/{resource['id']}: no CHT place names its OpenMRS location (give the patient "
                        "template an organization, the CHT place of the referral)"
                    )
                resource["location"] = [{"location": dict(location)}] if kind == "Encounter" else dict(location)
            if kind == "Patient" and location is not None:
                for identifier in _dicts(resource.get("identifier")):  # another shape: problems() says so
                    extensions = identifier.setdefault("extension", [])
                    if isinstance(extensions, list) and not any(
                        isinstance(e, dict) and e.get("url") == IDENTIFIER_LOCATION for e in extensions
                    ):
                        extensions.append({"url": IDENTIFIER_LOCATION, "valueReference": dict(location)})
        return placed

    def _place_refs(self, value: Any, found: list[str]) -> Any:
        """``value`` with its place references resolved (``_DROP`` for an Organization one)."""
        if isinstance(value, list):
            return [v for v in (self._place_refs(item, found) for item in value) if v is not _DROP]
        if not isinstance(value, dict):
            return value
        identifier = value.get("identifier")
        if "reference" not in value and "resourceType" not in value and isinstance(identifier, dict):
            system, kind = identifier.get("system"), value.get("type")
            if system == self.place_system or (
                system == self.identifier_system and kind in ("Organization", "Location")
            ):
                place = str(identifier.get("value") or "")
                location = self._place_table().get(normal(place))
                if location is None:
                    where = self._places_file or "no location table (destination.openmrs.locations)"
                    raise Refusal(f"CHT place '{place}' has no OpenMRS location in {where}")
                found.append(location)
                if kind == "Organization":
                    return _DROP
                rest = {k: v for k, v in value.items() if k not in ("identifier", "type")}
                return {"reference": f"Location/{location}", **rest}
        out = {}
        for key, item in value.items():
            placed = self._place_refs(item, found)
            if placed is not _DROP:
                out[key] = placed
        return out

    def _identified(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A Patient's identifiers typed as OpenMRS knows them: ``type.text``, no ``system``.

        The type is the one ``identifier_types`` names for the identifier's system, else the
        ``type.text`` the payload gives (a template's ``identifier_type``).
        """
        if resource["resourceType"] != "Patient":
            return resource
        typed = []
        for identifier in _dicts(resource.get("identifier")):  # problems() has passed: a list of objects
            system = identifier.get("system")
            type_field = identifier.get("type")
            given = type_field.get("text") if isinstance(type_field, dict) else None
            if system is not None and not isinstance(system, str):
                raise Refusal(f"Patient/{resource['id']}: an identifier's system is not a string")
            type_ = self.identifier_types.get(system) if system is not None else given
            if type_ is None and system is not None:
                type_ = given
            if not type_:
                raise Refusal(
                    f"Patient/{resource['id']}: identifier system '{system}' has no OpenMRS identifier type "
                    "(destination.openmrs.identifier_types)"
                )
            typed.append({
                **{k: v for k, v in identifier.items() if k not in ("system", "type")}, "type": {"text": type_},
            })  # fmt: skip
        if typed:
            resource["identifier"] = typed
        return resource

    def _place_table(self) -> dict[str, str]:
        with self._lock:
            if self._places is None:
                if self.locations is None:
                    self._places = {}
                else:
                    self._places_file, self._places = load_table(
                        self.locations, "cht_place", "location_uuid", setting="destination.openmrs.locations"
                    )
            return self._places

    # -- one resource ----------------------------------------------------------------------------

    def _exists(self, reference: str) -> bool:
        """Is ``Type/id`` at OpenMRS (written or seen by this destination, or a GET says so)?

        :raises _Unreachable: OpenMRS did not answer whether it is.
        """
        with self._lock:
            if reference in self._written or reference in self._seen:
                return True
        answer = self._call("GET", f"{self.base}/{reference}")
        if isinstance(answer, _Step):
            raise _Unreachable(answer)
        if answer.status_code == 200:
            with self._lock:
                self._seen.add(reference)
            return True
        if classify(answer.status_code) == "retryable":
            raise _Unreachable(_Step(False, answer.status_code, _reason(answer, reasons.FHIR), True))
        return False

    def _write(self, resource: dict[str, Any]) -> tuple[_Step | None, int]:
        """Write one resource, retrying what may pass; ``(None, n)`` when the breaker opened.

        One resource is written by one thread at a time: two documents in flight that carry the
        same Patient would otherwise both find it missing and both ``POST`` it.
        """
        reference = f"{resource['resourceType']}/{resource['id']}"
        with self._lock:
            one_at_a_time = self._writing.setdefault(reference, threading.Lock())
        with one_at_a_time:
            return self._write_alone(reference, resource)

    def _write_alone(self, reference: str, resource: dict[str, Any]) -> tuple[_Step | None, int]:
        text = json.dumps(resource, sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()
        with self._lock:
            if self._written.get(reference) == digest:
                return _Step(True, 200), 0  # this run already wrote exactly this
        for attempt in range(self.retry.retries + 1):
            tries = attempt + 1
            if attempt:
                with self._lock:
                    self.retries += 1
            step = self._upsert(reference, resource, text)
            if step.ok:
                with self._lock:
                    self._written[reference] = digest
                self._breaker.success()
                return step, tries
            if not step.retryable:
                self._breaker.success()  # OpenMRS answered: it is up
                return step, tries
            if self._breaker.failure(step.error):
                return None, tries
            if step.wait is not None and step.wait > self.retry.max_backoff_s:
                return _Step(False, step.status, f"{step.error}; OpenMRS asked to wait {step.wait:.0f} s", True), tries
            if attempt == self.retry.retries:
                return step, tries
            wait = max(backoff(attempt, self.retry, self._rng), step.wait or 0.0)
            log.warning(
                "destination connection '%s': %s on %s; again in %.1f s (repeat %d of %d)",
                self.conn_id, step.error, resource["resourceType"], wait, attempt + 1, self.retry.retries,
            )  # fmt: skip
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns on its last attempt

    def _upsert(self, reference: str, resource: dict[str, Any], text: str) -> _Step:
        """``GET`` then ``POST`` or ``PUT`` (``PUT`` straight away when this destination wrote it);
        a ``PUT`` answered 404 becomes a ``POST``."""
        with self._lock:
            known = reference in self._written
        method = "PUT" if known else None
        if method is None:
            found = self._call("GET", f"{self.base}/{reference}")
            if isinstance(found, _Step):
                return found
            if found.status_code == 200:
                method = "PUT"
            elif found.status_code == 404:
                method = "POST"
            elif found.status_code == 410:
                return _Step(False, 410, "deleted (voided) at OpenMRS; restore it there or give it a new id")
            else:
                return _failed(found)
        if method == "PUT":
            answer = self._call("PUT", f"{self.base}/{reference}", text)
            if isinstance(answer, _Step) or answer.status_code != 404:
                return answer if isinstance(answer, _Step) else _done_or_failed(answer)
        answer = self._call("POST", f"{self.base}/{resource['resourceType']}", text)
        return answer if isinstance(answer, _Step) else _done_or_failed(answer)

    def _plain(self, item: Delivery) -> Result:
        """A request of the pipeline's own (a deleted document's ``DELETE``), sent once as it is."""
        url = self.base + "/" + (item.path or "").lstrip("/")
        answer = self._call(item.method or "POST", url, item.body)
        if isinstance(answer, _Step):
            return Result(item.doc_id, False, answer.status, error=answer.error, retryable=answer.retryable)
        step = _done_or_failed(answer)
        return Result(item.doc_id, step.ok, step.status, error=step.error, retryable=step.retryable)

    def _call(self, method: str, url: str, body: str | None = None) -> requests.Response | _Step:
        """One request; a ``_Step`` when it got no usable answer.

        :raises AuthError: 401/403 (after the session was renewed once), now and for every later request.
        """
        if self._refused is not None:
            raise self._refused
        with self._lock:
            self.requests += 1
        try:
            response = answer_or_reason(
                self._session, method, url, self.limits, conn_id=self.conn_id, system=SYSTEM,
                data=None if body is None else body.encode("utf-8"), timeout=self.timeout,
            )  # fmt: skip
        except AuthError as exc:
            self._refused = exc
            raise
        if isinstance(response, Unanswered):
            return _Step(False, response.status, response.reason, response.retryable)
        return response


class _Unreachable(Exception):
    """OpenMRS gave no usable answer while a payload was prepared: try the document again later."""

    def __init__(self, step: _Step) -> None:
        super().__init__(step.error)
        self.step = step


def _order(resources: list[Any]) -> list[int]:
    """Indices in sending order: what a resource refers to (inside the payload) before it, else the list's order.

    :raises Refusal: an item is not a resource with a type and an id, two share an id, or they refer
        to each other in a circle (OpenMRS could create none of them first).
    """
    index: dict[str, int] = {}
    for i, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise Refusal(f"resource {i}: not a FHIR resource (no resourceType)")
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            raise Refusal(
                f"resource {i} ({resource['resourceType']}): no id; each resource is sent by its deterministic id "
                "(fhir.ids.resource_id)"
            )
        reference = f"{resource['resourceType']}/{resource['id']}"
        if reference in index:
            raise Refusal(f"{reference} appears twice in the payload")
        index[reference] = i
    needs = [{index[t] for t in _references(r) if t in index and index[t] != i} for i, r in enumerate(resources)]
    order: list[int] = []
    done: set[int] = set()
    while len(order) < len(resources):
        ready = [i for i in range(len(resources)) if i not in done and needs[i] <= done]
        if not ready:
            circle = [
                f"{resources[i]['resourceType']}/{resources[i]['id']}" for i in range(len(resources)) if i not in done
            ]
            raise Refusal(f"the resources refer to each other in a circle: {', '.join(circle)}")
        order.append(ready[0])
        done.add(ready[0])
    return order


def _references(value: Any) -> set[str]:
    """Every literal ``Type/id`` reference inside ``value`` (not ``#contained``, not absolute URLs)."""
    found: set[str] = set()
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.count("/") == 1 and ":" not in reference:
            found.add(reference)
        for key, item in value.items():
            if key != "reference":
                found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a list element (none when it is not a list)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _failed(response: requests.Response) -> _Step:
    kind = classify(response.status_code)
    wait = retry_after(response.headers.get("Retry-After"))
    return _Step(False, response.status_code, _reason(response, reasons.FHIR), kind == "retryable", wait)


def _done_or_failed(response: requests.Response) -> _Step:
    if classify(response.status_code) == "delivered":
        return _Step(True, response.status_code)
    return _failed(response)


DESTINATION = OpenMrsDestination  # what ``destination.type: openmrs`` opens (see ``registry``)
