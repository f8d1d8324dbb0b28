"""A RapidPro / TextIt API v2 stand-in, as ``destinations.md`` §3 describes the real one.

Nothing real is installable (the server is a Django app with PostgreSQL, Valkey, Elasticsearch and
the Go services), so this in-process server encodes the contract the bridge relies on:

* auth: ``Authorization: Token <key>``; anything else is 403 ``{"detail": "..."}``;
* ``POST /api/v2/contacts.json`` (create: 201), ``?uuid=`` (update: 200, 404 when unknown) and
  ``?urn=`` (the upsert: 201 when no contact has the URN, else 200; ``urns`` in the body is then
  a 400). Body ``name``, ``language`` (3 letters), ``urns`` (``tel:+<E.164>``…), ``groups`` (UUID
  or case-insensitive name), ``fields`` (keys that exist); each list ≤100. Errors are DRF field
  errors: ``{"urns": {"0": ["URN is in use by another contact."]}}``, ``{"fields": [...]}``,
  ``{"non_field_errors": [...]}``. ``GET /api/v2/contacts.json?urn=|uuid=``;
* ``POST /api/v2/flow_starts.json``: ``flow`` (an existing flow's UUID), at least one of
  ``groups|contacts|urns`` (each ≤100), ``params`` (older name ``extra``) a JSON object of at most
  10,000 characters, ``restart_participants``, ``exclude_active``; 201 with ``uuid`` and ``status``.
  A URN no contact has makes a contact, as the real server does. There is no idempotency key:
  each POST is a new start. ``GET /api/v2/flow_starts.json?uuid=|after=|before=``, cursor paged;
* ``GET /api/v2/runs.json?flow=|uuid=|contact=|responded=|after=|before=|reverse=``: cursor paged
  (``{"next": <url>|null, "previous": null, "results": [...]}``), newest ``modified_on`` first
  (``reverse=true``: oldest first); ``after``/``before`` are inclusive, on ``modified_on``;
* rate limits: DRF's scoped throttles per workspace: ``v2.contacts``, ``v2.runs`` and ``v2`` (the
  rest) each allow ``rate`` requests per ``window`` seconds (default 3600/hour); past it, 429
  ``{"detail": "Request was throttled. Expected available in N seconds."}`` with ``Retry-After: N``.

Test hooks: ``throttle_next(n, retry_after)`` answers the next ``n`` API requests 429;
``stall_after_start`` (seconds) holds the answer of a flow start *after* it was stored, so a client
can be killed between the start and its own record of it; ``add_flow``, ``add_run``, ``add_field``,
``add_group`` seed the workspace; ``starts``, ``contacts``, ``requests`` are read by tests.
Logs hold method, path, status and counts only (URNs are phone numbers).
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

log = logging.getLogger("standins.rapidpro")

MAX_ITEMS = 100  # urns, contacts, groups per flow start; urns, groups, fields per contact
MAX_PARAMS_CHARS = 10_000
PAGE_SIZE = 250
DEFAULT_RATE = 3600  # requests per window per scope (RapidPro's default is 3600/hour)
SCOPES = {"contacts": "v2.contacts", "runs": "v2.runs", "messages": "v2.messages"}
_TEL = re.compile(r"^tel:\+[1-9]\d{6,14}$")
_URN = re.compile(r"^(tel|whatsapp|mailto|telegram|facebook|ext):\S+$")


def now_iso(when: datetime | None = None) -> str:
    """RapidPro's datetime format: ``YYYY-MM-DDThh:mm:ss.ssssssZ``."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ApiError(Exception):
    """A DRF-shaped error answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class Workspace:
    """A workspace's contacts, flows, starts and runs, and its throttle, under one lock."""

    def __init__(self, token: str, rate: int, window: float, page_size: int) -> None:
        self.token = token
        self.rate = rate
        self.window = window
        self.page_size = page_size
        self.lock = threading.RLock()
        self.contacts: dict[str, dict[str, Any]] = {}  # uuid -> contact
        self.by_urn: dict[str, str] = {}  # urn -> contact uuid
        self.fields: set[str] = set()
        self.groups: dict[str, str] = {}  # uuid -> name
        self.flows: dict[str, str] = {}  # uuid -> name
        self.starts: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.history: dict[str, deque[float]] = {}  # scope -> times of the requests in the window
        self.throttled: deque[int] = deque()  # injected 429s: their Retry-After seconds
        self.stall_after_start = 0.0
        self.requests: list[tuple[str, str, int, float]] = []  # (method, path, status, time)

    # -- throttle ---------------------------------------------------------------------------------

    def throttle(self, scope: str) -> int | None:
        """Seconds to wait when the request is throttled (then it is not counted), else None."""
        now = time.monotonic()
        if self.throttled:
            return self.throttled.popleft()
        times = self.history.setdefault(scope, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.rate:
            return max(1, int(times[0] + self.window - now + 0.999))
        times.append(now)
        return None


class RapidProStandIn(BackgroundHttpServer):
    """The RapidPro API v2 stand-in; ``token`` is the API token a Connection must carry."""

    thread_name = "rapidpro"

    def __init__(
        self,
        token: str = "rp-token",
        *,
        rate: int = DEFAULT_RATE,
        window: float = 3600.0,
        page_size: int = PAGE_SIZE,
        fields: tuple[str, ...] = ("cht_id",),
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.state = Workspace(token, rate, window, page_size)
        for key in fields:
            self.add_field(key)

    # -- seeding and inspection -----------------------------------------------------------------

    def add_field(self, key: str) -> None:
        with self.state.lock:
            self.state.fields.add(key)

    def add_group(self, name: str, group_uuid: str | None = None) -> str:
        group_uuid = group_uuid or str(uuid.uuid4())
        with self.state.lock:
            self.state.groups[group_uuid] = name
        return group_uuid

    def add_flow(self, name: str, flow_uuid: str | None = None) -> str:
        flow_uuid = flow_uuid or str(uuid.uuid4())
        with self.state.lock:
            self.state.flows[flow_uuid] = name
        return flow_uuid

    def add_run(
        self,
        flow_uuid: str,
        urn: str,
        values: dict[str, Any],
        *,
        name: str | None = None,
        exit_type: str | None = "completed",
        modified_on: datetime | None = None,
        run_uuid: str | None = None,
    ) -> dict[str, Any]:
        """A run of ``flow_uuid`` by the contact with ``urn`` (created when new); ``values`` is
        ``{result_key: value or {value, category, name}}`` as the flow collected them."""
        with self.state.lock:
            contact = self._contact_for_urn(urn, name)
            when = modified_on or datetime.now(UTC)
            run = {
                "id": len(self.state.runs) + 1,
                "uuid": run_uuid or str(uuid.uuid4()),
                "flow": {"uuid": flow_uuid, "name": self.state.flows.get(flow_uuid, "")},
                "contact": {"uuid": contact["uuid"], "urn": urn, "name": contact["name"]},
                "start": None,
                "responded": bool(values),
                "path": [],
                "values": {key: _result(key, value, when) for key, value in values.items()},
                "created_on": now_iso(when - timedelta(minutes=5)),
                "modified_on": now_iso(when),
                "exited_on": now_iso(when) if exit_type else None,
                "exit_type": exit_type,
            }
            self.state.runs.append(run)
            return copy.deepcopy(run)

    def update_run(self, run_uuid: str, *, exit_type: str | None = "completed", values: dict | None = None) -> None:
        """The run moved on (answered more, completed): a new ``modified_on``."""
        with self.state.lock:
            run = next(r for r in self.state.runs if r["uuid"] == run_uuid)
            when = datetime.now(UTC)
            if values:
                run["values"].update({k: _result(k, v, when) for k, v in values.items()})
            run["exit_type"], run["modified_on"] = exit_type, now_iso(when)
            run["exited_on"] = now_iso(when) if exit_type else None

    def throttle_next(self, n: int = 1, retry_after: int = 2) -> None:
        with self.state.lock:
            self.state.throttled.extend([retry_after] * n)

    def configure(self, *, stall_after_start: float | None = None, rate: int | None = None) -> None:
        with self.state.lock:
            if stall_after_start is not None:
                self.state.stall_after_start = stall_after_start
            if rate is not None:
                self.state.rate = rate

    @property
    def starts(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.starts)

    @property
    def contacts(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(list(self.state.contacts.values()))

    def contact_by_urn(self, urn: str) -> dict[str, Any] | None:
        with self.state.lock:
            found = self.state.by_urn.get(urn)
            return copy.deepcopy(self.state.contacts[found]) if found else None

    @property
    def requests(self) -> list[tuple[str, str, int, float]]:
        with self.state.lock:
            return list(self.state.requests)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(StandInHandler):
            server_version = "RapidProStandIn/1"

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                stand_in._answer(self, "GET")

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                stand_in._answer(self, "POST")

        return Handler

    # -- the API ----------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        status, body, headers = self._dispatch(handler, method, parts.path, query, raw)
        after = None
        if isinstance(body, tuple):  # a flow start held back after it was stored
            body, after = body
        if after:
            time.sleep(after)
        send_json(handler, status, body, headers)
        with self.state.lock:
            self.state.requests.append((method, parts.path, status, time.monotonic()))
        log.info("%s %s -> %d", method, parts.path, status)

    def _dispatch(
        self, handler: BaseHTTPRequestHandler, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        scheme, _, key = (handler.headers.get("Authorization") or "").partition(" ")
        if scheme != "Token" or not hmac.compare_digest(key.strip().encode(), self.state.token.encode()):
            return 403, {"detail": "Authentication credentials were not provided."}, {}
        match = re.fullmatch(r"/api/v2/([a-z_]+)\.json", path)
        if match is None:
            return 404, {"detail": "Not found."}, {}
        endpoint = match.group(1)
        with self.state.lock:
            wait = self.state.throttle(SCOPES.get(endpoint, "v2"))
        if wait is not None:
            detail = f"Request was throttled. Expected available in {wait} seconds."
            return 429, {"detail": detail}, {"Retry-After": str(wait)}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"detail": "JSON parse error"}, {}
        route = {
            ("POST", "contacts"): self._post_contact,
            ("GET", "contacts"): self._get_contacts,
            ("POST", "flow_starts"): self._post_start,
            ("GET", "flow_starts"): self._get_starts,
            ("GET", "runs"): self._get_runs,
        }.get((method, endpoint))
        if route is None:
            return 405, {"detail": f'Method "{method}" not allowed.'}, {}
        try:
            with self.state.lock:
                status, answer = route(query, body, handler)
        except ApiError as exc:
            return exc.status, exc.body, {}
        return status, answer, {}

    # -- contacts ---------------------------------------------------------------------------------

    def _contact_for_urn(self, urn: str, name: str | None = None) -> dict[str, Any]:
        found = self.state.by_urn.get(urn)
        if found:
            return self.state.contacts[found]
        contact = _new_contact(name)
        contact["urns"] = [urn]
        self.state.contacts[contact["uuid"]] = contact
        self.state.by_urn[urn] = contact["uuid"]
        return contact

    def _post_contact(self, query: dict[str, str], body: Any, _h: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        if "urn" in query and "uuid" in query:
            raise ApiError(
                400, {"non_field_errors": ["URL can only contain one of the following parameters: urn, uuid"]}
            )
        existing: dict[str, Any] | None = None
        status = 201
        if "uuid" in query:
            existing = self.state.contacts.get(query["uuid"])
            if existing is None:
                raise ApiError(404, {"detail": "No such object"})
            status = 200
        elif "urn" in query:
            urn = query["urn"]
            _check_urn(urn, "urn")
            if "urns" in body:
                raise ApiError(400, {"urns": ["Field urns is not allowed when updating a contact by URN."]})
            found = self.state.by_urn.get(urn)
            existing = self.state.contacts[found] if found else None
            status = 200 if existing else 201
        changes = self._contact_changes(body, existing)
        if existing is None:
            existing = _new_contact(None)
            if "urn" in query:
                existing["urns"] = [query["urn"]]
            self.state.contacts[existing["uuid"]] = existing
        for urn in existing["urns"]:
            self.state.by_urn[urn] = existing["uuid"]
        _apply(existing, changes, self.state.by_urn)
        return status, copy.deepcopy(existing)

    def _contact_changes(self, body: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        changes: dict[str, Any] = {}
        if "name" in body:
            if body["name"] is not None and (not isinstance(body["name"], str) or len(body["name"]) > 64):
                errors["name"] = ["Ensure this field has no more than 64 characters."]
            changes["name"] = body["name"]
        if "language" in body:
            lang = body["language"]
            if lang is not None and (not isinstance(lang, str) or not re.fullmatch(r"[a-z]{3}", lang)):
                errors["language"] = ["Ensure this field has no more than 3 characters."]
            changes["language"] = lang
        if "urns" in body:
            urns = body["urns"]
            if not isinstance(urns, list) or len(urns) > MAX_ITEMS:
                errors["urns"] = [f"This field can only contain up to {MAX_ITEMS} items."]
            else:
                bad = {}
                for i, urn in enumerate(urns):
                    owner = self.state.by_urn.get(urn) if isinstance(urn, str) else None
                    if not isinstance(urn, str) or not _valid_urn(urn):
                        bad[str(i)] = [f"Invalid URN: {urn}. Ensure phone numbers contain country codes."]
                    elif owner and (existing is None or owner != existing["uuid"]):
                        bad[str(i)] = ["URN is in use by another contact."]
                if bad:
                    errors["urns"] = bad
                changes["urns"] = urns
        if "groups" in body:
            groups = body["groups"]
            if not isinstance(groups, list) or len(groups) > MAX_ITEMS:
                errors["groups"] = [f"This field can only contain up to {MAX_ITEMS} items."]
            else:
                resolved = [self._group(g) for g in groups]
                missing = [g for g, r in zip(groups, resolved, strict=True) if r is None]
                if missing:
                    errors["groups"] = [f"No such object: {missing[0]}"]
                changes["groups"] = [r for r in resolved if r]
        if "fields" in body:
            fields = body["fields"]
            if not isinstance(fields, dict) or len(fields) > MAX_ITEMS:
                errors["fields"] = [f"This field can only contain up to {MAX_ITEMS} items."]
            else:
                unknown = [k for k in fields if k not in self.state.fields]
                if unknown:
                    errors["fields"] = [f"Invalid contact field key: {unknown[0]}"]
                changes["fields"] = {k: None if v is None else str(v) for k, v in fields.items()}
        if errors:
            raise ApiError(400, errors)
        return changes

    def _group(self, ref: Any) -> dict[str, str] | None:
        if not isinstance(ref, str):
            return None
        if ref in self.state.groups:
            return {"uuid": ref, "name": self.state.groups[ref]}
        for group_uuid, name in self.state.groups.items():
            if name.casefold() == ref.casefold():
                return {"uuid": group_uuid, "name": name}
        return None

    def _get_contacts(self, query: dict[str, str], _b: Any, h: Any) -> tuple[int, Any]:
        items = list(self.state.contacts.values())
        if "urn" in query:
            items = [c for c in items if query["urn"] in c["urns"]]
        if "uuid" in query:
            items = [c for c in items if c["uuid"] == query["uuid"]]
        return 200, self._page(items, query, h, "/api/v2/contacts.json", reverse=False)

    # -- flow starts ------------------------------------------------------------------------------

    def _post_start(self, _q: dict[str, str], body: Any, _h: Any) -> tuple[int, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        errors: dict[str, Any] = {}
        flow = body.get("flow")
        if not isinstance(flow, str) or not flow:
            errors["flow"] = ["This field is required."]
        elif flow not in self.state.flows:
            errors["flow"] = [f"No such object: {flow}"]
        lists: dict[str, list] = {}
        for key in ("groups", "contacts", "urns"):
            value = body.get(key, [])
            if not isinstance(value, list):
                errors[key] = ['Expected a list of items but got type "str".']
            elif len(value) > MAX_ITEMS:
                errors[key] = [f"This field can only contain up to {MAX_ITEMS} items."]
            else:
                lists[key] = value
        for i, urn in enumerate(lists.get("urns", [])):
            if not isinstance(urn, str) or not _valid_urn(urn):
                errors.setdefault("urns", {})[str(i)] = [
                    f"Invalid URN: {urn}. Ensure phone numbers contain country codes."
                ]
        missing = [c for c in lists.get("contacts", []) if c not in self.state.contacts]
        if missing:
            errors["contacts"] = [f"No such object: {missing[0]}"]
        groups = [self._group(g) for g in lists.get("groups", [])]
        if any(g is None for g in groups):
            errors["groups"] = ["No such object"]
        params = body.get("params", body.get("extra", {}))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            errors["params"] = ["Must be a valid JSON object"]
        elif len(json.dumps(params)) > MAX_PARAMS_CHARS:
            errors["params"] = [f"Must be a valid JSON object with at most {MAX_PARAMS_CHARS} characters"]
        if not errors and not any(lists.get(k) for k in ("groups", "contacts", "urns")):
            errors["non_field_errors"] = ["Must specify at least one group, contact or URN"]
        if errors:
            raise ApiError(400, errors)
        contacts = [self.state.contacts[c] for c in lists.get("contacts", [])]
        contacts += [self._contact_for_urn(u) for u in lists.get("urns", [])]
        when = now_iso()
        start = {
            "id": len(self.state.starts) + 1,
            "uuid": str(uuid.uuid4()),
            "flow": {"uuid": flow, "name": self.state.flows[flow]},
            "status": "pending",
            "groups": groups,
            "contacts": [{"uuid": c["uuid"], "name": c["name"]} for c in contacts],
            "urns": list(lists.get("urns", [])),  # kept for tests; the real read serializer has no urns
            "restart_participants": bool(body.get("restart_participants", True)),
            "exclude_active": bool(body.get("exclude_active", False)),
            "params": params,
            "extra": params,
            "created_on": when,
            "modified_on": when,
        }
        self.state.starts.append(start)
        answer = {k: v for k, v in start.items() if k not in ("id", "urns")}
        stall = self.state.stall_after_start
        return 201, ((answer, stall) if stall else answer)

    def _get_starts(self, query: dict[str, str], _b: Any, h: Any) -> tuple[int, Any]:
        items = [{k: v for k, v in s.items() if k != "urns"} for s in self.state.starts]
        if "uuid" in query:
            items = [s for s in items if s["uuid"] == query["uuid"]]
        return 200, self._page(_window(items, query), query, h, "/api/v2/flow_starts.json", reverse=False)

    # -- runs -------------------------------------------------------------------------------------

    def _get_runs(self, query: dict[str, str], _b: Any, h: Any) -> tuple[int, Any]:
        if "flow" in query and "contact" in query:
            raise ApiError(400, {"detail": "You may only specify one of the contact, flow parameters"})
        items = list(self.state.runs)
        for key in ("uuid",):
            if key in query:
                items = [r for r in items if r[key] == query[key]]
        if "flow" in query:
            items = [r for r in items if r["flow"]["uuid"] == query["flow"]]
        if "contact" in query:
            items = [r for r in items if r["contact"]["uuid"] == query["contact"]]
        if query.get("responded", "").lower() == "true":
            items = [r for r in items if r["responded"]]
        items = [{k: v for k, v in r.items() if k != "path"} if query.get("paths") == "false" else r for r in items]
        reverse = query.get("reverse", "").lower() == "true"
        return 200, self._page(_window(items, query), query, h, "/api/v2/runs.json", reverse=reverse)

    # -- paging -----------------------------------------------------------------------------------

    def _page(
        self, items: list[dict[str, Any]], query: dict[str, str], handler: Any, path: str, *, reverse: bool
    ) -> dict[str, Any]:
        """RapidPro's ``ModifiedOnCursorPagination``: newest ``modified_on`` first (``reverse``:
        oldest first), ties by id; the cursor is the opaque position of the page's last item, so
        items added meanwhile do not shift the pages."""
        position = lambda i: (i["modified_on"], i.get("id", 0))  # noqa: E731
        ordered = sorted(items, key=position, reverse=not reverse)
        if query.get("cursor"):
            try:
                last = tuple(json.loads(base64.urlsafe_b64decode(query["cursor"].encode())))
            except ValueError:
                raise ApiError(404, {"detail": "Invalid cursor"}) from None
            ordered = [i for i in ordered if (position(i) > last if reverse else position(i) < last)]
        size = self.state.page_size
        chunk = ordered[:size]
        following = None
        if len(ordered) > size:
            cursor = base64.urlsafe_b64encode(json.dumps(list(position(chunk[-1]))).encode()).decode()
            rest = {k: v for k, v in query.items() if k != "cursor"}
            host = handler.headers.get("Host") or f"{self.host}:{self.port}"
            following = f"http://{host}{path}?{urlencode({**rest, 'cursor': cursor})}"
        results = [{k: v for k, v in i.items() if k != "id"} for i in chunk]
        return {"next": following, "previous": None, "results": copy.deepcopy(results)}


def _window(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    """``after``/``before`` on ``modified_on``, both inclusive (DRF ``__gte``/``__lte``)."""
    try:
        after = parse_iso(query["after"]) if query.get("after") else None
        before = parse_iso(query["before"]) if query.get("before") else None
    except ValueError:
        raise ApiError(400, {"detail": "Invalid datetime"}) from None
    return [
        i
        for i in items
        if (after is None or parse_iso(i["modified_on"]) >= after)
        and (before is None or parse_iso(i["modified_on"]) <= before)
    ]


def _valid_urn(urn: str) -> bool:
    return bool(_TEL.match(urn)) if urn.startswith("tel:") else bool(_URN.match(urn))


def _check_urn(urn: str, key: str) -> None:
    if not _valid_urn(urn):
        raise ApiError(400, {key: [f"Invalid URN: {urn}. Ensure phone numbers contain country codes."]})


def _new_contact(name: str | None) -> dict[str, Any]:
    when = now_iso()
    return {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "language": None,
        "urns": [],
        "groups": [],
        "fields": {},
        "flow": None,
        "status": "active",
        "created_on": when,
        "modified_on": when,
        "last_seen_on": None,
    }


def _apply(contact: dict[str, Any], changes: dict[str, Any], by_urn: dict[str, str]) -> None:
    """Only the fields present change (``fields`` merge key by key, as RapidPro's do)."""
    if "urns" in changes:
        for urn in contact["urns"]:
            by_urn.pop(urn, None)
        contact["urns"] = list(changes["urns"])
        for urn in contact["urns"]:
            by_urn[urn] = contact["uuid"]
    for key in ("name", "language", "groups"):
        if key in changes:
            contact[key] = changes[key]
    if "fields" in changes:
        contact["fields"].update(changes["fields"])
    contact["modified_on"] = now_iso()


def _result(key: str, value: Any, when: datetime) -> dict[str, Any]:
    """A run's result as ``values`` holds it: ``{name, value, category, node, time}``."""
    given = value if isinstance(value, dict) else {"value": value}
    text = given.get("value")
    return {
        "name": given.get("name", key.replace("_", " ").title()),
        "value": None if text is None else str(text),
        "category": given.get("category", "All Responses" if text is not None else None),
        "node": given.get("node", str(uuid.uuid5(uuid.NAMESPACE_URL, key))),
        "time": now_iso(when),
    }
