"""A small CouchDB client for CHT's ``medic`` database, over the CHT API or CouchDB directly.

Plain ``requests``, one session per thread (a prefetching thread reads ``_changes`` while the
main thread fetches lineage), ``Accept: application/json`` on every call so CHT answers errors
as JSON, and the ``seq`` kept as the opaque JSON value the server gave. The login goes only to
the CHT's own origin (``cht_bridge.http.origin``), and every answer is read within ``limits``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.auth import AuthBase

from cht_bridge.http.origin import scoped_session
from cht_bridge.http.read import READ_LIMITS, READ_RETRY, AnswerLimits, Reader
from cht_bridge.http.retry import RetryPolicy

#: (connect, read) seconds. A ``_changes`` page of 5,000 docs takes a few seconds on a busy CHT.
DEFAULT_TIMEOUT = (10.0, 300.0)
#: Keys per GET view query: keeps the URL under common 8 KiB proxy limits.
VIEW_KEYS_PER_REQUEST = 100


def on_this_machine(url: str) -> bool:
    """Whether ``url`` names the loopback (``localhost``, 127.0.0.0/8, ``::1``).

    Such a CouchDB is asked for its answers uncompressed: on the machine itself moving the bytes
    costs nothing, while gzip costs the server more CPU than sending them (pouchdb-server: about
    5 µs a document of a ``_changes`` page) and the worker about 1.5 µs to inflate, on the same
    cores. A CHT anywhere else keeps gzip, where the network is what costs. A loopback address
    is not always this machine (``kubectl port-forward``, ``ssh -L``, a local TLS proxy in front of
    a remote CHT): the CHT Connection's ``compress`` extra then says so (``CouchClient``'s ``compress``).
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CouchClient:
    """Read access to one CouchDB database, with errors translated at the boundary."""

    def __init__(
        self,
        base_url: str,
        db: str = "medic",
        auth: tuple[str, str] | AuthBase | None = None,
        *,
        conn_id: str = "(no connection)",
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        verify: bool | str = True,
        retry: RetryPolicy = READ_RETRY,
        limits: AnswerLimits = READ_LIMITS,
        compress: bool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: Ask for gzip; None: unless the URL is on the loopback (``on_this_machine``).
        self.compress = not on_this_machine(self.base_url) if compress is None else compress
        self.db = db
        self.conn_id = conn_id
        self._auth = auth
        self.timeout = timeout
        self._verify = verify
        self._retry = retry
        self._limits = limits
        self._local = threading.local()

    @property
    def db_url(self) -> str:
        return f"{self.base_url}/{quote(self.db, safe='')}"

    def session(self) -> requests.Session:
        """This thread's session: JSON in and out, the login only for the CHT's origin."""
        session = getattr(self._local, "session", None)
        if session is None:
            if isinstance(self._auth, tuple):
                session = scoped_session(self.base_url, basic=self._auth, verify=self._verify)
            else:  # an auth the hook built (``cht_bridge.http.auth``), shared by every thread's session
                session = scoped_session(self.base_url, verify=self._verify)
                session.auth = self._auth
            session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})
            if not self.compress:
                session.headers["Accept-Encoding"] = "identity"
            self._local.session = session
        return session

    def request_json(self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """A read's parsed answer (``Reader.request_text``'s errors and retries)."""
        # pouchdb-server answers some JSON with text/plain; parse regardless of content type.
        return json.loads(self.request_text(method, url, params=params, body=body))

    def request_text(self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None) -> str:
        """A read's answer as sent, through this thread's ``Reader`` (retries, deadline, size cap)."""
        return self.reader().request_text(method, url, params=params, body=body)

    def reader(self) -> Reader:
        """This thread's reader: the shared read loop over this thread's session."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = Reader(
                self.session(),
                conn_id=self.conn_id,
                system="CHT",
                timeout=self.timeout,
                retry=self._retry,
                limits=self._limits,
            )
            self._local.reader = reader
        return reader

    def info(self) -> dict:
        """Fetch the database info; the cheapest call that proves the credentials work."""
        return self.request_json("GET", self.db_url)

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
        return self.request_text("GET", f"{self.db_url}/_changes", params=params)

    def all_docs_text(self, ids: list[str]) -> str:
        """The ``_all_docs?keys=`` answer for ``ids``, in one request, as sent."""
        return self.request_text(
            "POST", f"{self.db_url}/_all_docs", params={"include_docs": "true"}, body={"keys": ids}
        )

    def view_text(self, ddoc: str, view: str, params: dict[str, Any]) -> str:
        """One GET query of a view (range queries: ``startkey``/``endkey``/``limit``), as sent."""
        return self.request_text("GET", self._view_url(ddoc, view), params=params)

    def _view_url(self, ddoc: str, view: str) -> str:
        return f"{self.db_url}/_design/{quote(ddoc, safe='')}/_view/{quote(view, safe='')}"

    def view_texts(self, ddoc: str, view: str, keys: list[Any]) -> Iterator[tuple[list[Any], str]]:
        """Query a view by keys with GET, which CHT allows online users (POST needs can_edit).

        Yields ``(keys, answer)`` per chunk of keys, so URLs stay under proxy limits.
        """
        url = self._view_url(ddoc, view)
        for start in range(0, len(keys), VIEW_KEYS_PER_REQUEST):
            chunk = keys[start : start + VIEW_KEYS_PER_REQUEST]
            yield chunk, self.request_text("GET", url, params={"keys": json.dumps(chunk, separators=(",", ":"))})
