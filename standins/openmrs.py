"""An OpenMRS FHIR2 stand-in (KenyaEMR, Bahmni, O3 all serve the same module), as ``destinations.md`` §2 says it answers.

Nothing real is installable (a Java WAR and MySQL), so this encodes the module's contract:

* **Paths** (§2.1): FHIR R4 under ``/openmrs/ws/fhir2/R4/``, the session under
  ``/openmrs/ws/rest/v1/session``. ``GET …/metadata`` is a CapabilityStatement.
* **Auth** (§2.1, FHIR2's ``AuthenticationFilter``): HTTP Basic on any call, or the ``JSESSIONID``
  cookie that ``GET …/session`` with Basic sets (also echoed as ``sessionId``). A session ends after
  ``session_seconds``, after ``session_requests`` FHIR requests, or when a test calls
  ``expire_sessions()``; a request with an ended session and no Basic header gets 401, as does a
  wrong Basic login (``text/html`` "Not authenticated", the servlet's ``sendError``). The session
  endpoint answers a wrong login 200 ``{"authenticated": false}``. ``refuse_all`` makes every FHIR
  request 401 whatever it carries (a user whose account was disabled after login).
* **No bundles** (§2.2): no transaction/batch provider, so a POST to the base is HAPI's 400 for
  a request that names no resource type; **no conditional create**: ``If-None-Exist`` is ignored
  (a second POST without an id makes a second resource), and a ``PUT`` without an id is 400.
* **Ids** (§2.2, §2.7): a POSTed ``id`` becomes the resource's uuid (its id part); a POST of an id
  that exists is the database's uniqueness error (500); ``PUT Type/{uuid}`` of an unknown uuid is 404
  "Resource of type X with ID … is not known" (except the types listed in ``upsert``, the GP
  ``fhir2.upsert.supported.resources``); an id in the body that is not the URL's is 400; a
  deleted (voided) resource reads 410.
* **Writable types** (§2.2, §2.5): Patient, Encounter, Observation, Task, Location, Practitioner; ServiceRequest
  is read and search only (lab orders): a write is HAPI's 400 "does not know how to handle".
* **Patient** (§2.3): an identifier's ``type.text`` is matched against the identifier types' name
  or uuid and comes back as the type's *name*; an identifier with a ``system`` is kept only when
  the system is mapped (``identifier_systems``, module ≥2.0), otherwise dropped silently, as is one
  whose type is unknown; a Patient left without an identifier, or without a name, is 422 with
  OpenMRS's validation message. A gender outside the FHIR codes is HAPI's parse error (400).
* **References**: every ``Patient/…``, ``Practitioner/…``, ``Encounter/…`` and ``Location/…`` a
  resource names must exist (OpenMRS cannot save an encounter without its patient or location): 422 otherwise. An
  Encounter ``type`` coded in both the encounter-type and the visit-type system is 400 (§2.4).
* **Errors** are OperationOutcomes ``{"severity": "error", "code": "processing", "diagnostics"}``
  with the module's words (``BaseFhirService``); 401 is the servlet's HTML page.
* **Search** (§2.6): ``Patient?identifier=value|system|value``, ``Encounter?subject=``,
  ``Location?name=``, any type by ``_id``; ``_count`` (default 10, max 100); the next page is
  ``{base}?_getpages=<id>&_getpagesoffset=…&_count=…&_bundletype=searchset``, kept in a FIFO of
  100 searches (an evicted one is 410).

``log`` keeps ``(method, path, status)`` of every request (no bodies, no query values), so tests
see what was POSTed and PUT. With ``directory`` every write is appended to ``openmrs.jsonl`` there
(replayed on start), so the demo's second run finds what the first created.
"""

from __future__ import annotations

import base64
import copy
import csv
import hmac
import json
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

