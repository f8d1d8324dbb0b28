"""The DHIS2 stand-in's HTTP side: auth, the API version of each request, and the routes.

See the package docstring for the protocol. Every answer is JSON; an error is a ``WebMessage``
(``httpStatus``, ``httpStatusCode``, ``status: ERROR``, ``message``, and ``errorCode`` where
DHIS2 gives one). Payloads are never logged: a log line holds the method, the path and the status.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.dhis2.aggregate import DataValues
from standins.dhis2.metadata import TYPES, Metadata
from standins.dhis2.tracker import COLLECTIONS, ENROLLMENT, EVENT, RELATIONSHIP, TE, Tracker, new_uid
from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

log = logging.getLogger("standins.dhis2")

API_PATH = re.compile(r"^/api(?:/(\d{2}))?(/.*)?$")
READ_TYPES = {COLLECTIONS[t]: t for t in (TE, ENROLLMENT, EVENT, RELATIONSHIP)}
DATA_PATHS = ("/dataValueSets", "/tracker")  # the paths that write data (what "sent nothing" counts)
MAX_BODY = 50 * 1024 * 1024


def web_message(code: int, message: str, status: str = "ERROR", **extra: Any) -> dict[str, Any]:
    """DHIS2's ``WebMessage`` envelope."""
    return {
        "httpStatus": HTTPStatus(code).phrase,
        "httpStatusCode": code,
        "status": status,
        "message": message,
        **extra,
    }


@dataclass
class Settings:
    """What a test may change while the stand-in runs (``Dhis2.configure``)."""

    version: str = "2.40.3"  # the server's version: /api/system/info, and the API version of unversioned paths
    delay: float = 0.0  # seconds each data write waits first (a run lasts long enough to kill it)
    page_size_limit: int = 50000  # KeyTrackedEntityMaxLimit


@dataclass
class Counts:
    requests: int = 0
    unauthorized: int = 0
    data_requests: int = 0  # POST /api/dataValueSets and /api/tracker
    by_path: Counter = field(default_factory=Counter)  # "METHOD /path" (version stripped) -> requests


class Dhis2(BackgroundHttpServer):
    """A DHIS2 (2.38–2.42) Web API for tests and the demo; metadata in ``metadata``.

    ``credentials`` is ``{"username": ..., "password": ...}`` for HTTP Basic and/or
    ``{"token": "d2pat_..."}`` for ``Authorization: ApiToken``. ``state_file`` keeps the data
    values and tracker objects across restarts (the demo's sandbox).
    """

    thread_name = "dhis2"

    def __init__(
        self,
        metadata: Metadata,
        credentials: dict[str, str],
        *,
        version: str = "2.40.3",
        state_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.metadata = metadata
        self.credentials = dict(credentials)
        self.settings = Settings(version=version)
        self.values = DataValues(metadata)
        self.tracker = Tracker(metadata)
        self.counts = Counts()
        self.jobs: dict[str, dict[str, Any]] = {}  # async tracker imports: id -> report
        self.value_jobs: dict[str, dict[str, Any]] = {}  # async data value imports: id -> import summary
        self.state_file = state_file
        self._lock = threading.Lock()
        if state_file is not None and state_file.exists():
            self._load(json.loads(state_file.read_text()))

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            dhis2 = server

        return Handler

    # -- what tests use -------------------------------------------------------------------------------

    def configure(self, **changes: Any) -> Settings:
        """Change ``version``, ``delay`` or ``page_size_limit`` while serving."""
        with self._lock:
            for key, value in changes.items():
                if not hasattr(self.settings, key):
                    raise TypeError(f"unknown setting {key!r}")
                setattr(self.settings, key, value)
            return self.settings

    def stats(self) -> dict[str, Any]:
        """Request counts since start (no payloads): ``requests``, ``unauthorized``,
        ``data_requests`` (writes of data), ``by_path``, and what is stored."""
        with self._lock:
            return {
                "requests": self.counts.requests,
                "unauthorized": self.counts.unauthorized,
                "data_requests": self.counts.data_requests,
                "by_path": dict(self.counts.by_path),
                "data_values": self.values.count(),
                "tracked_entities": self.tracker.count(TE),
                "enrollments": self.tracker.count(ENROLLMENT),
                "events": self.tracker.count(EVENT),
                "events_created": self.tracker.outcomes[(EVENT, "created")],
                "events_updated": self.tracker.outcomes[(EVENT, "updated")],
            }

    def set_value(self, data_element: str, period: str, org_unit: str, value: str | None, **combos: str) -> None:
        """Change a data value behind the pipeline's back (``None`` deletes it)."""
        self.values.set_value(data_element, period, org_unit, value, **combos)
        self.save()

    def version_tuple(self, pinned: str | None = None) -> tuple[int, int]:
        """(2, minor) of the server; a pinned ``/api/NN/`` path makes the API version NN."""
        if pinned:
            return (2, int(pinned))
        parts = self.settings.version.split(".")
        return (int(parts[0]), int(parts[1]))

    # -- persistence ----------------------------------------------------------------------------------

    def save(self) -> None:
        if self.state_file is None:
            return
        with self._lock:  # one writer at a time; each part is copied under its own lock
            state = {"values": self.values.snapshot(), "tracker": self.tracker.snapshot()}
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.state_file)

    def _load(self, state: dict[str, Any]) -> None:
        self.values.restore(state.get("values", []))
        self.tracker.restore(state.get("tracker", {}))


