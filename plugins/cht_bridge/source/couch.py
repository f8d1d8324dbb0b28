"""A small CouchDB client for CHT's ``medic`` database, over the CHT API or CouchDB directly.

Plain ``requests``, one session per thread (a prefetching thread reads ``_changes`` while the
main thread fetches lineage), ``Accept: application/json`` on every call so CHT answers errors
as JSON, and the ``seq`` kept as the opaque JSON value the server gave.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import requests

from cht_bridge.destinations.retry import RetryPolicy, backoff, classify
from cht_bridge.errors import AuthError, SourceError

log = logging.getLogger(__name__)

#: (connect, read) seconds. A ``_changes`` page of 5,000 docs takes a few seconds on a busy CHT.
DEFAULT_TIMEOUT = (10.0, 300.0)
#: Keys per GET view query: keeps the URL under common 8 KiB proxy limits.
VIEW_KEYS_PER_REQUEST = 100
#: Reads are repeated through a CHT or CouchDB restart (a few seconds), then the run fails and
#: Airflow retries the task; every request here is a read, so repeating it is always safe.
READ_RETRY = RetryPolicy(retries=4, backoff_s=1.0, max_backoff_s=8.0)


class CouchClient:
    """Read access to one CouchDB database, with errors translated at the boundary."""

    def __init__(
        self,
        base_url: str,
        db: str = "medic",
        auth: tuple[str, str] | None = None,
        *,
        conn_id: str = "(no connection)",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        retry: RetryPolicy = READ_RETRY,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.db = db
        self.conn_id = conn_id
        self._auth = auth
        self._timeout = timeout
        self._verify = verify
        self._retry = retry
        self._rng = random.Random()
        self._local = threading.local()

    @property
    def db_url(self) -> str:
        return f"{self.base_url}/{quote(self.db, safe='')}"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            session.verify = self._verify
            session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
            self._local.session = session
        return session

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        # pouchdb-server answers some JSON with text/plain; parse regardless of content type.
        return json.loads(self._request_text(method, url, **kwargs))

    def _request_text(self, method: str, url: str, **kwargs: Any) -> str:
        where = f"{method} {url.split('?')[0]}"
        for attempt in range(self._retry.retries + 1):
            try:
                response = self._session().request(method, url, timeout=self._timeout, **kwargs)
            except requests.RequestException as exc:
                status, short = None, type(exc).__name__
                problem = f"{short} on {where}"
            else:
                status, short = response.status_code, f"HTTP {response.status_code}"
                problem = f"{short} on {where}: {response.text[:200]}"
                kind = classify(status)
                if kind == "auth":
                    raise AuthError(self.conn_id, status, "CHT")
                if kind == "delivered":
                    return response.content.decode("utf-8")
                if kind == "permanent":
                    break
            if attempt < self._retry.retries:
                wait = backoff(attempt, self._retry, self._rng)
                log.warning(
                    "CHT connection '%s': %s; trying again in %.1f s", self.conn_id, f"{short} on {where}", wait
                )
                time.sleep(wait)
        raise SourceError(f"CHT connection '{self.conn_id}': {problem}", status=status)

    def info(self) -> dict:
        """Fetch the database info; the cheapest call that proves the credentials work."""
        return self._request("GET", self.db_url)

    def changes_text(self, since: Any, limit: int) -> str:
        """One page of changes with documents after ``since`` (an opaque seq, or 0), as sent.

        The text goes to the sandbox unparsed: V8 parses it once, where it is used.
        """
        params = {
            "since": since if isinstance(since, (str, int)) else json.dumps(since),
            "limit": limit,
            "include_docs": "true",
            "seq_interval": limit,
        }
        return self._request_text("GET", f"{self.db_url}/_changes", params=params)

    def all_docs_text(self, ids: list[str]) -> str:
        """The ``_all_docs?keys=`` answer for ``ids``, in one request, as sent."""
        return self._request_text(
            "POST", f"{self.db_url}/_all_docs", params={"include_docs": "true"}, json={"keys": ids}
        )

    def view_text(self, ddoc: str, view: str, params: dict[str, Any]) -> str:
        """One GET query of a view (range queries: ``startkey``/``endkey``/``limit``), as sent."""
        return self._request_text("GET", self._view_url(ddoc, view), params=params)

    def _view_url(self, ddoc: str, view: str) -> str:
        return f"{self.db_url}/_design/{quote(ddoc, safe='')}/_view/{quote(view, safe='')}"

    def view_texts(self, ddoc: str, view: str, keys: list[Any]) -> Iterator[tuple[list[Any], str]]:
        """Query a view by keys with GET, which CHT allows online users (POST needs can_edit).

        Yields ``(keys, answer)`` per chunk of keys, so URLs stay under proxy limits.
        """
        url = self._view_url(ddoc, view)
        for start in range(0, len(keys), VIEW_KEYS_PER_REQUEST):
            chunk = keys[start : start + VIEW_KEYS_PER_REQUEST]
            yield chunk, self._request_text("GET", url, params={"keys": json.dumps(chunk, separators=(",", ":"))})