FHIR_BASE = "/openmrs/ws/fhir2/R4"
SESSION_PATH = "/openmrs/ws/rest/v1/session"
COOKIE = "JSESSIONID"
FHIR_JSON = "application/fhir+json;charset=utf-8"
WRITABLE = ("Patient", "Encounter", "Observation", "Task", "Location", "Practitioner")
READABLE = (*WRITABLE, "ServiceRequest")
DEFAULT_PAGE, MAX_PAGE, KEPT_SEARCHES = 10, 100, 100
GENDERS = ("male", "female", "other", "unknown")
ENCOUNTER_TYPE_SYSTEM = "http://fhir.openmrs.org/code-system/encounter-type"
VISIT_TYPE_SYSTEM = "http://fhir.openmrs.org/code-system/visit-type"

#: Identifier types a stand-in knows unless told otherwise: uuid -> name. KenyaEMR's (§2.9),
#: Bahmni's primary one (§2.10), OpenMRS's own, and the CHT ones the CHT interop mediator expects (§2.5).
IDENTIFIER_TYPES = {
    "05ee9cf4-7242-4a17-b4d4-00f707265c8a": "Unique Patient Number",
    "f85081e2-b4be-4e48-b3a4-7994b69bb101": "National Unique patient identifier",
    "49af6cdc-7968-4abb-bf46-de10d7f4859f": "National ID",
    "dfacd928-0370-4315-99d7-6ec1c9f7ae76": "OpenMRS ID",
    "b4d66522-11fc-45c7-83e3-39a1af21ae0d": "Patient Clinic Number",
    "81433852-3f10-11e4-adec-0800271c1b75": "Bahmni Id",
    "3f9c1bd4-6b5d-4a3e-9c2e-1f0a8b7c6d5e": "CHT Patient ID",
    "9b6a1d2c-4e3f-4a5b-8c7d-0e1f2a3b4c5d": "CHT Document ID",
}
#: The demo's facilities as OpenMRS Locations: the table the ``openmrs`` pipelines read.
ROOT = Path(__file__).resolve().parents[1]
LOCATION_TABLE = ROOT / "include" / "places" / "emr_locations.csv"
DEFAULT_LOCATION = ("8d6c993e-c2cc-11de-8d13-0010c6dffd0f", "Unknown Location")  # OpenMRS ships it


def table_locations(path: Path = LOCATION_TABLE) -> dict[str, str]:
    """Location uuid -> name, from a ``cht_place,location_uuid,name`` table, plus OpenMRS's own."""
    with open(path, encoding="utf-8-sig", newline="") as table:
        rows = {row["location_uuid"]: row.get("name") or row["location_uuid"] for row in csv.DictReader(table)}
    return {DEFAULT_LOCATION[0]: DEFAULT_LOCATION[1], **rows}


