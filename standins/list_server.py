"""A stand-in "EMR list" JSON API: one list of items behind basic auth, paged two common ways.

Reverse pipelines read lists such as lost-to-follow-up patients from an EMR's own REST API. No
such EMR runs here, so this in-process server offers the two paging styles met in practice, over
the same list (kept in insertion order, so appended items come last):

* ``GET /cursor?cursor=<opaque>[&page_size=N]`` → ``{"data": {"results": [...]},
  "next_cursor": "<opaque>" | null}`` (the RapidPro/Django-cursor shape);
* ``GET /offset?offset=M&limit=N`` → ``{"results": [...], "count": <total>}`` (the
  Django-REST-framework limit/offset shape);
* ``GET /_stats`` → ``{"requests", "served", "failed", "unauthorized"}`` (counts, no items).

Without valid credentials every path answers 401 ``{"error": "unauthorized"}``; an unreadable
cursor or offset is a 400. ``inject(500, 429, ...)`` queues answers that the next list requests
get instead of a page (429 and 503 with ``Retry-After``), to prove that readers retry.
Items are patient-like data: logs hold method, path, status and counts only.

Usage::

    with ListServer([{"id": "p1", ...}], credentials=("emr", "secret"), page_size=10) as server:
        requests.get(server.url + "/cursor", auth=server.credentials)
"""

from __future__ import annotations

import base64
import copy
import hmac
import logging
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standins.http_server import BackgroundHttpServer, StandInHandler, send_json

log = logging.getLogger("standins.list_server")


class _State:
    """The list, the injected answers and the counters, shared by handler threads under one lock."""

    def __init__(self, items: list[dict[str, Any]], credentials: tuple[str, str] | None, page_size: int) -> None:
        self.items = copy.deepcopy(items)
        self.credentials = credentials
        self.page_size = page_size
        self.retry_after = "1"
        self.injected: deque[int] = deque()
        self.stats = {"requests": 0, "served": 0, "failed": 0, "unauthorized": 0}
        self.lock = threading.Lock()

    def authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return False
        user, password = self.credentials
        return hmac.compare_digest(given, f"{user}:{password}".encode())

    def count(self, name: str) -> None:
        with self.lock:
            self.stats[name] += 1

    def next_injected(self) -> int | None:
        with self.lock:
            if not self.injected:
                return None
            self.stats["failed"] += 1
            return self.injected.popleft()

    def window(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            self.stats["served"] += 1
            return copy.deepcopy(self.items[offset : offset + limit]), len(self.items)


def encode_cursor(offset: int) -> str:
    """An opaque cursor (clients must not build their own, as with real cursor APIs)."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The offset behind a cursor; ValueError for anything this server did not hand out."""
    padded = cursor + "=" * (-len(cursor) % 4)
    text = base64.urlsafe_b64decode(padded.encode()).decode()
    if not text.startswith("o:"):
        raise ValueError(cursor)
    offset = int(text[2:])
    if offset < 0:
        raise ValueError(cursor)
    return offset


class _Handler(StandInHandler):
    server_version = "cht-bridge-list-server/1"
    state: _State  # set on a per-server subclass

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        log.info("%s %s -> %d", self.command, urlsplit(self.path).path, status)
        send_json(self, status, body, headers)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        state = self.state
        parts = urlsplit(self.path)
        if not state.authorized(self.headers.get("Authorization")):
            state.count("unauthorized")
            self._send(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Basic realm="emr"'})
            return
        if parts.path == "/_stats":
            with state.lock:
                self._send(200, dict(state.stats))
            return
        if parts.path not in ("/cursor", "/offset"):
            self._send(404, {"error": "not found"})
            return
        state.count("requests")
        injected = state.next_injected()
        if injected is not None:
            headers = {"Retry-After": state.retry_after} if injected in (429, 503) else {}
            self._send(injected, {"error": HTTPStatus(injected).phrase}, headers)
            return
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            if parts.path == "/cursor":
                self._cursor_page(query)
            else:
                self._offset_page(query)
        except ValueError:
            self._send(400, {"error": "bad cursor, offset or limit"})

    def _cursor_page(self, query: dict[str, str]) -> None:
        offset = decode_cursor(query["cursor"]) if query.get("cursor") else 0
        size = _positive(query.get("page_size"), self.state.page_size)
        items, total = self.state.window(offset, size)
        following = encode_cursor(offset + size) if offset + size < total else None
        self._send(200, {"data": {"results": items}, "next_cursor": following})

    def _offset_page(self, query: dict[str, str]) -> None:
        offset = int(query.get("offset") or 0)
        if offset < 0:
            raise ValueError(offset)
        size = _positive(query.get("limit"), self.state.page_size)
        items, total = self.state.window(offset, size)
        self._send(200, {"results": items, "count": total})


def _positive(text: str | None, default: int) -> int:
    value = default if text in (None, "") else int(text)
    if value < 1:
        raise ValueError(value)
    return value


class ListServer(BackgroundHttpServer):
    """The list server in a background thread; also a context manager."""

    def __init__(
        self,
        items: list[dict[str, Any]] | None = None,
        credentials: tuple[str, str] | None = None,
        page_size: int = 10,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.credentials = credentials
        self.state = _State(items or [], credentials, page_size)

    # -- the list --------------------------------------------------------------------------------
    def items(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.items)

    def append(self, *items: dict[str, Any]) -> None:
        """Add items at the end of the list (a new patient lost to follow-up)."""
        with self.state.lock:
            self.state.items.extend(copy.deepcopy(list(items)))

    def replace(self, item: dict[str, Any], key: str = "id") -> None:
        """Replace the item with the same ``key`` in place (an updated record keeps its position)."""
        with self.state.lock:
            for i, existing in enumerate(self.state.items):
                if existing.get(key) == item.get(key):
                    self.state.items[i] = copy.deepcopy(item)
                    return
        raise KeyError(item.get(key))

    def inject(self, *statuses: int, retry_after: str = "1") -> None:
        """The next ``len(statuses)`` list requests get these answers instead of a page, in order."""
        for status in statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"injected answers must be 4xx or 5xx, not {status}")
        with self.state.lock:
            self.state.injected.extend(statuses)
            self.state.retry_after = retry_after

    def stats(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.stats)

    # -- life cycle ------------------------------------------------------------------------------
    thread_name = "list-server"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"state": self.state})
