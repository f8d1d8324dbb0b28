"""The generic REST destination: JSON over HTTP to any system with a REST API.

This is also how OpenHIM channels, NiFi ``ListenHTTP`` endpoints and custom EMRs are reached.
Two modes: one payload per request with a bounded number in flight on a keep-alive session, or a
JSON array of up to ``batch_size`` payloads per request for receivers that accept batches.
Every request carries an ``Idempotency-Key``; a batch also lists each item's key, in order, in
``Idempotency-Keys``, so the receiver can drop a repeat after a crash or a retry.

Every answer is sorted by ``retry.classify``. What may succeed later (no answer, 408, 429, 5xx)
is sent again after a backoff, inside the call; what will not (another 4xx, a redirect) fails at
once with the destination's reason; refused credentials stop everything. A batch refused as a
whole is sent again in halves until the payloads at fault are isolated, so one bad document does
not dead-letter the ninety-nine good ones sent with it.

An answer's body is read within ``limits`` (a deadline from its status line to its last byte, and
a size cap). One that is not complete by the deadline is a retryable failure, like a timeout: the
receiver may still be busy, and the idempotency key makes sending again safe. A 2xx answer larger
than the cap is a permanent failure of every item the request carried: the same request would get
the same answer, and a batch's answer unread cannot say which items were taken, so they become
dead letters a person can look at and replay rather than deliveries the ledger cannot vouch for.
An error answer is read only for its reason (``read_body``'s ``reason_only``); its status decides. A redirect's ``Location`` is kept without user-info or query values.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Self
from urllib.parse import urlsplit

import requests

from cht_bridge.destinations.base import BaseDestination, Delivery, Result, keep_alive
from cht_bridge.errors import AuthError, CircuitOpenError
from cht_bridge.http import reasons
from cht_bridge.http.read import ANSWER_LIMITS, AnswerLimits, Unanswered, answer_or_reason
from cht_bridge.http.retry import CircuitBreaker, RetryPolicy, backoff, classify, delivery_policy, retry_after

log = logging.getLogger(__name__)

REASON_CHARS = 300  # how much of a rejection body is kept as the reason
# Statuses that blame the request itself (endpoint, method, content type), never one item in it:
# halving a batch answered so would only send every payload again to get the same answer.
WHOLE_REQUEST_STATUSES = frozenset({404, 405, 415})


@dataclass(frozen=True)
class _Answer:
    """What one request got back: a result per item it carried, and what to do next."""

    results: list[Result]
    wait: float | None = None  # the destination's Retry-After, in seconds
    split: bool = False  # a batch refused as a whole: send it in halves to find the items at fault


class RestDestination(BaseDestination):
    """POST (or PUT) JSON payloads to ``base_url + path`` on a prepared session.

    A kind that sends its own bulk document (a FHIR transaction Bundle) subclasses it and keeps its
    retries, bisection and breaker: it overrides ``_prepare`` (the request), ``_array_results``
    (the items of a 2xx bulk answer) and ``reason_style`` (how its refusals are worded).
    """

    reason_style = reasons.DESTINATION
    reads_ledger_while_sending = False  # its send reads neither the ledger nor the store (a subclass may)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A kind built on this one (FHIR, the DHIS2 tracker) is taken to read the ledger while it
        # sends, as every kind is (``BaseDestination``), until it says otherwise itself.
        super().__init_subclass__(**kwargs)
        if "reads_ledger_while_sending" not in cls.__dict__:
            cls.reads_ledger_while_sending = True

    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        path: str,
        *,
        conn_id: str,
        method: str = "POST",
        mode: str = "single",
        batch_size: int = 100,
        concurrency: int = 4,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        limits: AnswerLimits = ANSWER_LIMITS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.url = self._url(path)
        self.conn_id = conn_id
        self.method = method
        self.mode = mode
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout = timeout
        self.limits = limits
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = session
        keep_alive(session, concurrency, "application/json")
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rest") if mode == "single" else None
        )
        self._refused: AuthError | None = None  # once credentials are refused, send nothing more
        self._breaker = CircuitBreaker(self.retry.breaker_after)  # once open, send nothing more
        self._lock = threading.Lock()
        self._answered = False  # has any request come back without refusing the credentials?
        self.requests = 0  # requests sent so far, by every thread
        self.retries = 0  # of which repeats after a retryable answer

    @classmethod
    def configured(cls, session: requests.Session, base_url: str, destination: Any, delivery: Any = None) -> Self:
        """The destination a pipeline file's ``destination`` and ``delivery`` blocks describe.

        One place turns the checked config into a destination: Airflow's hook (with a session
        from the Connection), the benchmark worker and the crash tests (with a plain session).
        """
        retry = delivery_policy(delivery)
        return cls(
            session,
            base_url,
            destination.path,
            conn_id=destination.conn_id,
            method=destination.method,
            mode=destination.mode,
            batch_size=destination.batch_size,
            concurrency=destination.concurrency,
            timeout=destination.timeout,
            retry=retry,
        )

    def send(self, deliveries: list[Delivery]) -> list[Result]:
        """One ``Result`` per delivery, in order.

        :raises AuthError: the credentials were refused; nothing more is sent by this object.
        :raises CircuitOpenError: too many failed tries in a row; it carries the finished results.
        """
        if not deliveries:
            return []
        units = self._units(deliveries)
        deliver = lambda unit: self._deliver([deliveries[i] for i in unit])  # noqa: E731
        answered: list[list[Result | None]] = []
        if not self._answered:
            # The first request goes alone: refused credentials then cost one request, not one per
            # worker (CHT-style servers lock an account after a burst of failed logins).
            answered.append(deliver(units[0]))
            self._answered = True
        run = self._pool.map if self._pool is not None else map  # batches go one at a time, in order
        answered.extend(run(deliver, units[len(answered) :]))
        results: list[Result | None] = [None] * len(deliveries)
        for unit, unit_results in zip(units, answered, strict=True):
            for i, result in zip(unit, unit_results, strict=True):
                results[i] = result
        finished = [r for r in results if r is not None]  # all of them unless the breaker opened
        if self._breaker.is_open:
            raise CircuitOpenError(self.conn_id, self._breaker.failures, self._breaker.last_error, finished)
        return finished

    def _units(self, deliveries: list[Delivery]) -> list[list[int]]:
        """Group delivery indices into requests: one each, or ``batch_size`` per array in batch mode.

        A delivery with its own method or path (a DELETE) always goes alone: it has no array form.
        """
        if self.mode != "batch":
            return [[i] for i in range(len(deliveries))]
        units: list[list[int]] = []
        chunk: list[int] = []
        for i, item in enumerate(deliveries):
            if _overridden(item):
                units.append([i])
                continue
            chunk.append(i)
            if len(chunk) == self.batch_size:
                units.append(chunk)
                chunk = []
        return units + [chunk] if chunk else units

    def _deliver(self, items: list[Delivery], retry: int = 0) -> list[Result | None]:
        """Send ``items`` in one request and see every one of them through to a final result.

        Retryable items go again, alone or as a smaller batch, after a backoff (``retry`` is the
        number of repeats so far); a batch refused as a whole is split in halves, each a new request
        with the full retry budget. ``None`` marks an item left unfinished because the breaker
        opened: it stays pending for the next run.
        """
        answer = self._request(items, retry)
        if answer is None:
            return [None] * len(items)
        results: list[Result | None] = list(answer.results)
        failed = [i for i, r in enumerate(answer.results) if r.retryable]
        if len(failed) < len(items) and not _endpoint_refused(answer.results):
            self._breaker.success()  # the destination took or refused something: it is up
        elif self._breaker.failure(answer.results[0].error):
            # Down, or (404/405/415/redirect for everything) a wrong URL: stop, do not dead-letter the feed.
            return [None] * len(items)
        if answer.split:
            half = len(items) // 2
            return _one_more_try(self._deliver(items[:half]) + self._deliver(items[half:]))
        if not failed:
            return results
        if answer.wait is not None and answer.wait > self.retry.max_backoff_s:
            # Not worth holding a worker slot for: the next run will be later than that anyway.
            note = f"; the destination asked to wait {answer.wait:.0f} s"
            return [replace(r, error=f"{r.error}{note}") if r.retryable else r for r in answer.results]
        if retry >= self.retry.retries:
            return results
        wait = max(backoff(retry, self.retry, self._rng), answer.wait or 0.0)
        log.warning(
            "destination connection '%s': %s; sending %d item(s) again in %.1f s (repeat %d of %d)",
            self.conn_id,
            answer.results[failed[0]].error,
            len(failed),
            wait,
            retry + 1,
            self.retry.retries,
        )
        self._sleep(wait)
        again = self._deliver([items[i] for i in failed], retry + 1)
        for i, result in zip(failed, _one_more_try(again), strict=True):
            results[i] = result
        return results

    def _request(self, items: list[Delivery], retry: int) -> _Answer | None:
        """Send one request for ``items`` and classify the answer; ``None`` when sending stopped.

        :raises AuthError: on 401/403, now and for every later request.
        """
        if self._refused is not None:
            raise self._refused
        if self._breaker.is_open:
            return None
        as_array = self.mode == "batch" and not _overridden(items[0])
        method, url, body, headers = self._prepare(items, as_array)
        with self._lock:
            self.requests += 1
            if retry:
                self.retries += 1
        try:
            # No redirects: requests would turn a redirected POST into a GET and report its 200.
            response = answer_or_reason(
                self._session, method, url, self.limits, conn_id=self.conn_id, system="The destination",
                data=None if body is None else body.encode("utf-8"), headers=headers, timeout=self.timeout,
            )  # fmt: skip
        except AuthError as exc:
            self._refused = exc
            raise
        if isinstance(response, Unanswered):
            return _Answer(_failed(items, response.status, response.reason, retryable=response.retryable))
        status = response.status_code
        kind = classify(status)
        wait = retry_after(response.headers.get("Retry-After"))
        if kind == "delivered" and as_array:
            return _Answer(self._array_results(items, response), wait)
        if kind == "delivered":
            return _Answer([Result(items[0].doc_id, True, status, _destination_id(response, _json(response)))])
        split = (
            kind == "permanent"
            and as_array
            and len(items) > 1
            and 400 <= status < 500
            and status not in WHOLE_REQUEST_STATUSES
        )
        results = _failed(items, status, _reason(response, self.reason_style), retryable=kind == "retryable")
        return _Answer(results, wait, split)

    def _prepare(self, items: list[Delivery], as_array: bool) -> tuple[str, str, str | None, dict[str, str | None]]:
        """Method, URL, body and headers of the request carrying ``items``."""
        if as_array:
            keys = [i.key for i in items]
            headers: dict[str, str | None] = {
                "Idempotency-Key": hashlib.sha256(",".join(keys).encode()).hexdigest()[:32],
                "Idempotency-Keys": ",".join(keys),
            }
            return self.method, self.url, "[" + ",".join(i.body or "null" for i in items) + "]", headers
        (item,) = items
        headers = {"Idempotency-Key": item.key}
        if item.body is None:
            headers["Content-Type"] = None  # None drops the session's JSON content type: no body
        url = self._url(item.path) if item.path else self.url
        return item.method or self.method, url, item.body, headers

    def _array_results(self, items: list[Delivery], response: requests.Response) -> list[Result]:
        """The items of a 2xx answer to a batch request."""
        return _batch_results(items, response)

    def _url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._session.close()


def _overridden(item: Delivery) -> bool:
    return item.method is not None or item.path is not None


def _failed(items: list[Delivery], status: int | None, reason: str, retryable: bool) -> list[Result]:
    return [Result(i.doc_id, False, status, error=reason, retryable=retryable) for i in items]


def _one_more_try(results: Iterable[Result | None]) -> list[Result | None]:
    """Results of a follow-up request, counting the request before it that carried them too."""
    return [r if r is None else replace(r, attempts=r.attempts + 1) for r in results]


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _batch_results(items: list[Delivery], response: requests.Response) -> list[Result]:
    """The items of a 2xx batch answer: per-item statuses when the receiver gives them."""
    answer = _json(response)
    per_item = answer.get("results") if isinstance(answer, dict) else answer
    if not isinstance(per_item, list) or len(per_item) != len(items):
        per_item = [None] * len(items)
    return [_item_result(item, entry, response) for item, entry in zip(items, per_item, strict=True)]


def _item_result(item: Delivery, entry: Any, response: requests.Response) -> Result:
    """One item of a 2xx batch answer: the receiver may still refuse that item alone.

    An item's 401/403 is that record being off limits, not the credentials (the batch was
    accepted), so it is a permanent failure like any other 4xx.
    """
    status = entry.get("status") if isinstance(entry, dict) else None
    if isinstance(status, int) and status >= 400:
        reason = entry.get("error") or entry.get("message") or ""
        error = f"HTTP {status}: {str(reason)[:REASON_CHARS]}".rstrip(": ")
        return Result(item.doc_id, False, status, error=error, retryable=classify(status) == "retryable")
    return Result(
        item.doc_id, True, status if isinstance(status, int) else response.status_code, _destination_id(None, entry)
    )


def _destination_id(response: requests.Response | None, answer: Any) -> str | None:
    """The id the destination gave the record: ``id`` in the JSON answer, else the last segment of
    ``Location``'s path (never its query, which may hold a token)."""
    if isinstance(answer, dict):
        for key in ("id", "uuid", "_id"):
            if isinstance(answer.get(key), (str, int)):
                return str(answer[key])
    if response is not None and response.headers.get("Location"):
        return urlsplit(response.headers["Location"]).path.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def _reason(response: requests.Response, style: reasons.ReasonStyle = reasons.DESTINATION) -> str:
    text = reasons.answer_reason(response, style).text
    return f"HTTP {response.status_code}: {text}" if text else f"HTTP {response.status_code}"


def _endpoint_refused(results: list[Result]) -> bool:
    """Every item refused with a status that blames the endpoint (path, method, content type, URL)."""
    return all(
        not r.ok and r.status is not None and (r.status in WHOLE_REQUEST_STATUSES or 300 <= r.status < 400)
        for r in results
    )


DESTINATION = RestDestination  # what ``destination.type: rest`` opens (see ``registry``)