def outcome(diagnostics: str, code: str = "processing") -> dict[str, Any]:
    """HAPI's OperationOutcome for a ``BaseServerResponseException`` (the module's error bodies)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


class Refused(Exception):
    """An error answer: status and OperationOutcome."""

    def __init__(self, status: int, diagnostics: str, code: str = "processing") -> None:
        super().__init__(diagnostics)
        self.status = status
        self.body = outcome(diagnostics, code)


class OpenMrs(BackgroundHttpServer):
    """The FHIR2 module of one OpenMRS, in memory (or in ``directory``), on loopback."""

    thread_name = "openmrs"

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        identifier_types: dict[str, str] | None = None,
        identifier_systems: dict[str, str] | None = None,
        locations: dict[str, str] | None = None,
        upsert: tuple[str, ...] = (),
        session_seconds: float | None = None,
        session_requests: int | None = None,
        directory: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.credentials = credentials or ("admin", secrets.token_urlsafe(12))
        self.identifier_types = dict(IDENTIFIER_TYPES if identifier_types is None else identifier_types)
        self.identifier_systems = dict(identifier_systems or {})  # FHIR system URI -> identifier type uuid
        self.upsert = frozenset(upsert)
        self.session_seconds = session_seconds
        self.session_requests = session_requests
        self.refuse_all = False
        #: Called with (method, path) before a FHIR request is handled: a test's way to change the
        #: server between two requests (``purge`` a resource after its GET).
        self.before: Callable[[str, str], None] | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._file = None if directory is None else Path(directory) / "openmrs.jsonl"
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}
        self._voided: set[tuple[str, str]] = set()
        self._sessions: dict[str, list[float]] = {}  # id -> [started, requests served]
        self._searches: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.log: list[tuple[str, str, int]] = []
        # requests being answered: their log line is written after the answer went out, so a
        # reader of the log waits for them (``requests_made``) instead of racing the handler thread
        self._in_flight = 0
        self._settled = threading.Condition(self._lock)
        self.logins = 0
        self._load()
        for location_id, name in (table_locations() if locations is None else locations).items():
            self._resources.setdefault(("Location", location_id), _location(location_id, name))

    @property
    def fhir_url(self) -> str:
        """The FHIR base a Connection's host names."""
        return self.url + FHIR_BASE

    # -- what tests read and change ------------------------------------------------------------

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """Every stored resource of a type (voided ones left out), as the server would return them."""
        with self._lock:
            return [
                copy.deepcopy(r)
                for (t, i), r in self._resources.items()
                if t == resource_type and (t, i) not in self._voided
            ]

    def resources_by_id(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """``resources`` keyed by id."""
        return {r["id"]: r for r in self.resources(resource_type)}

    def requests_made(self, method: str | None = None, resource_type: str | None = None) -> list[tuple[str, str, int]]:
        """``(method, path, status)`` of the FHIR requests so far, filtered by method and resource type."""
        with self._settled:  # the answers already sent have their line (bounded: a held request)
            self._settled.wait_for(lambda: self._in_flight == 0, timeout=5)
            rows = list(self.log)
        prefix = f"{FHIR_BASE}/{resource_type}" if resource_type else FHIR_BASE
        return [r for r in rows if (method is None or r[0] == method) and r[1].startswith(prefix)]

    def purge(self, resource_type: str, uuid_: str) -> None:
        """Remove a resource for good (REST ``DELETE …?purge=true``), as if it had never existed."""
        with self._lock:
            self._resources.pop((resource_type, uuid_), None)
            self._voided.discard((resource_type, uuid_))
            self._save({"purge": [resource_type, uuid_]})

    def expire_sessions(self) -> None:
        """End every session now (the server's session timeout passed)."""
        with self._lock:
            self._sessions.clear()

    # -- the server -------------------------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(StandInHandler):
            server_version = "Apache-Coyote/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                server._handle(self, "PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                server._handle(self, "DELETE")

        return Handler

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._answer(h, method)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._settled.notify_all()

    def _answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if parts.path == SESSION_PATH:
            status = self._session_request(h, method)
        elif parts.path == FHIR_BASE or parts.path.startswith(FHIR_BASE + "/"):
            if self.before is not None:
                self.before(method, parts.path)
            status = self._fhir_request(h, method, parts.path[len(FHIR_BASE) :].strip("/"), parts.query, body)
        else:
            status = _send(h, 404, outcome(f"{parts.path} is not an OpenMRS path", "not-found"))
        with self._lock:
            self.log.append((method, parts.path, status))

    # -- auth ----------------------------------------------------------------------------------

    def _basic(self, h: BaseHTTPRequestHandler) -> bool | None:
        """None: no Basic header; else whether it names the user."""
        header = h.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None
        try:
            login, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        user, secret = self.credentials
        return hmac.compare_digest(login, user) and hmac.compare_digest(password, secret)

    def _cookie(self, h: BaseHTTPRequestHandler) -> str | None:
        for part in (h.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value
        return None

    def _live_session(self, session_id: str | None, count: bool) -> bool:
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is None:
                return False
            ended = (self.session_seconds is not None and self._clock() - session[0] >= self.session_seconds) or (
                self.session_requests is not None and session[1] >= self.session_requests
            )
            if ended:
                del self._sessions[session_id or ""]
                return False
            if count:
                session[1] += 1
            return True

    def _session_request(self, h: BaseHTTPRequestHandler, method: str) -> int:
        current = self._cookie(h)
        if method == "DELETE":
            with self._lock:
                self._sessions.pop(current or "", None)
            return _send(h, 204, None)
        if method != "GET":
            return _send(h, 405, {"error": {"message": f"Request method '{method}' not supported"}})
        basic = self._basic(h)
        if basic:
            with self._lock:
                self.logins += 1
                session_id = secrets.token_hex(16).upper()
                self._sessions[session_id] = [self._clock(), 0]
            user, _ = self.credentials
            answer = {
                "sessionId": session_id,
                "authenticated": True,
                "user": {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, user)), "display": user, "username": user},
                "locale": "en_GB",
                "allowedLocales": ["en", "en_GB", "fr", "sw"],
            }
            return _send(h, 200, answer, {"Set-Cookie": f"{COOKIE}={session_id}; Path=/openmrs; HttpOnly"})
        if basic is None and self._live_session(current, count=False):
            return _send(h, 200, {"sessionId": current, "authenticated": True})
        anonymous = secrets.token_hex(16).upper()  # Tomcat opens a session for anyone; it is not logged in
        headers = {"Set-Cookie": f"{COOKIE}={anonymous}; Path=/openmrs; HttpOnly"}
        return _send(h, 200, {"sessionId": anonymous, "authenticated": False}, headers)

    def _authenticated(self, h: BaseHTTPRequestHandler) -> bool:
        if self.refuse_all:
            return False
        if self._live_session(self._cookie(h), count=True):
            return True
        return self._basic(h) is True  # an ended session logs out; Basic then logs in for this request

    # -- FHIR ----------------------------------------------------------------------------------

    def _fhir_request(self, h: BaseHTTPRequestHandler, method: str, path: str, query: str, body: bytes) -> int:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if method == "GET" and path == "metadata":
            return _send(h, 200, self._capabilities())
        if not self._authenticated(h):
            return _not_authenticated(h)
        segments = [s for s in path.split("/") if s]
        try:
            if not segments:
                if method == "GET" and "_getpages" in params:
                    return _send(h, 200, self._page(params))
                raise Refused(
                    400,
                    "This is the base URL of FHIR server. Unable to handle this request, as it does not contain a "
                    "resource type or operation name.",
                )
            resource_type = segments[0]
            if resource_type not in READABLE:
                raise Refused(
                    404, f"Unknown resource type '{resource_type}' - Server knows how to handle: {list(READABLE)}"
                )
            if len(segments) > 2 or (method in ("POST", "PUT", "DELETE") and resource_type not in WRITABLE):
                raise Refused(
                    400,
                    f"Invalid request: The FHIR endpoint on this server does not know how to handle {method} "
                    f"operation[{path}] with parameters [{sorted(params)}]",
                    "not-supported",
                )
            uuid_ = segments[1] if len(segments) == 2 else None
            if method == "GET" and uuid_ is None:
                return _send(h, 200, self._search(resource_type, params))
            if method == "GET":
                return _send(h, 200, self._read(resource_type, uuid_))
            if method == "DELETE" and uuid_ is not None:
                self._void(resource_type, uuid_)
                deleted = {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": "Successfully deleted 1 resource(s)",
                }
                return _send(h, 200, {"resourceType": "OperationOutcome", "issue": [deleted]})
            if method == "POST" and uuid_ is None:
                created = self._create(resource_type, _parse(body, resource_type))
                location = f"{self.fhir_url}/{resource_type}/{created['id']}"
                return _send(h, 201, created, {"Location": location})
            if method == "PUT" and uuid_ is not None:
                return _send(h, 200, self._update(resource_type, uuid_, _parse(body, resource_type)))
            if method == "PUT":
                raise Refused(
                    400, "Can not update resource, request URL must contain an ID element for update (PUT) operation"
                )
            raise Refused(
                400,
                f"Invalid request: The FHIR endpoint on this server does not know how to handle {method} "
                f"operation[{path}] with parameters [{sorted(params)}]",
                "not-supported",
            )
        except Refused as refused:
            return _send(h, refused.status, refused.body)

    def _read(self, resource_type: str, uuid_: str) -> dict[str, Any]:
        with self._lock:
            key = (resource_type, uuid_)
            if key not in self._resources:
                raise Refused(404, f"Resource of type {resource_type} with ID {uuid_} is not known", "not-found")
            if key in self._voided:
                raise Refused(410, f"Resource of type {resource_type} with ID {uuid_} is gone/deleted", "deleted")
            return copy.deepcopy(self._resources[key])

    def _create(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        given = str(resource.get("id") or "")
        uuid_ = given.rsplit("/", 1)[-1] if given else str(uuid.uuid4())  # the id *part* (FM2-570)
        stored = self._translate(resource_type, uuid_, resource)
        with self._lock:
            if (resource_type, uuid_) in self._resources:
                raise Refused(
                    500,
                    f"could not execute statement; SQL [n/a]; constraint [uuid]; nested exception is "
                    f"org.hibernate.exception.ConstraintViolationException: Duplicate entry '{uuid_}' for key 'uuid'",
                    "exception",
                )
            self._resources[(resource_type, uuid_)] = stored
            self._save({"resource": stored})
        return copy.deepcopy(stored)

    def _update(self, resource_type: str, uuid_: str, resource: dict[str, Any]) -> dict[str, Any]:
        if not resource.get("id"):
            raise Refused(400, f"{resource_type} resource is missing id.")
        if str(resource["id"]).rsplit("/", 1)[-1] != uuid_:
            raise Refused(400, f"{resource_type} id does not match resource id.")
        with self._lock:
            exists = (resource_type, uuid_) in self._resources
        if not exists and resource_type not in self.upsert:
            raise Refused(404, f"Resource of type {resource_type} with ID {uuid_} is not known", "not-found")
        stored = self._translate(resource_type, uuid_, resource)
        with self._lock:
            self._resources[(resource_type, uuid_)] = stored
            self._voided.discard((resource_type, uuid_))
            self._save({"resource": stored})
        return copy.deepcopy(stored)

    def _void(self, resource_type: str, uuid_: str) -> None:
        with self._lock:
            if (resource_type, uuid_) not in self._resources:
                raise Refused(404, f"Resource of type {resource_type} with ID {uuid_} is not known", "not-found")
            self._voided.add((resource_type, uuid_))
            self._save({"void": [resource_type, uuid_]})

    # -- translation: what OpenMRS keeps of a resource -----------------------------------------

    def _translate(self, resource_type: str, uuid_: str, resource: dict[str, Any]) -> dict[str, Any]:
        stored = {k: copy.deepcopy(v) for k, v in resource.items() if k not in ("id", "meta", "text")}
        stored = {"resourceType": resource_type, "id": uuid_, **stored}
        stored["meta"] = {"lastUpdated": datetime.now(UTC).isoformat(timespec="milliseconds")}
        if resource_type == "Patient":
            self._patient(stored)
        else:
            self._references_exist(resource_type, stored)
        if resource_type == "Encounter":
            systems = {c.get("system") for t in stored.get("type") or [] for c in t.get("coding") or []}
            if {ENCOUNTER_TYPE_SYSTEM, VISIT_TYPE_SYSTEM} <= systems:
                raise Refused(400, "Encounter type is ambiguous: both an encounter type and a visit type are given")
        return stored

    def _patient(self, patient: dict[str, Any]) -> None:
        gender = patient.get("gender")
        if gender is not None and gender not in GENDERS:
            raise Refused(
                400,
                f'[element="gender"] Invalid attribute value "{gender}": Unknown AdministrativeGender code '
                f"'{gender}'",
            )
        kept = []
        for identifier in patient.get("identifier") or []:
            type_uuid = self._identifier_type(identifier)
            if type_uuid is None:
                continue  # PatientIdentifierTranslatorImpl returns null: the identifier is dropped
            entry = {
                "id": str(identifier.get("id") or uuid.uuid4()),
                "use": "official" if identifier.get("use") == "official" else "usual",
                "type": {"text": self.identifier_types[type_uuid]},
                "value": identifier.get("value"),
            }
            entry.update({k: v for k, v in identifier.items() if k == "extension"})
            kept.append(entry)
        patient["identifier"] = kept
        reasons = []
        if not kept:
            reasons.append("identifiers: Patient must have at least one identifier")
        if not [n for n in patient.get("name") or [] if n.get("family") or n.get("given")]:
            reasons.append("names: Patient must have at least one name with a given or family name")
        if reasons:
            raise Refused(422, f"'Patient#null' failed to validate with reason: {', '.join(reasons)}")
        for identifier in kept:
            self._references_exist("Patient", identifier)

    def _identifier_type(self, identifier: dict[str, Any]) -> str | None:
        """The uuid of the identifier's type (FhirPatientServiceImpl), or None when it has none."""
        if identifier.get("system"):
            return self.identifier_systems.get(identifier["system"])  # unmapped: silently dropped
        text = str((identifier.get("type") or {}).get("text") or "")
        if text in self.identifier_types:
            return text
        for type_uuid, name in self.identifier_types.items():
            if name.casefold() == text.casefold():
                return type_uuid
        return None

    def _references_exist(self, resource_type: str, resource: Any) -> None:
        for path, target in _references(resource):
            target_type, _, target_id = target.partition("/")
            with self._lock:
                known = (target_type, target_id) in self._resources and (target_type, target_id) not in self._voided
            if not known and target_type in ("Patient", "Location", "Encounter", "Practitioner"):
                field_name = path.split(".")[0]
                raise Refused(
                    422,
                    f"'{resource_type}#null' failed to validate with reason: {field_name}: {target} does not exist",
                )

    # -- search ----------------------------------------------------------------------------------

    def _search(self, resource_type: str, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            found = [
                copy.deepcopy(r)
                for (t, i), r in self._resources.items()
                if t == resource_type and (t, i) not in self._voided and _matches(r, params)
            ]
        try:
            count = min(int(params.get("_count") or DEFAULT_PAGE), MAX_PAGE)
        except ValueError:
            raise Refused(400, f"Invalid _count value: {params.get('_count')}") from None
        search_id = str(uuid.uuid4())
        with self._lock:
            self._searches[search_id] = found
            while len(self._searches) > KEPT_SEARCHES:
                self._searches.popitem(last=False)
        return self._bundle(search_id, found, 0, max(count, 1))

    def _page(self, params: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            found = self._searches.get(params["_getpages"])
        if found is None:
            raise Refused(410, f'Search ID "{params["_getpages"]}" does not exist and may have expired', "not-found")
        try:
            offset, count = int(params.get("_getpagesoffset") or 0), int(params.get("_count") or DEFAULT_PAGE)
        except ValueError:
            raise Refused(400, "Invalid paging parameters") from None
        return self._bundle(params["_getpages"], found, max(offset, 0), min(max(count, 1), MAX_PAGE))

    def _bundle(self, search_id: str, found: list[dict[str, Any]], offset: int, count: int) -> dict[str, Any]:
        page = found[offset : offset + count]
        links = [{"relation": "self", "url": f"{self.fhir_url}?_getpages={search_id}&_getpagesoffset={offset}"}]
        if offset + count < len(found):
            links.append({
                "relation": "next",
                "url": f"{self.fhir_url}?_getpages={search_id}&_getpagesoffset={offset + count}&_count={count}"
                "&_bundletype=searchset",
            })  # fmt: skip
        return {
            "resourceType": "Bundle",
            "id": search_id,
            "type": "searchset",
            "total": len(found),
            "link": links,
            "entry": [{"fullUrl": f"{self.fhir_url}/{r['resourceType']}/{r['id']}", "resource": r} for r in page],
        }

    def _capabilities(self) -> dict[str, Any]:
        interactions = {
            "Patient": ("read", "create", "update", "patch", "delete", "search-type"),
            "Encounter": ("read", "create", "update", "patch", "delete", "search-type"),
            "Observation": ("read", "create", "update", "patch", "delete", "search-type"),
            "Task": ("read", "create", "update", "patch", "delete", "search-type"),
            "Location": ("read", "create", "update", "patch", "delete", "search-type"),
            "Practitioner": ("read", "create", "update", "patch", "delete", "search-type"),
            "ServiceRequest": ("read", "search-type"),
        }
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "application/fhir+xml"],
            "software": {"name": "OpenMRS FHIR Server", "version": "2.2.0"},
            "implementation": {"description": "OpenMRS FHIR2 (stand-in)", "url": self.fhir_url},
            "rest": [{
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": c} for c in codes], "updateCreate": t in self.upsert}
                    for t, codes in interactions.items()
                ],
            }],
        }  # fmt: skip

    # -- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        """Replay the journal: each write as it happened (a resource stored, voided or purged)."""
        if self._file is None or not self._file.exists():
            return
        for line in self._file.read_text().splitlines():
            entry = json.loads(line)
            if "resource" in entry:
                resource = entry["resource"]
                self._resources[(resource["resourceType"], resource["id"])] = resource
                self._voided.discard((resource["resourceType"], resource["id"]))
            elif "void" in entry:
                self._voided.add(tuple(entry["void"]))
            elif "purge" in entry:
                self._resources.pop(tuple(entry["purge"]), None)
                self._voided.discard(tuple(entry["purge"]))

    def _save(self, entry: dict[str, Any]) -> None:
        """Append one write to the journal (called with the lock held): a write costs one line."""
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        with open(self._file, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(entry) + "\n")


