"""A local stand-in for the CHT API (cht-core ``api/src``) in front of a local CouchDB server.

The integration talks to CHT through a handful of API endpoints and the ``/medic`` proxy. Tests
and the demo need those to answer the way a real CHT does (status codes and bodies as in
``cht.md`` §2), without running cht-core. This server implements:

* auth (§2.1): HTTP Basic, resolved by forwarding the ``Authorization`` header to CouchDB
  ``GET /_session``, so real CouchDB users (``couchdb.create_user``) are the CHT users. Online and
  offline users, permissions from ``app_settings.permissions`` (``admin``/``_admin`` bypass), and
  the error bodies of ``serverUtils.error`` (JSON only when the client prefers JSON);
* ``POST /api/v1|v2/records`` (§2.2) with JSON forms from ``app_settings.forms`` and the
  ``update_clinics`` contact lookup. ``application/x-www-form-urlencoded`` SMS is stored as a
  plain message (``data_record`` without ``form``, with ``sms_message``); SMS form parsing is not
  implemented;
* ``GET|POST /api/v1/hydrate`` (§2.3) and ``GET|POST /api/v1/contacts-by-phone`` (§2.4);
* legacy ``POST /api/v1/people`` and ``POST /api/v1/places`` (§2.5);
* datasource ``GET /api/v1/person/{uuid}``, ``GET /api/v1/place/{uuid}`` (``?with_lineage=true``)
  ``POST /api/v1/person`` and ``PUT /api/v1/person/{uuid}`` with the 5.2 rules (§2.6; the 400
  messages of an update are the stand-in's own words: cht.md gives the rules, not the texts);
* ``/medic/...`` proxied to ``/<db>/...`` with the caller's credentials (§2.9).

app_settings are the ``settings`` key of the db's ``settings`` doc, re-read on every request so a
test can change them. Everything the API itself reads or writes uses the admin credentials, as
cht-core's API does. Logs hold method, path, status and user name only: never bodies or query
strings (they hold phone numbers and patient data).

Usage::

    prepare_db(couch.url, couch.admin_auth, "medic")
    with ChtApi(couch.url, couch.admin_auth, db="medic") as api:
        requests.get(api.url + "/api/v1/hydrate", params=..., auth=(user, password))
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import phonenumbers
import requests

from standins.couchdb import create_user
from standins.fixed_docs import DESIGN_DOC, SETTINGS_DOC
from standins.http_server import BackgroundHttpServer, StandInHandler

log = logging.getLogger("standins.cht_api")

HTTP_TIMEOUT = (5, 60)
MAX_BODY_BYTES = 32 * 1024 * 1024  # MAX_REQUEST_SIZE in cht-core
BASIC_REALM = 'Basic realm="Medic Web Services"'
HARD_CODED_TYPES = ("district_hospital", "health_center", "clinic", "person")
ONLINE_ROLES = frozenset({"_admin", "admin", "mm-online"})
ADMIN_ROLES = frozenset({"_admin", "admin"})
FIREWALL_BODY = {"code": 403, "error": "forbidden", "details": "Offline users are not allowed access to this endpoint"}
PATIENT_REFS = (("patient_id",), ("fields", "patient_id"), ("fields", "patient_uuid"))
PLACE_REFS = (("place_id",), ("fields", "place_id"), ("fields", "place_uuid"))
ISO_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")

# Users prepare_db creates: one online integration user, one offline CHW.
ONLINE_USER_ROLES = ["integration", "mm-online"]
OFFLINE_USER_ROLES = ["chw"]


# -- errors and responses ------------------------------------------------------------------------
class ApiError(Exception):
    """An error answered the way cht-core's ``serverUtils.error`` does.

    ``status >= 500`` becomes ``Server error`` with ``details`` = the public message (a
    ``PublicError``) or nothing (any other error), as in cht-core.
    """

    def __init__(self, status: int, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def public_error(message: str) -> ApiError:
    """cht-core's ``PublicError``: a 500 whose message is shown to the client as ``details``."""
    return ApiError(500, "Server error", message)


class Unauthorized(Exception):
    """No valid session: 401, JSON or a Basic prompt depending on ``Accept``."""


class Forbidden(Exception):
    """The offline-user firewall (always JSON in cht-core: it uses ``res.json``)."""


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode())


