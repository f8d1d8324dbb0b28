"""When to send a request again, how long to wait first, and when to stop sending altogether.

Retrying inside the task (rather than leaning on Airflow task retries) keeps one slow answer from
failing a whole run, and it is done here by hand because the HTTP provider's tenacity retries do
not fire on 429/5xx (apache/airflow#9569). Three rules:

* only answers that may change on their own are retried: timeouts, connection errors, 408, 429
  and 5xx. A 4xx says the payload or the URL is wrong and will be wrong again; 401/403 must never
  be repeated (CHT and many EMRs lock an account after a few refused logins);
* waits grow exponentially with jitter, so workers that failed together do not retry together,
  and a ``Retry-After`` the destination sends is honoured;
* after ``breaker_after`` failed tries in a row the destination is taken as down: sending stops
  and the documents stay pending for the next run, instead of hammering a server that is
  restarting or grinding through every document's retries for nothing.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class RetryPolicy:
    """How patient a destination is with one request, and with the destination as a whole.

    ``retries`` is how many times one request may be repeated after a retryable answer (so up to
    ``retries + 1`` tries); the n-th repeat waits about ``backoff_s * 2**n`` seconds, never more
    than ``max_backoff_s``. ``breaker_after`` consecutive failed tries, counted across all
    requests and threads, stop the sending.
    """

    retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    breaker_after: int = 10


def delivery_policy(delivery: object | None) -> RetryPolicy:
    """The policy a pipeline file's ``delivery`` block sets (``None``: the defaults)."""
    if delivery is None:
        return RetryPolicy()
    return RetryPolicy(
        retries=delivery.retries,  # type: ignore[attr-defined]
        backoff_s=delivery.backoff_seconds,  # type: ignore[attr-defined]
        max_backoff_s=delivery.max_backoff_seconds,  # type: ignore[attr-defined]
        breaker_after=delivery.breaker_after,  # type: ignore[attr-defined]
    )


def classify(status: int | None) -> str:
    """What an answer means for the payload: ``delivered``, ``retryable``, ``auth`` or ``permanent``.

    ``None`` is no answer at all (timeout, connection refused or reset). Redirects are permanent:
    following one would turn a POST into a GET, so a redirect means the connection's URL is wrong.
    """
    if status is None or status in (408, 429) or 500 <= status < 600:
        return "retryable"
    if 200 <= status < 300:
        return "delivered"
    if status in (401, 403):
        return "auth"
    return "permanent"


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP-date.

    A date in the past or a negative number means "now" (0). Anything unreadable is ``None``, so
    a broken header falls back to the normal backoff instead of failing the request.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000" or a missing zone: HTTP dates are always GMT
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait before repeat number ``attempt`` (counted from 0).

    "Equal jitter": half of the exponential step is fixed, so the wait still grows, and half is
    random, so concurrent workers spread out instead of retrying in lockstep.
    """
    step = min(policy.max_backoff_s, policy.backoff_s * 2 ** min(attempt, 32))
    return step / 2 + rng.uniform(0, step / 2)


class CircuitBreaker:
    """Counts consecutive failed tries across threads; opens after ``threshold`` of them.

    Once open it stays open: a destination object lives for one task, the task stops, and the
    next run starts with a fresh breaker (a "half-open" probe would only delay that).
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = max(threshold, 1)
        self.failures = 0
        self.last_error: str | None = None
        self._open = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._open

    def failure(self, reason: str | None = None) -> bool:
        """Record one retryable failure; True when the breaker is (now) open."""
        with self._lock:
            self.failures += 1
            self.last_error = reason
            if self.failures >= self.threshold:
                self._open = True
            return self._open

    def success(self) -> None:
        """The destination answered (2xx or a permanent refusal): it is up, the count restarts."""
        with self._lock:
            if not self._open:
                self.failures = 0