class _Handler(StandInHandler):
    server_version = "DHIS2-stand-in/1"
    dhis2: Dhis2

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802 - stdlib name
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        d = self.dhis2
        split = urlsplit(self.path)
        match = API_PATH.match(split.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        route = (match.group(2) or "/") if match else split.path
        with d._lock:
            d.counts.requests += 1
            d.counts.by_path[f"{method} {route}"] += 1
        if match is None:
            return self._answer(404, web_message(404, "Not Found"))
        if not self._authorized():
            return
        params = parse_qs(split.query, keep_blank_values=True)
        version = d.version_tuple(match.group(1))
        try:
            status, answer = self._route(method, route.rstrip("/") or "/", params, body, version)
        except _Refused as refused:
            status, answer = refused.status, refused.answer
        self._answer(status, answer, method, route)

    def _answer(self, status: int, answer: Any, method: str = "", route: str = "") -> None:
        log.info("%s %s -> %d", method, route, status)
        send_json(self, status, answer)

    def _authorized(self) -> bool:
        """HTTP Basic or ``ApiToken``; otherwise 401 as DHIS2 answers it (counted before answering,
        so a test that got the 401 sees it counted)."""
        creds = self.dhis2.credentials
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "apitoken":
            if creds.get("token") and hmac.compare_digest(value.strip().encode(), creds["token"].encode()):
                return True
            self._count_refusal()
            send_json(self, 401, web_message(401, "The API token does not exists."))
            return False
        if scheme.lower() == "basic" and creds.get("username"):
            try:
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, password = "", ""
            expected = f"{creds['username']}:{creds.get('password', '')}".encode()
            if hmac.compare_digest(f"{user}:{password}".encode(), expected):
                return True
        self._count_refusal()
        send_json(self, 401, web_message(401, "Unauthorized"), {"WWW-Authenticate": 'Basic realm="DHIS2"'})
        return False

    def _count_refusal(self) -> None:
        with self.dhis2._lock:
            self.dhis2.counts.unauthorized += 1

    # -- routes ---------------------------------------------------------------------------------------

    def _route(self, method: str, route: str, params: dict, body: bytes, version: tuple[int, int]):
        d = self.dhis2
        if method == "GET":
            if route == "/me":
                return 200, _me(d.metadata)
            if route == "/system/info":
                return 200, {"version": d.settings.version, "revision": "standin", "serverDate": _iso_now()}
            if route == "/system/id":
                limit = min(max(_int(params, "limit", 1), 1), 10000)
                return 200, {"codes": [new_uid() for _ in range(limit)]}
            if route == "/dataValueSets":
                return _read_values(d, params)
            if route.startswith(("/system/tasks/DATAVALUE_IMPORT/", "/system/taskSummaries/DATAVALUE_IMPORT/")):
                return _value_job(d, route)
            if route.startswith("/tracker/jobs/"):
                return _job(d, route)
            if route.startswith("/tracker/"):
                return _read_tracker(d, route[len("/tracker/") :], params, version)
            parts = route.strip("/").split("/")
            if parts[0] in TYPES and len(parts) <= 2:
                return _metadata(d.metadata, parts, params)
            return 404, web_message(404, "Not Found")
        if method == "POST" and route in DATA_PATHS:
            payload = self._json(body)
            with d._lock:
                d.counts.data_requests += 1
                delay = d.settings.delay
            if delay:
                time.sleep(delay)
            if route == "/dataValueSets":
                return _import_values(d, payload, params, version)
            return _import_tracker(d, payload, params)
        if route in DATA_PATHS:
            return 405, web_message(405, f"Request method '{method}' not supported")
        return 404, web_message(404, "Not Found")

    def _json(self, body: bytes) -> dict[str, Any]:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Refused(415, web_message(415, f"Content type '{content_type}' not supported"))
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            raise _Refused(400, web_message(400, "JSON parse error")) from None
        if not isinstance(payload, dict):
            raise _Refused(400, web_message(400, "JSON parse error: the body must be an object"))
        return payload


class _Refused(Exception):
    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.answer = answer


def _one(params: dict, name: str, default: str | None = None) -> str | None:
    return (params.get(name) or [default])[0]


def _int(params: dict, name: str, default: int) -> int:
    try:
        return int(_one(params, name) or default)
    except ValueError:
        raise _Refused(400, web_message(400, f"Invalid value for parameter `{name}`")) from None


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _me(md: Metadata) -> dict[str, Any]:
    user = md.user
    return {
        "id": user["id"],
        "username": user["username"],
        "name": user.get("name", user["username"]),
        "authorities": list(user.get("authorities", [])),
        "organisationUnits": [{"id": o["id"]} for o in user.get("organisationUnits", [])],
        "dataViewOrganisationUnits": [{"id": o["id"]} for o in user.get("organisationUnits", [])],
        "teiSearchOrganisationUnits": [],
    }


# -- aggregate ----------------------------------------------------------------------------------------


def _import_values(d: Dhis2, payload: dict, params: dict, version: tuple[int, int]) -> tuple[int, Any]:
    if not d.metadata.has_authority("F_DATAVALUE_ADD"):
        return 403, web_message(403, "You don't have the proper permissions to perform this action.")
    flat = {k: v[0] for k, v in params.items() if v}
    try:
        summary = d.values.import_set(payload, flat, version)
    except ValueError as exc:
        return 400, web_message(400, str(exc))
    d.save()
    if (flat.get("async") or "false").lower() == "true":  # §1.3: a job; its summary is fetched later
        job = new_uid()
        with d._lock:
            d.value_jobs[job] = summary
        response = {"name": "DATAVALUE_IMPORT", "id": job, "created": _iso_now(), "jobType": "DATAVALUE_IMPORT",
                    "relativeNotifierEndpoint": f"/api/system/tasks/DATAVALUE_IMPORT/{job}"}  # fmt: skip
        return 200, web_message(200, "Initiated DATAVALUE_IMPORT", "OK", response=response)
    code = 200 if summary["status"] == "SUCCESS" else 409
    if version < (2, 38):  # importSummary(summary).withPlainResponseBefore(V38): the bare summary
        return code, summary
    if code == 200:
        return 200, web_message(200, "Import was successful.", "OK", response=summary)
    message = (
        "One more conflicts encountered, please check import summary."
        if summary["status"] == "WARNING"
        else "An error occurred, please check import summary."
    )
    return 409, web_message(409, message, summary["status"], response=summary)


def _value_job(d: Dhis2, route: str) -> tuple[int, Any]:
    """An async data value import: its notifications (``tasks``), or its import summary (``taskSummaries``)."""
    _, kind, _, job = route.strip("/").split("/", 3)
    summary = d.value_jobs.get(job)
    if summary is None:
        return 404, web_message(404, f"Job with id {job} could not be found.")
    if kind == "taskSummaries":
        return 200, summary
    done = {"uid": new_uid(), "level": "INFO", "category": "DATAVALUE_IMPORT", "time": _iso_now(),
            "message": "Import done", "completed": True}  # fmt: skip
    return 200, [done]


def _read_values(d: Dhis2, params: dict) -> tuple[int, Any]:
    data_sets = params.get("dataSet", [])
    elements = params.get("dataElement", [])
    if not data_sets and not elements:
        return 409, web_message(409, "At least one data element, data set or data element group must be specified",
                                errorCode="E2001")  # fmt: skip
    periods = params.get("period", [])
    start, end = _one(params, "startDate"), _one(params, "endDate")
    if not periods and not (start and end):
        message = "At least one period, start/end dates, last updated or last updated duration must be specified"
        return 409, web_message(409, message, errorCode="E2002")
    units = params.get("orgUnit", [])
    if not units:
        return 409, web_message(409, "At least one organisation unit or organisation unit group must be specified",
                                errorCode="E2006")  # fmt: skip
    for ds in data_sets:
        if d.metadata.get("dataSets", ds) is None:
            return 409, web_message(409, f"Data set not found or not accessible: `{ds}`", errorCode="E1105")
    children = (_one(params, "children") or "false").lower() == "true"
    rows = d.values.read(data_sets, periods, units, children=children, data_elements=elements, start=start, end=end)
    return 200, {"dataValues": rows}


# -- tracker -------------------------------------------------------------------------------------------


def _import_tracker(d: Dhis2, payload: dict, params: dict) -> tuple[int, Any]:
    strategy = (_one(params, "importStrategy") or "CREATE_AND_UPDATE").upper()
    atomic = (_one(params, "atomicMode") or "ALL").upper()
    mode = (_one(params, "importMode") or "COMMIT").upper()
    if strategy not in ("CREATE", "UPDATE", "CREATE_AND_UPDATE", "DELETE") or atomic not in ("ALL", "OBJECT"):
        return 400, web_message(400, "Value is not valid for importStrategy or atomicMode")
    if mode not in ("COMMIT", "VALIDATE"):
        return 400, web_message(400, f"Value {mode} is not valid for importMode")
    keys = ("idScheme", "orgUnitIdScheme", "programIdScheme", "programStageIdScheme", "dataElementIdScheme")
    schemes = {k: str(_one(params, k)) for k in keys if _one(params, k)}
    report = d.tracker.import_bundle(payload, strategy, atomic, commit=mode == "COMMIT", schemes=schemes)
    d.save()
    if (_one(params, "async") or "true").lower() != "false":  # the unparameterised POST is the async one
        job = new_uid()
        with d._lock:
            d.jobs[job] = report
        return 200, web_message(200, "Tracker job added", "OK",
                                response={"responseType": "TrackerJobWebMessageResponse", "id": job,
                                          "location": f"{d.url}/api/tracker/jobs/{job}"})  # fmt: skip
    return (409 if report["status"] == "ERROR" else 200), report


def _job(d: Dhis2, route: str) -> tuple[int, Any]:
    parts = route.strip("/").split("/")  # tracker, jobs, <id>[, report]
    report = d.jobs.get(parts[2]) if len(parts) >= 3 else None
    if report is None:
        return 404, web_message(404, f"Job with id {parts[-1]} could not be found.")
    if len(parts) == 4 and parts[3] == "report":
        return 200, report
    return 200, [
        {
            "uid": new_uid(),
            "level": "INFO",
            "category": "TRACKER_IMPORT_JOB",
            "message": "(TRACKER_IMPORT_JOB) Import complete",
            "completed": True,
        }
    ]


#: Read parameters by the versions that know them (§1.6); a server ignores the others, as Spring
#: ignores a query parameter no handler binds.
SINCE_41 = {"orgUnits", "orgUnitMode", "paging", "trackedEntities", "enrollments", "events"}
UNTIL_40 = {"ouMode", "skipPaging", "trackedEntity", "enrollment", "event"}
UNTIL_41 = {"orgUnit"}  # deprecated in 2.41, gone in 2.42


def _known(params: dict, version: tuple[int, int]) -> dict:
    gone = (UNTIL_40 if version >= (2, 41) else SINCE_41) | (UNTIL_41 if version >= (2, 42) else set())
    return {k: v for k, v in params.items() if k not in gone}


def _read_tracker(d: Dhis2, collection: str, params: dict, version: tuple[int, int]) -> tuple[int, Any]:
    kind = READ_TYPES.get(collection.strip("/"))
    if kind is None:
        return 404, web_message(404, "Not Found")
    params = _known(params, version)
    if kind == TE and version < (2, 42):
        # <= 2.41: orgUnit(s) or orgUnitMode=ALL are required; 2.42 defaults to ACCESSIBLE
        mode = (_one(params, "orgUnitMode") or _one(params, "ouMode") or "").upper()
        if not (_one(params, "orgUnits") or _one(params, "orgUnit")) and mode not in ("ALL", "ACCESSIBLE", "CAPTURE"):
            return 400, web_message(400, "At least one organisation unit must be specified")
    page, size = _int(params, "page", 1), _int(params, "pageSize", 50)
    if page < 1 or size < 1:
        return 400, web_message(400, "page and pageSize must be greater than zero")
    if size > d.settings.page_size_limit:
        return 400, web_message(400, f"Invalid page size: {size}, the maximum is {d.settings.page_size_limit}")
    if kind == TE and not (_one(params, "program") or _one(params, "trackedEntityType")):
        return 400, web_message(400, "Either Program or Tracked entity type should be specified")
    found = d.tracker.find(kind, params)
    found.sort(
        key=lambda o: (
            o.get("updatedAt", ""),
            o[{TE: "trackedEntity", ENROLLMENT: "enrollment", EVENT: "event"}.get(kind, "relationship")],
        )
    )
    unpaged = (_one(params, "paging") or "true").lower() == "false" or (
        _one(params, "skipPaging") or ""
    ).lower() == "true"
    items = found if unpaged else found[(page - 1) * size : page * size]
    totals = (_one(params, "totalPages") or "false").lower() == "true"
    if version >= (2, 41):
        pager: dict[str, Any] = {"page": page, "pageSize": size}
        if totals:
            pager.update(total=len(found), pageCount=max(1, -(-len(found) // size)))
        return 200, {"pager": pager, collection.strip("/"): items}
    answer: dict[str, Any] = {"instances": items, "page": page, "pageSize": size}
    if totals:
        answer.update(total=len(found), pageCount=max(1, -(-len(found) // size)))
    return 200, answer


# -- metadata -------------------------------------------------------------------------------------------


def _metadata(md: Metadata, parts: list[str], params: dict) -> tuple[int, Any]:
    """``GET /api/<collection>[/<uid>]`` with ``filter`` (``eq``, ``in``), ``fields`` and paging."""
    collection = parts[0]
    fields = _fields(_one(params, "fields"))
    if len(parts) == 2:
        obj = md.get(collection, parts[1])
        if obj is None:
            return 404, web_message(404, f"{TYPES[collection]} with id {parts[1]} could not be found.")
        return 200, _select(obj, fields or None)
    objects = md.all(collection)
    for expression in params.get("filter", []):
        field_name, _, rest = expression.partition(":")
        op, _, value = rest.partition(":")
        if op == "eq":
            objects = [o for o in objects if str(o.get(field_name)) == value]
        elif op == "in":
            wanted = set(value.strip("[]").split(","))
            objects = [o for o in objects if str(o.get(field_name)) in wanted]
        else:
            return 400, web_message(400, f"Filter not supported: `{expression}`", errorCode="E2034")
    objects.sort(key=lambda o: o.get("name", ""))
    listed = [_select(o, fields or ["id", "displayName"]) for o in objects]
    if (_one(params, "paging") or "true").lower() == "false":
        return 200, {collection: listed}
    page, size = _int(params, "page", 1), _int(params, "pageSize", 50)
    pager = {"page": page, "pageCount": max(1, -(-len(listed) // size)), "total": len(listed), "pageSize": size}
    return 200, {"pager": pager, collection: listed[(page - 1) * size : page * size]}


def _fields(value: str | None) -> list[str]:
    """Top-level names of a ``fields`` expression (``id,code,access[data[write]]`` -> id, code, access)."""
    if not value:
        return []
    names, depth, current = [], 0, ""
    for ch in value:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            names.append(current)
            current = ""
        elif depth == 0:
            current += ch
    names.append(current)
    return [n.strip() for n in names if n.strip()]


def _select(obj: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    obj = {**obj, "displayName": obj.get("name")}
    if not fields or "*" in fields or ":all" in fields:
        return obj
    return {name: obj[name] for name in fields if name in obj}