def _location(location_id: str, name: str) -> dict[str, Any]:
    return {"resourceType": "Location", "id": location_id, "name": name, "status": "active"}


def _parse(body: bytes, resource_type: str) -> dict[str, Any]:
    try:
        resource = json.loads(body or b"null")
    except ValueError as exc:
        raise Refused(400, f"Failed to parse request body as JSON resource. Error was: {exc}") from None
    if not isinstance(resource, dict):
        raise Refused(400, "Failed to parse request body as JSON resource. Error was: not a JSON object")
    found = resource.get("resourceType")
    if found != resource_type:
        raise Refused(400, f'Incorrect resource type found, expected "{resource_type}" but found "{found}"')
    return resource


def _references(value: Any, path: str = "") -> list[tuple[str, str]]:
    """``(path, "Type/id")`` of every literal ``Type/id`` reference in ``value``."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and reference.count("/") == 1:
            found.append((path, reference))
        for key, item in value.items():
            found += _references(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            found += _references(item, path)
    return found


def _matches(resource: dict[str, Any], params: dict[str, str]) -> bool:
    for name, wanted in params.items():
        if name.startswith("_") and name != "_id":
            continue
        if name == "_id" and resource.get("id") != wanted:
            return False
        if name == "identifier":
            system, _, value = wanted.rpartition("|")
            values = [
                i.get("value")
                for i in resource.get("identifier") or []
                if not system or (i.get("type") or {}).get("text") == system or i.get("system") == system
            ]
            if value not in values:
                return False
        if name in ("subject", "patient"):
            target = wanted if "/" in wanted else f"Patient/{wanted}"
            if (resource.get("subject") or resource.get("for") or {}).get("reference") != target:
                return False
        if name == "name" and wanted.casefold() not in json.dumps(resource.get("name", "")).casefold():
            return False
    return True


def _send(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> int:
    """A FHIR JSON answer (an empty one for ``None``); the status, for the request log."""
    if body is None:
        _send_raw(h, status, b"", None)
    else:
        send_json(h, status, body, headers, content_type=FHIR_JSON)
    return status


def _send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str | None) -> None:
    try:
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    except OSError:
        h.close_connection = True


def _not_authenticated(h: BaseHTTPRequestHandler) -> int:
    """Tomcat's error page for ``sendError(401, "Not authenticated")``."""
    page = (
        '<!doctype html><html lang="en"><head><title>HTTP Status 401 – Unauthorized</title></head><body>'
        "<h1>HTTP Status 401 – Unauthorized</h1><p><b>Message</b> Not authenticated</p></body></html>"
    )
    _send_raw(h, 401, page.encode(), "text/html;charset=utf-8")
    return 401