def js_json(obj: Any) -> str:
    """``JSON.stringify`` spelling (no spaces), for messages that embed the input."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# -- content negotiation -------------------------------------------------------------------------
def prefers_json(accept: str | None) -> bool:
    """Express ``req.accepts(['text', 'json']) === 'json'`` (negotiator's rules).

    Each of ``text/plain`` and ``application/json`` takes its most specific matching Accept
    entry; the winner has the higher q, then the more specific match, then the entry listed
    first by the client; a full tie (e.g. ``*/*``) or a missing header goes to ``text``.
    """
    if not accept:
        return False
    entries = []
    for order, part in enumerate(accept.split(",")):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        entries.append((media.strip().lower(), q, order))
    ranked = []
    for index, full in enumerate(("text/plain", "application/json")):
        main, sub = full.split("/")
        best: tuple[int, float, int] | None = None
        for media, q, order in entries:
            m_main, _, m_sub = media.partition("/")
            if m_main not in (main, "*") or m_sub not in (sub, "*"):
                continue
            spec = (4 if m_main == main else 0) | (2 if m_sub == sub else 0)
            if best is None or (spec, q) > (best[0], best[1]):
                best = (spec, q, order)
        if best is not None and best[1] > 0:
            ranked.append((-best[1], -best[0], best[2], index, full))
    return bool(ranked) and min(ranked)[-1] == "application/json"


# -- users and permissions -----------------------------------------------------------------------
@dataclass(frozen=True)
class UserCtx:
    name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return bool(ADMIN_ROLES.intersection(self.roles))


def is_online(settings: dict[str, Any], roles: tuple[str, ...]) -> bool:
    """Online = an online role, or a role defined in app_settings.roles without ``offline: true``.
    A role that is not defined at all counts as offline (cht.md §2.1)."""
    if ONLINE_ROLES.intersection(roles):
        return True
    defined = settings.get("roles") or {}
    return any(role in defined and not (defined[role] or {}).get("offline") for role in roles)


def has_permissions(settings: dict[str, Any], user: UserCtx, perms: list[str], any_of: bool = False) -> bool:
    """``auth.hasAllPermissions`` (or any, for the 5.2 ``x or y`` endpoints); admins bypass."""
    if user.is_admin:
        return True
    table = settings.get("permissions") or {}
    granted = [bool(set(table.get(perm) or []).intersection(user.roles)) for perm in perms]
    return any(granted) if any_of else all(granted)


# -- contact types -------------------------------------------------------------------------------
def type_id(doc: dict[str, Any]) -> str | None:
    """The effective contact type id (``contact_type`` for ``type: contact``)."""
    if not isinstance(doc, dict):
        return None
    return doc.get("contact_type") if doc.get("type") == "contact" else doc.get("type")


def contact_type(settings: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    wanted = type_id(doc)
    return next((t for t in settings.get("contact_types") or [] if t.get("id") == wanted), None)


def is_person(settings: dict[str, Any], doc: dict[str, Any]) -> bool:
    found = contact_type(settings, doc)
    return bool(found and found.get("person"))


def is_place(settings: dict[str, Any], doc: dict[str, Any]) -> bool:
    found = contact_type(settings, doc)
    return bool(found and not found.get("person"))


def stored_type(type_name: str) -> dict[str, str]:
    """cht.md §2.6: the hard-coded ids are stored as ``type``; other configured types as
    ``type: contact`` + ``contact_type``."""
    if type_name in HARD_CODED_TYPES:
        return {"type": type_name}
    return {"type": "contact", "contact_type": type_name}


def minify(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A doc's lineage as stored: ``{_id, parent: {_id, ...}}``."""
    if not doc or not doc.get("_id"):
        return None
    out: dict[str, Any] = {"_id": doc["_id"]}
    parent = minify(doc.get("parent")) if isinstance(doc.get("parent"), dict) else None
    if parent:
        out["parent"] = parent
    return out


# -- phone numbers -------------------------------------------------------------------------------
def normalize_phone(settings: dict[str, Any], phone: Any) -> str | None:
    """E.164 for a valid number, read with ``default_country_code``'s region; None otherwise."""
    if not isinstance(phone, str) or not phone.strip():
        return None
    region = None
    code = settings.get("default_country_code")
    if code:
        try:
            region = phonenumbers.region_code_for_country_code(int(code))
        except (TypeError, ValueError):
            region = None
    try:
        parsed = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# -- dates -----------------------------------------------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def parse_moment(value: Any) -> int | None:
    """Epoch ms for what ``moment(value)`` would accept here: a number, a 13+ digit string, or an
    ISO 8601 date/date-time. Date-only and zone-less values are read as UTC (the server zone of
    CHT's containers). None when unparsable (moment's ``NaN``, stored as ``null``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d{13,}", text):
        return int(text)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(parsed.timestamp() * 1000)


# -- CouchDB access (admin) ----------------------------------------------------------------------
class Couch:
    """The API's own admin access to CouchDB; one ``requests.Session`` per handler thread."""

    def __init__(self, couch_url: str, admin_auth: tuple[str, str], db: str) -> None:
        self.url = couch_url.rstrip("/")
        self.db = db
        self.db_url = f"{self.url}/{quote(db, safe='')}"
        self.admin_auth = admin_auth
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self.admin_auth
            self._local.session = session
        return session

    def session_user(self, headers: dict[str, str]) -> UserCtx | None:
        """``auth.getUserCtx``: forward the caller's credentials to ``GET /_session``."""
        r = requests.get(f"{self.url}/_session", headers=headers, timeout=HTTP_TIMEOUT)
        if r.status_code != 200:
            return None
        ctx = r.json().get("userCtx") or {}
        if not ctx.get("name"):
            return None
        return UserCtx(ctx["name"], tuple(ctx.get("roles") or []))

    def settings(self) -> dict[str, Any]:
        doc = self.get("settings")
        return (doc or {}).get("settings") or {}

    def get(self, doc_id: str) -> dict[str, Any] | None:
        r = self.http.get(f"{self.db_url}/{quote(doc_id, safe='')}", timeout=HTTP_TIMEOUT)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def get_many(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Existing, not deleted docs by id, in one ``_all_docs`` request."""
        wanted = sorted({i for i in ids if isinstance(i, str) and i})
        if not wanted:
            return {}
        r = self.http.post(
            f"{self.db_url}/_all_docs", params={"include_docs": "true"}, json={"keys": wanted}, timeout=HTTP_TIMEOUT
        )
        r.raise_for_status()
        return {row["id"]: row["doc"] for row in r.json()["rows"] if row.get("doc")}

    def view_ids(self, view: str, key: Any) -> list[str]:
        r = self.http.get(
            f"{self.db_url}/_design/medic-client/_view/{view}",
            params={"key": json.dumps(key)},
            timeout=HTTP_TIMEOUT,
        )
        r.raise_for_status()
        return [row["id"] for row in r.json()["rows"]]

    def save(self, doc: dict[str, Any]) -> dict[str, Any]:
        """PUT a new doc (uuid4 id); answers CouchDB's ``{ok, id, rev}``."""
        doc.setdefault("_id", str(uuid.uuid4()))
        r = self.http.put(f"{self.db_url}/{quote(doc['_id'], safe='')}", json=doc, timeout=HTTP_TIMEOUT)
        r.raise_for_status()
        return r.json()


# -- hydration -------------------------------------------------------------------------------------
class ApiHydration:
    """The local CHT API's server-side hydration (what ``/api/v1/hydrate`` answers); not the
    pipeline's own ``cht_bridge.source.Hydrator``, which hydrates pages of the changes feed.

    ``shared-libs/lineage`` hydration: parents, primary contacts, a report's submitter
    lineage, and its ``patient``/``place`` from the subject ids (shortcode or uuid)."""

    def __init__(self, couch: Couch) -> None:
        self.couch = couch

    def hydrate(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        if doc.get("type") != "data_record":
            return self.with_lineage(doc)
        if isinstance(doc.get("contact"), dict):
            doc["contact"] = self._full_contact(doc["contact"])
        for key, refs in (("patient", PATIENT_REFS), ("place", PLACE_REFS)):
            subject = self._subject(doc, refs)
            if subject is not None:
                doc[key] = self.with_lineage(subject)
        return doc

    def with_lineage(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The doc with its parents filled in, and the primary contacts of it and its parents."""
        ids = []
        node = doc.get("parent")
        while isinstance(node, dict) and node.get("_id"):
            ids.append(node["_id"])
            node = node.get("parent")
        fetched = self.couch.get_many(ids)
        if isinstance(doc.get("parent"), dict):
            doc["parent"] = self._build(doc["parent"], fetched)
        self._fill_contacts(doc)
        return doc

    def _build(self, stub: dict[str, Any], fetched: dict[str, dict[str, Any]]) -> dict[str, Any]:
        node = copy.deepcopy(fetched.get(stub.get("_id"), {"_id": stub.get("_id")}))
        node.pop("parent", None)
        if isinstance(stub.get("parent"), dict) and stub["parent"].get("_id"):
            node["parent"] = self._build(stub["parent"], fetched)
        return node

    def _fill_contacts(self, doc: dict[str, Any]) -> None:
        nodes, node = [], doc
        while isinstance(node, dict):
            nodes.append(node)
            node = node.get("parent")
        ids = [n["contact"]["_id"] for n in nodes if isinstance(n.get("contact"), dict) and n["contact"].get("_id")]
        contacts = self.couch.get_many(ids)
        for n in nodes:
            contact = n.get("contact")
            if isinstance(contact, dict) and contact.get("_id") in contacts:
                n["contact"] = copy.deepcopy(contacts[contact["_id"]])

    def _full_contact(self, stub: dict[str, Any]) -> dict[str, Any]:
        """A report's submitter: the full doc with its lineage (the stub's lineage if it is gone)."""
        full = self.couch.get_many([stub.get("_id")]).get(stub.get("_id"))
        base = copy.deepcopy(full) if full else copy.deepcopy(stub)
        if not full:
            base.pop("contact", None)
        return self.with_lineage(base)

    def _subject(self, doc: dict[str, Any], refs: tuple[tuple[str, ...], ...]) -> dict[str, Any] | None:
        for path in refs:
            value: Any = doc
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            if value in (None, ""):
                continue
            found = self.find_contact(str(value))
            if found is not None:
                return found
        return None

    def find_contact(self, ref: str) -> dict[str, Any] | None:
        """A contact by shortcode (``contacts_by_reference``), else by ``_id``."""
        ids = self.couch.view_ids("contacts_by_reference", ["shortcode", ref]) or [ref]
        return self.couch.get_many(ids[:1]).get(ids[0])


# -- the request and the router ------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    wants_json: bool
    raw_query: str = ""
    user: UserCtx | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json_body(self) -> Any:
        """The JSON body as Express' body parser gives it: ``{}`` when empty or not JSON-typed."""
        if not self.body or not self.content_type.endswith("json"):
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "Invalid JSON") from exc


Handler = Callable[[Request, re.Match[str]], Response]


class ChtApi(BackgroundHttpServer):
    """The API in a background thread; also a context manager.

    ``couch_url``/``admin_auth`` reach the CouchDB server, ``db`` is the CHT ``medic`` db (it
    needs the ``settings`` and ``_design/medic-client`` docs: see :func:`prepare_db`).
    """

    def __init__(self, couch_url: str, admin_auth: tuple[str, str], db: str = "medic", port: int | None = None) -> None:
        super().__init__(port=port or 0)
        self.couch = Couch(couch_url, admin_auth, db)
        self.hydration = ApiHydration(self.couch)
        self.routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
            (frozenset({"POST"}), re.compile(r"^/api/v[12]/records/?$"), self._records),
            (frozenset({"GET", "POST"}), re.compile(r"^/api/v1/hydrate/?$"), self._hydrate),
            (frozenset({"GET", "POST"}), re.compile(r"^/api/v1/contacts-by-phone/?$"), self._contacts_by_phone),
            (frozenset({"POST"}), re.compile(r"^/api/v1/people/?$"), self._create_people),
            (frozenset({"POST"}), re.compile(r"^/api/v1/places/?$"), self._create_places),
            (frozenset({"GET"}), re.compile(r"^/api/v1/(?P<kind>person|place)/(?P<uuid>[^/]+)$"), self._get_contact),
            (frozenset({"POST"}), re.compile(r"^/api/v1/person/?$"), self._create_person),
            (frozenset({"PUT"}), re.compile(r"^/api/v1/person/(?P<uuid>[^/]+)$"), self._update_person),
            (
                frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "COPY"}),
                re.compile(r"^/medic(?P<rest>/.*)?$"),
                self._proxy,
            ),
        ]

    thread_name = "cht-api"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_HttpHandler,), {"api": self})

    # -- dispatch ----------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        """Route, authenticate, run the handler, and turn errors into cht-core's bodies."""
        for methods, pattern, handler in self.routes:
            match = pattern.match(req.path)
            if match is None:
                continue
            if req.method not in methods:
                continue
            try:
                req.user = self._authenticate(req)
                req.settings = self.couch.settings()
                return handler(req, match)
            except Unauthorized:
                return self._unauthorized(req)
            except Forbidden:
                return json_response(403, FIREWALL_BODY)
            except ApiError as exc:
                return self._error(req, exc)
            except requests.RequestException as exc:
                log.warning("CouchDB request failed: %s", type(exc).__name__)
                return self._error(req, ApiError(500, "Server error"))
        return self._error(req, ApiError(404, "Not found"))

    def _authenticate(self, req: Request) -> UserCtx:
        forwarded = {k: req.headers[k] for k in ("Authorization", "Cookie") if req.headers.get(k)}
        if not forwarded:
            raise Unauthorized
        user = self.couch.session_user(forwarded)
        if user is None:
            raise Unauthorized
        return user

    def _error(self, req: Request, exc: ApiError) -> Response:
        if exc.status == 401:
            return self._unauthorized(req)
        if req.wants_json:
            body: dict[str, Any] = {"code": exc.status, "error": exc.message}
            if exc.details is not None:
                body["details"] = exc.details
            return json_response(exc.status, body)
        text = exc.message + (": " + js_json(exc.details) if exc.details is not None else "")
        return Response(exc.status, text.encode(), "text/plain")

    @staticmethod
    def _unauthorized(req: Request) -> Response:
        if req.wants_json:
            return json_response(401, {"code": 401, "error": "unauthorized"})
        return Response(401, b"not logged in", "text/plain", {"WWW-Authenticate": BASIC_REALM})

    @staticmethod
    def _require(req: Request, perms: list[str] | None = None, online: bool = False, any_of: bool = False) -> None:
        """The offline firewall (when ``online``), then the permission check (403 as cht-core)."""
        assert req.user is not None
        if online and not is_online(req.settings, req.user.roles):
            raise Forbidden
        if perms and not has_permissions(req.settings, req.user, list(perms), any_of=any_of):
            raise ApiError(403, "Insufficient privileges")

    # -- records (§2.2) ----------------------------------------------------------------------------
    def _records(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, ["can_create_records"])
        if not req.body:  # Express' req.is() is null without a body: "Content type not supported."
            raise ApiError(500, "Server error")
        if req.content_type == "application/x-www-form-urlencoded":
            doc = self._record_from_sms(req)
        elif req.content_type.endswith("json"):
            doc = self._record_from_json(req.settings, req.json_body())
        else:
            raise ApiError(500, "Server error")  # cht-core throws a plain Error: no details
        self._update_clinics(req.settings, doc)
        saved = self.couch.save(doc)
        return json_response(200, {"success": True, "id": saved["id"]})

    def _record_from_json(self, settings: dict[str, Any], data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("_meta") in (None, ""):
            raise public_error("Missing _meta property.")
        meta = data.pop("_meta")
        if not isinstance(meta, dict) or meta.get("form") in (None, ""):
            raise public_error("Missing required field: form")
        meta["form"] = str(meta["form"]).upper()
        definition = (settings.get("forms") or {}).get(meta["form"])
        if not definition:
            raise public_error("Form not found: " + meta["form"])
        declared = definition.get("fields") or {}
        corrected = {}
        for key, value in data.items():
            kind = (declared.get(key) or {}).get("type")
            if kind == "date":
                parsed = parse_moment(value)
                value = float("nan") if parsed is None else parsed  # moment's NaN: present, invalid
            elif kind == "boolean" and not isinstance(value, bool) and value in (0, 1):
                value = bool(value)
            corrected[key.lower()] = value
        return self._data_record(settings, meta, definition, corrected)

    def _data_record(
        self, settings: dict[str, Any], meta: dict[str, Any], definition: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        """``getDataRecord``: only declared fields (dotted keys as sub-objects), validation errors."""
        record: dict[str, Any] = {
            "type": "data_record",
            "from": normalize_phone(settings, meta.get("from")) or meta.get("from"),
            "form": meta["form"],
            "errors": [],
            "tasks": [],
            "fields": {},
            "reported_date": parse_moment(meta.get("reported_date")) or now_ms(),
            "sms_message": meta,
        }
        if record["from"] is None:
            del record["from"]
        for key in definition.get("fields") or {}:
            merge_field(key.split("."), record["fields"], data)
        record["errors"].extend(validate_fields(definition, data))
        record["fields"] = nan_to_null(record["fields"])
        return record

    def _record_from_sms(self, req: Request) -> dict[str, Any]:
        """A raw SMS, stored as a message (SMS form parsing is not implemented here)."""
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if "from" not in form:
            raise public_error("Missing required value: from")
        if "message" not in form:
            raise public_error("Missing required field: message")
        sms = {
            "type": "sms_message",
            "message": form["message"],
            "form": sms_form_code(form["message"]),
            "reported_date": form.get("sent_timestamp"),
            "locale": form.get("locale") or req.arg("locale"),
            "from": form["from"],
            "gateway_ref": form.get("gateway_ref"),
        }
        record: dict[str, Any] = {
            "type": "data_record",
            "from": normalize_phone(req.settings, form["from"]) or form["from"],
            "errors": [],
            "tasks": [],
            "fields": {},
            "reported_date": parse_moment(sms["reported_date"]) or now_ms(),
            "sms_message": {k: v for k, v in sms.items() if v is not None},
        }
        if not form["message"].strip():
            record["errors"].append({"code": "sys.empty", "message": "Message appears empty."})
        return record

    def _update_clinics(self, settings: dict[str, Any], record: dict[str, Any]) -> None:
        """The ``update_clinics`` transition: the sender's contact from its phone number."""
        if (settings.get("transitions") or {}).get("update_clinics") is False:
            return
        contact = None
        if record.get("from"):
            ids = self.couch.view_ids("contacts_by_phone", record["from"])
            found = self.couch.get_many(ids[:1]).get(ids[0]) if ids else None
            if found is not None and is_place(settings, found) and isinstance(found.get("contact"), dict):
                found = self.couch.get_many([found["contact"].get("_id")]).get(found["contact"].get("_id"))
            contact = minify(found) if found else None
        if contact:
            record["contact"] = contact
            return
        definition = (settings.get("forms") or {}).get(record.get("form") or "")
        if record.get("form") and definition is not None and not definition.get("public_form", True):
            record["errors"].append({"code": "sys.facility_not_found", "message": "Facility not found."})

    # -- hydrate (§2.3) and contacts-by-phone (§2.4) -----------------------------------------------
    def _hydrate(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, online=True)
        raw = req.arg("doc_ids")
        ids: Any
        if raw is not None:
            try:
                ids = json.loads(raw)
            except ValueError:
                ids = None
        else:
            body = req.json_body()
            ids = body.get("doc_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list):
            return json_response(400, {"error": "bad_request", "reason": "`doc_ids` parameter must be a json array."})
        found = self.couch.get_many([i for i in ids if isinstance(i, str)])
        result = []
        for doc_id in ids:
            doc = found.get(doc_id) if isinstance(doc_id, str) else None
            if doc is None:
                result.append({"id": doc_id, "error": "not_found"})
            else:
                result.append({"id": doc_id, "doc": self.hydration.hydrate(doc)})
        return json_response(200, result)

    def _contacts_by_phone(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, online=True)
        phone = req.arg("phone")
        if phone is None and req.method == "POST":
            body = req.json_body()
            phone = body.get("phone") if isinstance(body, dict) else None
        normalized = normalize_phone(req.settings, phone)
        if normalized is None:
            return json_response(
                400,
                {"error": "bad_request", "reason": "`phone` parameter is required and must be a valid phone number"},
            )
        ids = self.couch.view_ids("contacts_by_phone", normalized)
        docs = self.couch.get_many(ids)
        if not docs:
            return json_response(404, {"error": "not_found", "reason": "no matches found"})
        return json_response(200, {"ok": True, "docs": [self.hydration.hydrate(docs[i]) for i in ids if i in docs]})

    # -- legacy people and places (§2.5) -----------------------------------------------------------
    def _create_people(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, ["can_edit", "can_create_people"])
        body = req.json_body()
        if not body:
            raise ApiError(400, "Request body is empty or Content-Type header was not set to application/json.")
        return json_response(200, self._legacy_person(req.settings, body))

    def _create_places(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, ["can_edit", "can_create_places"])
        body = req.json_body()
        if not body:
            raise ApiError(400, "Request body is empty or Content-Type header was not set to application/json.")
        saved = self._legacy_places(req.settings, body)
        return json_response(200, {"id": saved["id"], "rev": saved["rev"]})

    def _legacy_person(self, settings: dict[str, Any], data: Any) -> dict[str, Any]:
        """``people.createPerson``: validate, resolve or create ``place`` into ``parent``, save."""
        if not isinstance(data, dict):
            raise ApiError(400, "Person must be an object.")
        if not data.get("type") and any(t.get("id") == "person" for t in settings.get("contact_types") or []):
            data["type"] = "person"
        if not is_person(settings, data):
            raise ApiError(400, "Wrong type, this is not a person.")
        if "name" not in data:
            raise ApiError(400, 'Person is missing a "name" property.')
        if not isinstance(data["name"], str):
            raise ApiError(400, 'Property "name" must be a string.')
        reported = legacy_date(data.get("reported_date"))
        if "reported_date" in data and reported is None:
            raise ApiError(400, f"Reported date is invalid: {data['reported_date']}")
        data["reported_date"] = reported or now_ms()
        if data.get("place"):
            data["parent"] = minify(self._get_or_create_place(settings, data.pop("place")))
        return self.couch.save(data)

    def _get_or_create_place(self, settings: dict[str, Any], place: Any) -> dict[str, Any]:
        if isinstance(place, str):
            return self._get_place(settings, place)
        if isinstance(place, dict) and "_rev" not in place:
            return self._get_place(settings, self._legacy_places(settings, place)["id"])
        raise ApiError(400, "Place must be a new object or string identifier (UUID).")

    def _get_place(self, settings: dict[str, Any], place_id: str) -> dict[str, Any]:
        doc = self.couch.get(place_id)
        if doc is None or not is_place(settings, doc):
            raise ApiError(404, "Failed to find place.")
        return self.hydration.with_lineage(doc)

    def _legacy_places(self, settings: dict[str, Any], place: dict[str, Any]) -> dict[str, Any]:
        """``places.createPlaces``: parents first (UUID or inline object), then this place."""
        if isinstance(place.get("parent"), str):
            place["parent"] = self._get_place(settings, place["parent"])
        elif isinstance(place.get("parent"), dict) and not place["parent"].get("_id"):
            place["parent"] = self._get_place(settings, self._legacy_places(settings, place["parent"])["id"])
        validate_place(settings, place)
        reported = legacy_date(place.get("reported_date"))
        place["reported_date"] = reported or now_ms()
        if place.get("parent"):
            place["parent"] = minify(place["parent"])
        if place.get("contact"):
            place["contact"] = minify(self._get_or_create_person(settings, place["contact"]))
        return self.couch.save(place)

    def _get_or_create_person(self, settings: dict[str, Any], person: Any) -> dict[str, Any]:
        if isinstance(person, dict) and "_rev" not in person:
            person = self._legacy_person(settings, person)["id"]
        elif not isinstance(person, str):
            raise ApiError(400, "Person must be a new object or string identifier (UUID).")
        doc = self.couch.get(person)
        if doc is None or not is_person(settings, doc):
            raise ApiError(404, "Failed to find person.")
        return doc

    # -- datasource (§2.6) -------------------------------------------------------------------------
    def _get_contact(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, ["can_view_contacts"], online=True)
        kind = match["kind"]
        doc = self.couch.get(match["uuid"])
        check = is_person if kind == "person" else is_place
        if doc is None or not check(req.settings, doc):
            raise ApiError(404, f"{kind.capitalize()} not found")
        if req.arg("with_lineage") == "true":
            doc = self.hydration.with_lineage(doc)
        return json_response(200, doc)

    def _create_person(self, req: Request, match: re.Match[str]) -> Response:
        self._require(req, ["can_create_people", "can_edit"], online=True, any_of=True)
        data = req.json_body()
        if not isinstance(data, dict):
            raise ApiError(400, 'Invalid "data": expected an object.')
        for key in ("_id", "_rev"):
            if key in data:
                raise ApiError(400, f"{key} is not allowed for create operations.")
        doc = dict(data)
        if "reported_date" not in doc:
            doc["reported_date"] = now_ms()
        elif not datasource_date_ok(doc["reported_date"]):
            raise ApiError(
                400,
                "Invalid reported_date. Expected format to be "
                "'YYYY-MM-DDTHH:mm:ssZ', 'YYYY-MM-DDTHH:mm:ss.SSSZ', or a Unix epoch.",
            )
        doc["reported_date"] = parse_moment(doc["reported_date"])
        if not all(isinstance(doc.get(k), str) and doc.get(k) for k in ("name", "type")):
            raise ApiError(400, f"Missing or empty required fields (name, type) for [{js_json(data)}].")
        if not (isinstance(doc.get("parent"), str) and doc["parent"]):
            raise ApiError(400, f"Missing or empty required field (parent) [{js_json(doc)}].")
        person_type = next((t for t in req.settings.get("contact_types") or [] if t.get("id") == doc["type"]), None)
        if person_type is None or not person_type.get("person"):
            raise ApiError(400, f"Invalid person type [{doc['type']}].")
        parent = self.couch.get(doc["parent"])
        if parent is None:
            raise ApiError(400, f"Parent with _id [{doc['parent']}] does not exist.")
        parent_type = type_id(parent)
        if parent_type not in (person_type.get("parents") or []):
            raise ApiError(
                400,
                f"Invalid parent type [{parent_type}] for person type [{doc['type']}]. "
                f"Allowed parent types: [{', '.join(person_type.get('parents') or [])}].",
            )
        doc.update(stored_type(doc["type"]))
        doc["parent"] = minify(parent)
        saved = self.couch.save(doc)
        return json_response(200, self.couch.get(saved["id"]))

    def _update_person(self, req: Request, match: re.Match[str]) -> Response:
        """5.2's update: the full doc with the stored ``_rev``, ``reported_date``, ``type``,
        ``contact_type`` and ``parent``; ``name`` required; a property left out is deleted."""
        self._require(req, ["can_update_people", "can_edit"], online=True, any_of=True)
        data = req.json_body()
        if not isinstance(data, dict):
            raise ApiError(400, 'Invalid "data": expected an object.')
        current = self.couch.get(match["uuid"])
        if current is None or not is_person(req.settings, current):
            raise ApiError(404, "Person not found")
        if data.get("_id", current["_id"]) != current["_id"]:
            raise ApiError(400, "_id must match the person being updated.")
        for key in ("_rev", "reported_date", "type", "contact_type", "parent"):
            if data.get(key) != current.get(key):
                raise ApiError(400, f"{key} cannot be changed (expected the stored value).")
        if not (isinstance(data.get("name"), str) and data["name"]):
            raise ApiError(400, f"Missing or empty required fields (name) for [{js_json(data)}].")
        doc = {**data, "_id": current["_id"]}
        self.couch.save(doc)
        return json_response(200, self.couch.get(current["_id"]))

    # -- /medic proxy (§2.9) -----------------------------------------------------------------------
    def _proxy(self, req: Request, match: re.Match[str]) -> Response:
        rest = match["rest"] or ""
        self._require(req, online=True)
        if not self._proxy_read(req.method, rest):
            self._require(req, ["can_edit"])
        return self._forward(req, rest, req.raw_query)

    @staticmethod
    def _proxy_read(method: str, rest: str) -> bool:
        """The reads an online user gets without ``can_edit`` (routing.js)."""
        if method in ("GET", "HEAD"):
            return True
        return method == "POST" and rest.rstrip("/") in ("/_changes", "/_all_docs", "/_bulk_get")

    def _forward(self, req: Request, rest: str, query: str) -> Response:
        headers = {
            k: req.headers[k] for k in ("Authorization", "Cookie", "Content-Type", "Accept") if req.headers.get(k)
        }
        target = self.couch.db_url + rest + (f"?{query}" if query else "")
        r = requests.request(req.method, target, headers=headers, data=req.body or None, timeout=HTTP_TIMEOUT)
        return Response(r.status_code, r.content, r.headers.get("Content-Type", "application/json"))


# -- record helpers (module level: pure functions) -------------------------------------------------
def merge_field(key: list[str], target: dict[str, Any], data: Any) -> None:
    """``smsparser.merge``: a dotted declared field reads nested input into a sub-object."""
    if not isinstance(data, dict):
        return
    if len(key) > 1:
        head = key[0]
        if data.get(head):
            sub = target.setdefault(head, {})
            merge_field(key[1:], sub, data[head])
        return
    if key[0] in data:
        target[key[0]] = data[key[0]]


def validate_fields(definition: dict[str, Any], data: dict[str, Any]) -> list[dict[str, str]]:
    """``report/validate.js``: a wrong type per field (``sys.incorrect_type``), then one
    ``sys.missing_fields`` for the required fields that are absent or null.

    As in cht-core, a declared key is looked up as is (a dotted key is not walked into nested
    input), fields with a ``list`` are not type-checked, and ``date`` fields are not checked
    (an unparsable date is NaN there: present, stored as null).
    """
    errors: list[dict[str, str]] = []
    missing = []
    for key, spec in (definition.get("fields") or {}).items():
        spec = spec or {}
        value = data.get(key)
        if value is None:
            if spec.get("required"):
                missing.append(key)
            continue
        if spec.get("list") or wrong_type(spec.get("type"), value) is None:
            continue
        errors.append({"code": "sys.incorrect_type", "message": "sys.incorrect_type"})
    if missing:
        # The translation "Missing or invalid fields: {{fields}}." with a JS array: "a,b".
        errors.append({"code": "sys.missing_fields", "message": f"Missing or invalid fields: {','.join(missing)}."})
    return errors


def wrong_type(kind: str | None, value: Any) -> str | None:
    """The expected type when ``value`` does not match a declared ``integer``, ``string``,
    ``boolean`` or ``complex`` field; None when it matches or the type is not checked."""
    ok = {
        "integer": lambda v: (
            isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())
        ),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "complex": lambda v: isinstance(v, (dict, list)),
    }.get(kind or "")
    return None if ok is None or ok(value) else kind


def nan_to_null(value: Any) -> Any:
    """What ``JSON.stringify`` stores for NaN: null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: nan_to_null(v) for k, v in value.items()}
    return value


def sms_form_code(message: str) -> str | None:
    """``smsparser.getFormCode`` (muvuku ``x!CODE!…`` or textforms ``CODE …``), upper-cased."""
    if message.count("!") >= 2:
        return message.split("!")[1].upper()
    found = re.match(r"^\s*([^\s!\-,:#]+)", message)
    return found.group(1).upper() if found else None


def legacy_date(value: Any) -> int | None:
    """``utils.parseDate`` of shared-libs/contacts: epoch ms or a parsable date string."""
    if value is None:
        return None
    return parse_moment(value)


def datasource_date_ok(value: Any) -> bool:
    """cht-datasource ``isValidReportedDate``: a finite number or an ISO UTC date-time string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == value and abs(value) != float("inf")
    return isinstance(value, str) and bool(ISO_DATE_TIME.match(value))


def validate_place(settings: dict[str, Any], place: Any) -> None:
    """``places.validatePlace``, with its messages; parents are checked recursively."""
    if not isinstance(place, dict):
        raise ApiError(400, "Place must be an object.")
    place_id = place.get("_id") or ""
    if not is_place(settings, place):
        raise ApiError(400, f"Wrong type, object {place_id} is not a place.")
    if "name" not in place:
        raise ApiError(400, f'Place {place_id} is missing a "name" property.')
    if "reported_date" in place and legacy_date(place["reported_date"]) is None:
        raise ApiError(400, f"Reported date on place {place_id} is invalid: {place['reported_date']}")
    if not isinstance(place["name"], str):
        raise ApiError(400, f'Property "name" on place {place_id} must be a string.')
    kind = contact_type(settings, place) or {}
    if kind.get("parents"):
        if not place.get("parent"):
            raise ApiError(400, f'Place {place_id} is missing a "parent" property.')
        if type_id(place["parent"]) not in kind["parents"]:
            raise ApiError(
                400,
                f'{kind["id"]} "{place_id}" should have one of the following parent types: '
                f'"{",".join(kind["parents"])}".',
            )
    if place.get("contact") is not None and not isinstance(place["contact"], (str, dict)):
        raise ApiError(400, f'Property "contact" on place {place_id} must be an object or string.')
    if isinstance(place.get("parent"), dict) and place["parent"]:
        validate_place(settings, place["parent"])


# -- HTTP plumbing ---------------------------------------------------------------------------------
class _HttpHandler(StandInHandler):
    server_version = "cht-bridge-cht-api/1"
    api: ChtApi  # set on a per-server subclass

    def _handle(self) -> None:
        split = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = MAX_BODY_BYTES + 1  # unreadable: refuse it like an oversized body
        req = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=b"",
            wants_json=prefers_json(self.headers.get("Accept")),
            raw_query=split.query,
        )
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._respond(req, self.api._error(req, ApiError(413, "Payload Too Large")))
            return
        req.body = self.rfile.read(length) if length > 0 else b""
        try:
            response = self.api.handle(req)
        except Exception as exc:  # a bug: answer 500; log where, not the message (it may hold data)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "unhandled %s at %s:%d on %s %s", type(exc).__name__, frame.filename, frame.lineno, req.method, req.path
            )
            response = self.api._error(req, ApiError(500, "Server error"))
        self._respond(req, response)

    def _respond(self, req: Request, response: Response) -> None:
        user = req.user.name if req.user else "-"
        log.info("%s %s -> %d user=%s", req.method, req.path, response.status, user)
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_COPY = _handle  # noqa: N815 - stdlib naming


# -- database preparation --------------------------------------------------------------------------
@dataclass(frozen=True)
class PreparedUsers:
    """Credentials of the users :func:`prepare_db` created."""

    online: tuple[str, str]
    offline: tuple[str, str]


def prepare_db(
    couch_url: str,
    admin_auth: tuple[str, str],
    db: str,
    users: tuple[tuple[str, str], tuple[str, str]] | None = None,
) -> PreparedUsers:
    """Make ``db`` usable by :class:`ChtApi`: put the ``settings`` and ``_design/medic-client``
    docs if missing, and create an online integration user (roles ``integration``,
    ``mm-online``) and an offline CHW (role ``chw``), both added to the db's ``_security``
    members so the ``/medic`` proxy (which uses the caller's credentials) can read.

    ``users`` gives ((online name, password), (offline name, password)); random by default.
    """
    db_url = f"{couch_url.rstrip('/')}/{quote(db, safe='')}"
    with requests.Session() as http:
        http.auth = admin_auth
        for doc in (SETTINGS_DOC, DESIGN_DOC):
            r = http.get(f"{db_url}/{quote(doc['_id'], safe='/')}", timeout=HTTP_TIMEOUT)
            if r.status_code == 404:
                http.put(f"{db_url}/{quote(doc['_id'], safe='/')}", json=doc, timeout=HTTP_TIMEOUT).raise_for_status()
            else:
                r.raise_for_status()
        suffix = uuid.uuid4().hex[:8]
        online, offline = users or ((f"integration-{suffix}", uuid.uuid4().hex), (f"chw-{suffix}", uuid.uuid4().hex))
        create_user(couch_url, admin_auth, online[0], online[1], ONLINE_USER_ROLES)
        create_user(couch_url, admin_auth, offline[0], offline[1], OFFLINE_USER_ROLES)
        security = http.get(f"{db_url}/_security", timeout=HTTP_TIMEOUT).json() or {}
        members = security.setdefault("members", {})
        names = members.setdefault("names", [])
        members.setdefault("roles", [])
        security.setdefault("admins", {"names": [], "roles": []})
        if names or members["roles"]:  # a restricted db: let both users in; an open db stays open
            names.extend(n for n in (online[0], offline[0]) if n not in names)
            http.put(f"{db_url}/_security", json=security, timeout=HTTP_TIMEOUT).raise_for_status()
    return PreparedUsers(online=online, offline=offline)
