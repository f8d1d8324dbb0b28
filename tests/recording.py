"""A real ``CouchClient`` that also records every HTTP request it makes (a response hook on its
sessions), so tests can count requests and read what was sent without faking the server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from cht_bridge.cht.couch import CouchClient


class RecordingClient(CouchClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str, str, Any]] = []  # (method, path, query, JSON body)

    def session(self) -> requests.Session:
        session = super().session()
        if self._record not in session.hooks["response"]:
            session.hooks["response"].append(self._record)
        return session

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        url = urlsplit(request.url)
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, url.path, url.query, body))

    @property
    def http(self) -> int:
        return len(self.calls)

    @property
    def view_calls(self) -> list[str]:
        return [path for _, path, _, _ in self.calls if "/_view/" in path]

    @property
    def all_docs_calls(self) -> list[list[str]]:
        return [body["keys"] for _, path, _, body in self.calls if path.endswith("/_all_docs")]

    @property
    def since_sent(self) -> list[str]:
        """The ``since`` of each ``_changes`` request, as sent."""
        return [parse_qs(query)["since"][0] for _, path, query, _ in self.calls if path.endswith("/_changes")]