# -- the sandbox's two OpenMRS distributions (``make demo``, ``make airflow``) ----------------------

#: Identifier types each distribution knows (uuid -> name): KenyaEMR's (§2.9), Bahmni's (§2.10),
#: each with the CHT types an integration adds once (the CHT interop mediator's names, §2.5).
CHT_TYPES = {k: v for k, v in IDENTIFIER_TYPES.items() if v.startswith("CHT ")}
DISTRIBUTIONS = {
    "kenyaemr": {
        **{k: v for k, v in IDENTIFIER_TYPES.items() if v not in ("Bahmni Id",) and not v.startswith("CHT ")},
        **CHT_TYPES,
    },
    "bahmni": {
        "81433852-3f10-11e4-adec-0800271c1b75": "Bahmni Id",
        "dfacd928-0370-4315-99d7-6ec1c9f7ae76": "OpenMRS ID",
        **CHT_TYPES,
    },
}


def start_distributions(home: Path, password: str) -> dict[str, OpenMrs]:
    """A KenyaEMR and a Bahmni stand-in, each keeping its resources under ``home/<name>``."""
    started: dict[str, OpenMrs] = {}
    try:
        for name, types in DISTRIBUTIONS.items():
            server = OpenMrs(credentials=("admin", password), identifier_types=types, directory=home / name)
            started[name] = server.start()
    except BaseException:
        for server in started.values():
            server.stop()
        raise
    return started


