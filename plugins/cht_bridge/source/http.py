"""The one read loop every source shares (CHT's CouchDB, FHIR, JSON lists): send a read, retry
what may pass on its own, translate errors.

Retry decisions come from ``cht_bridge.destinations.retry`` (``classify``, ``backoff``,
``retry_after``), so reads and deliveries agree on what is retryable: timeouts, connection
errors, 408, 429 and 5xx are repeated with jittered exponential waits; 401/403 stop at once with
an ``AuthError`` (repeating a refused login locks accounts); any other answer is a
``SourceError`` carrying the status. Every request here is a read (a GET, or CouchDB's POST of
``_all_docs`` keys), so repeating it is safe.

Logs name the connection, the method, the URL without credentials or query values, and the
status: query values can be patient identifiers and bodies are patient data.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests

from cht_bridge.destinations.retry import RetryPolicy, backoff, classify, retry_after
from cht_bridge.errors import AuthError, SourceError

log = logging.getLogger(__name__)

#: Reads ride out a restart of the source (a few seconds); after that the task fails and
#: Airflow retries it later, from the last stored checkpoint.
READ_RETRY = RetryPolicy(retries=4, backoff_s=1.0, max_backoff_s=8.0)


def safe_url(url: str, params: dict[str, Any] | None = None) -> str:
    """``url`` for a log line: no user-info, and query parameter names only (values may be patient data)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    names = [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)] + list(params or {})
    query = "&".join(dict.fromkeys(f"{name}=…" for name in names))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def default_reason(response: requests.Response) -> str:
    """A short, value-free reason for an error answer: a JSON error message or the status phrase."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return body[key][:200]
    return response.reason or f"HTTP {response.status_code}"


class Reader:
    """GETs JSON for one source connection, with retries; one instance per source object."""

    def __init__(
        self,
        session: requests.Session,
        *,
        conn_id: str,
        system: str,
        timeout: float | tuple[float, float] = 30.0,
        retry: RetryPolicy = READ_RETRY,
        reason: Callable[[requests.Response], str] = default_reason,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.conn_id = conn_id
        self.system = system
        self.timeout = timeout
        self.retry = retry
        self.requests = 0
        self.retries = 0
        self._reason = reason
        self._headers = dict(headers or {})
        self._sleep = sleep
        self._rng = random.Random()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """The parsed JSON body of a 2xx answer to ``GET url``.

        :raises AuthError: on 401/403, without retrying.
        :raises SourceError: on any other non-2xx answer (after retries for the retryable ones), on
            an unreachable server after retries, or on a 2xx body that is not JSON.
        """
        text = self.request_text("GET", url, params=params)
        try:
            return json.loads(text)
        except ValueError:
            raise SourceError(
                f"{self.system} connection '{self.conn_id}': GET {safe_url(url, params)} answered "
                "with a body that is not JSON",
            ) from None

    def request_text(self, method: str, url: str, *, params: dict[str, Any] | None = None, body: Any = None) -> str:
        """The body of a 2xx answer to a read, as text (CHT pages go to V8 unparsed).

        :raises AuthError: on 401/403, without retrying.
        :raises SourceError: on any other non-2xx answer (after retries for the retryable ones), or
            on an unreachable server after retries.
        """
        where = f"{method} {safe_url(url, params)}"
        problem, status = "no answer", None
        for attempt in range(self.retry.retries + 1):
            wait_asked = None
            self.requests += 1
            try:
                response = self.session.request(
                    method, url, params=params, json=body, headers=self._headers, timeout=self.timeout
                )
            except requests.RequestException as exc:  # no str(exc): it holds the URL with its query
                status, problem = None, type(exc).__name__
            else:
                status = response.status_code
                kind = classify(status)
                if kind == "auth":
                    raise AuthError(self.conn_id, status, self.system)
                if kind == "delivered":
                    try:
                        return response.content.decode("utf-8")
                    except UnicodeDecodeError:  # its str() is value-free, but the error holds the body
                        raise SourceError(
                            f"{self.system} connection '{self.conn_id}': {where} answered with a body that is "
                            "not UTF-8",
                            status=status,
                        ) from None
                problem = f"HTTP {status}: {self._reason(response)}"
                if kind == "permanent":
                    break
                wait_asked = retry_after(response.headers.get("Retry-After"))
            if attempt < self.retry.retries:
                # Honour a Retry-After, but no longer than the policy's cap: past that the task
                # fails and the next run (or Airflow's task retry) picks up from the checkpoint.
                wait = min(max(backoff(attempt, self.retry, self._rng), wait_asked or 0.0), self.retry.max_backoff_s)
                log.warning(
                    "%s connection '%s': %s on %s; trying again in %.1f s (repeat %d of %d)",
                    self.system,
                    self.conn_id,
                    problem,
                    where,
                    wait,
                    attempt + 1,
                    self.retry.retries,
                )
                self.retries += 1
                self._sleep(wait)
        raise SourceError(f"{self.system} connection '{self.conn_id}': {problem} on {where}", status=status)
