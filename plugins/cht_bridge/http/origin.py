"""A Connection's credentials go to that Connection's origin and nowhere else.

Every source and destination talks to one origin, the scheme, host and port of its Airflow
Connection. ``OriginAuth`` holds the secret and adds it to each request as it is prepared, and
only when that request's origin is the Connection's; the session itself never holds it (no
``session.auth`` tuple, no ``session.headers`` entry), because anything on a session goes to
whatever URL an answer names: a FHIR next link, a ``Location``. ``requests`` takes
``Authorization`` off a redirect to another host, but not ``x-api-key`` or any other header, so
``ScopedSession`` runs the same check again on every redirect hop it follows: the credentials come
off on the way to another origin and go back on for a hop to the Connection's own. (The bridge's
own reads and writes follow no redirects at all; the session is the safety net for any code that
does.)

Origins are compared parsed, never by ``startswith``: ``https://emr.example.org@evil.example/``
and ``https://emr.example.org.evil.example/`` both start with ``https://emr.example.org``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: str) -> Origin | None:
    """``(scheme, host, port)`` of an absolute http(s) URL, default ports filled in; None otherwise.

    Hosts compare case-insensitively and without a trailing dot (``Example.org.`` is
    ``example.org``); a malformed port is None, so it matches nothing.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def has_userinfo(url: str) -> bool:
    """True when ``url`` names a user (``user:pass@host``): a link that smuggles a host behind a name."""
    return "@" in urlsplit(url).netloc


class OriginAuth(AuthBase):
    """A Connection's secret, added to a request only when it goes to the Connection's origin.

    ``basic`` is a login and password (HTTP Basic); ``headers`` are header names and values
    (``Authorization: Bearer …``, ``x-api-key: …``). A request to any other origin gets none of
    them, and loses them if it already had them (a redirect hop copies the previous headers).
    """

    def __init__(
        self, base_url: str, *, basic: tuple[str, str] | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        where = origin(base_url)
        if where is None:
            raise ValueError("a Connection's credentials need an absolute http(s) URL to belong to")
        self.origin = where
        self._basic = HTTPBasicAuth(*basic) if basic else None
        self._headers = dict(headers or {})
        self._names = list(self._headers) + (["Authorization"] if self._basic else [])

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url or "") != self.origin:
            for name in self._names:
                request.headers.pop(name, None)
            return request
        if self._basic is not None:
            self._basic(request)
        request.headers.update(self._headers)
        return request

    def __repr__(self) -> str:  # never the secret
        scheme, host, port = self.origin
        return f"OriginAuth({scheme}://{host}:{port})"


class ScopedSession(requests.Session):
    """A session whose redirects carry its ``OriginAuth`` credentials only back to their origin.

    It also reads the environment's proxy settings (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``)
    and CA bundle (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) once per scheme and host, not on every
    request as ``requests`` does (about 0.2 ms a request, a tenth of a run's HTTP cost): a session
    lives for one run, whose environment does not change, and what ``requests`` reads depends on
    nothing else (``get_environ_proxies`` looks at the URL's host and port only).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None]] = {}
        self._environment_lock = threading.Lock()  # a destination's pool sends from several threads

    def merge_environment_settings(
        self, url: str, proxies: dict[str, str] | None, stream: bool | None, verify: Any, cert: Any
    ) -> dict[str, Any]:
        """``requests.Session.merge_environment_settings``, with the environment's part read once per host."""
        if not self.trust_env or (proxies and "no_proxy" in proxies):  # a request's own no_proxy: as requests does
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        where = tuple(urlsplit(url)[:2])
        with self._environment_lock:
            known = self._environment.get(where)
            if known is None:
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
                known = self._environment[where] = (get_environ_proxies(url, no_proxy=None), bundle)
        env_proxies, bundle = known
        if proxies is not None:
            for scheme, proxy in env_proxies.items():
                proxies.setdefault(scheme, proxy)
        if verify is True or verify is None:
            verify = bundle or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        super().rebuild_auth(prepared_request, response)
        if isinstance(self.auth, OriginAuth):
            self.auth(prepared_request)


def scoped_session(
    base_url: str,
    *,
    basic: tuple[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    verify: bool | str = True,
) -> requests.Session:
    """A session for one Connection: its credentials scoped to ``base_url``'s origin, its TLS setting."""
    session = ScopedSession()
    session.verify = verify
    if basic or headers:
        session.auth = OriginAuth(base_url, basic=basic, headers=headers)
    return session
