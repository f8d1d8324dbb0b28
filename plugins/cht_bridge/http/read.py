"""The one read loop every source shares (CHT's CouchDB, FHIR, JSON lists): send a read, retry
what may pass on its own, translate errors.

Retry decisions come from ``cht_bridge.http.retry`` (``classify``, ``backoff``,
``retry_after``), so reads and deliveries agree on what is retryable: timeouts, connection
errors, 408, 429 and 5xx are repeated with jittered exponential waits; 401/403 stop at once with
an ``AuthError`` (repeating a refused login locks accounts); any other answer is a
``SourceError`` carrying the status. Every request here is a read (a GET, or CouchDB's POST of
``_all_docs`` keys), so repeating it is safe.

Every answer is read against a wall-clock deadline and a size cap (``read_body``), because
``requests``' timeout bounds each socket read and not the answer: a server that sends one byte a
second never times out, and one that sends 2 GB fills the memory. Redirects are not followed: a
read that is redirected is refused with the target's origin, so nothing (credentials, query
values) goes to a host the Connection does not name.

Logs name the connection, the method, the URL without credentials or query values, and the
status: query values can be patient identifiers and bodies are patient data.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from cht_bridge.errors import AnswerLimitError, AuthError, SourceError
from cht_bridge.http.reasons import READ, ReasonStyle, answer_reason
from cht_bridge.http.retry import RetryPolicy, backoff, classify, retry_after
from cht_bridge.http.urls import safe_url

log = logging.getLogger(__name__)

#: Reads ride out a restart of the source (a few seconds); after that the task fails and
#: Airflow retries it later, from the last stored checkpoint.
READ_RETRY = RetryPolicy(retries=4, backoff_s=1.0, max_backoff_s=8.0)

MiB = 1024 * 1024
#: Bytes asked of the socket per read: large, so a 100 MB page is a few thousand Python steps.
CHUNK_BYTES = MiB
#: Of an error answer only the start is read: enough for its reason, never a whole page.
ERROR_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class AnswerLimits:
    """How long an answer's body may take to arrive, and how large it may be.

    The deadline runs from the answer's status line to its last byte; the wait for the status
    line itself is the per-read ``timeout``. Headers trickled a byte at a time are not covered
    (``http.client`` reads them before the answer is handed over): the task's execution timeout
    bounds that case. The defaults fit CHT's pages: a ``_changes`` page of
    10,000 documents (the largest ``batch_size``) with ``include_docs`` is about 100 MB at 10 KB a
    report, and a busy CHT sends it in well under a minute.
    """

    deadline_s: float = 300.0
    max_bytes: int = 256 * MiB


#: The limits of every read unless its constructor is given others.
READ_LIMITS = AnswerLimits()
#: The limits of a destination's answer to a write: an id, or a status per item of a batch.
ANSWER_LIMITS = AnswerLimits(deadline_s=60.0, max_bytes=4 * MiB)


def read_body(response: requests.Response, limits: AnswerLimits, *, reason_only: bool = False) -> bytes:
    """The body of a streamed answer (``stream=True``), read within ``limits``.

    Each socket read returns what has arrived (``read1``), so a trickle is seen between reads, and
    the socket's timeout is cut to the time left, so a stall ends at the deadline too. The body is
    then also ``response.content``, for code that reads ``.json()`` or ``.text``. On a breach the
    connection is closed (the rest of the answer is never read) and ``AnswerLimitError`` raised.
    ``reason_only`` (an error answer, read for its reason): at most ``ERROR_BODY_BYTES``, and what
    arrived by the cap or the deadline is returned instead of raising.

    :raises AnswerLimitError: the body is larger than ``limits.max_bytes`` or not complete after
        ``limits.deadline_s``.
    :raises requests.RequestException: the connection broke, or stalled for a whole read timeout.
    """
    cap = min(limits.max_bytes, ERROR_BODY_BYTES) if reason_only else limits.max_bytes
    raw = response.raw
    if raw is None:  # an answer made in memory, not received: nothing to wait for
        return response.content or b""
    sock = getattr(raw.connection, "sock", None)
    deadline = time.monotonic() + limits.deadline_s
    chunks: list[bytes] = []
    size, breach = 0, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                breach = AnswerLimitError(f"answer not complete after {limits.deadline_s:g} s", too_large=False)
                break
            if sock is not None and (sock.gettimeout() is None or sock.gettimeout() > left):
                sock.settimeout(left)
            try:
                chunk = raw.read1(CHUNK_BYTES, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                if time.monotonic() < deadline:
                    raise requests.ReadTimeout("the answer stalled") from None
                continue  # the deadline check names it
            except urllib3.exceptions.HTTPError as exc:
                raise requests.ConnectionError(type(exc).__name__) from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                breach = AnswerLimitError(f"answer larger than {_size(cap)}", too_large=True)
                break
    except BaseException:
        response.close()
        raise
    if breach is not None:
        response.close()
        if not reason_only:
            raise breach
    body = b"".join(chunks)
    if reason_only:
        body = body[:cap]
    response._content = body  # noqa: SLF001 - what requests' own .content would hold, read within limits
    response._content_consumed = True  # noqa: SLF001
    return body


def request_within(
    session: requests.Session,
    method: str,
    url: str,
    limits: AnswerLimits,
    *,
    whole: tuple[int, ...] = (),
    **kwargs: Any,
) -> requests.Response:
    """Send one request that follows no redirect, and read its answer within ``limits``.

    Every request the bridge sends goes through here, so none can forget either rule: a redirect
    would take a POST's meaning or the credentials elsewhere (requests turns a redirected POST into
    a GET), and an answer read without a deadline and a cap could hold the task for ever. A 2xx
    body is read whole (``response.content``), an error answer only for its reason, a refusal of
    the credentials (401/403) not at all: its connection is closed. The statuses in ``whole`` are
    read whole too, within ``limits``: error answers that carry per-record results (DHIS2's 409
    import summary lists every rejected value).

    :raises AnswerLimitError: the body broke ``limits``; its ``status`` is the answer's.
    :raises requests.RequestException: no answer, or the connection broke or stalled.
    """
    response = session.request(method, url, stream=True, allow_redirects=False, **kwargs)
    kind = classify(response.status_code)
    if kind == "auth":
        response.close()
        return response
    try:
        read_body(response, limits, reason_only=kind != "delivered" and response.status_code not in whole)
    except AnswerLimitError as exc:
        exc.status = response.status_code
        raise
    return response


@dataclass(frozen=True)
class Unanswered:
    """Why one request got no answer a destination can read: its reason, and whether to try again."""

    status: int | None  # the answer's status when its body broke the limits, else None
    reason: str  # one line, without the URL (it may hold query values)
    retryable: bool


def answer_or_reason(
    session: requests.Session,
    method: str,
    url: str,
    limits: AnswerLimits,
    *,
    conn_id: str,
    system: str,
    timeout: float,
    **kwargs: Any,
) -> requests.Response | Unanswered:
    """``request_within``, with the ways of getting no answer turned into one ``Unanswered``.

    Every destination sends its requests through this, so a timeout, a broken connection and an
    answer over its limits read the same in every ledger, and a refused login stops every kind.

    :raises AuthError: 401/403 (repeating a refused login locks accounts).
    """
    try:
        response = request_within(session, method, url, limits, timeout=timeout, **kwargs)
    except requests.Timeout:
        return Unanswered(None, f"timeout after {timeout:g} s", True)
    except requests.RequestException as exc:  # no str(exc): it holds the URL with its query
        return Unanswered(None, type(exc).__name__, True)
    except AnswerLimitError as exc:
        return Unanswered(exc.status, f"HTTP {exc.status}: {exc}", not exc.too_large)
    if classify(response.status_code) == "auth":
        raise AuthError(conn_id, response.status_code, system)
    return response


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n} bytes"


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
        reason: ReasonStyle = READ,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limits: AnswerLimits = READ_LIMITS,
    ) -> None:
        self.session = session
        self.limits = limits
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
                response = request_within(
                    self.session, method, url, self.limits,
                    params=params, json=body, headers=self._headers, timeout=self.timeout,
                )  # fmt: skip
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
            except requests.RequestException as exc:  # no str(exc): it holds the URL with its query
                status, problem = None, type(exc).__name__
            except AnswerLimitError as exc:
                # Not repeated: a too-large answer would be as large again, and a read that already
                # took the whole deadline would hold the task for as long again, each time.
                raise SourceError(
                    f"{self.system} connection '{self.conn_id}': {exc} on {where}; the read was stopped",
                    status=exc.status,
                ) from None
            else:
                problem = f"HTTP {status}: {answer_reason(response, self._reason).text}"
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