def connections(servers: dict[str, OpenMrs]) -> dict[str, str]:
    """``AIRFLOW_CONN_OPENMRS_<NAME>``: host = the server root (the pipelines add the FHIR2 path)."""
    out = {}
    for name, server in servers.items():
        login, password = server.credentials
        conn = {"conn_type": "http", "host": server.url, "login": login, "password": password}
        out[f"AIRFLOW_CONN_OPENMRS_{name.upper()}"] = json.dumps(conn)
    return out


def print_created(servers: dict[str, OpenMrs]) -> None:
    """What the demo's OpenMRS pipelines left at each stand-in: counts, and a sample without names."""
    if not servers:
        return
    print()
    print("OpenMRS FHIR2 stand-ins (resources held, and this run's writes)")
    for name, server in servers.items():
        held = {kind: len(server.resources(kind)) for kind in ("Patient", "Practitioner", "Task", "Encounter")}
        posts = len(server.requests_made("POST"))
        puts = len(server.requests_made("PUT"))
        refused = len([r for r in server.requests_made() if r[0] in ("POST", "PUT") and r[2] >= 400])
        counts = ", ".join(f"{n} {kind}" for kind, n in held.items() if n)
        print(f"  {name:<9} at {server.fhir_url}: {counts or 'nothing'}; {posts} POST, {puts} PUT, {refused} refused")
        for task in server.resources("Task")[:1]:
            patient = server.resources_by_id("Patient")[task["for"]["reference"].partition("/")[2]]
            types = [i["type"]["text"] for i in patient["identifier"]]
            print(f"    e.g. Task/{task['id']} for {task['for']['reference']} at {task['location']['reference']}")
            print(f"         its Patient's identifier types: {', '.join(types)}")
        if held["Patient"] and not held["Task"]:
            patient = server.resources("Patient")[0]
            types = [i["type"]["text"] for i in patient["identifier"]]
            print(f"    e.g. Patient/{patient['id']} with identifier types: {', '.join(types)}")
