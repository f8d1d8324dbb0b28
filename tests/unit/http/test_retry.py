"""The retry rules: which answers are worth another try, how long to wait, when to stop."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from cht_bridge.http.retry import CircuitBreaker, RetryPolicy, backoff, classify, retry_after


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"),
        (201, "delivered"),
        (204, "delivered"),
        (299, "delivered"),
        (None, "retryable"),
        (408, "retryable"),
        (429, "retryable"),
        (500, "retryable"),
        (502, "retryable"),
        (503, "retryable"),
        (504, "retryable"),
        (599, "retryable"),
        (401, "auth"),
        (403, "auth"),
        (400, "permanent"),
        (404, "permanent"),
        (409, "permanent"),
        (413, "permanent"),
        (422, "permanent"),
        (301, "permanent"),
        (302, "permanent"),
        (307, "permanent"),
        (308, "permanent"),
        (100, "permanent"),
    ],
)
def test_classify(status, kind):
    assert classify(status) == kind


NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Sat, 01 Mar 2025 12:00:30 GMT", 30.0),
        ("Sat, 01 Mar 2025 12:00:30 -0000", 30.0),  # no zone: HTTP dates are GMT
        ("Sat, 01 Mar 2025 11:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("Sat, 99 Foo 2025", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after(value, seconds):
    assert retry_after(value, now=NOW) == seconds


def test_retry_after_date_defaults_to_the_current_time():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    assert 95 <= retry_after(later) <= 100


def test_backoff_grows_exponentially_within_bounds_and_is_capped():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=60.0)
    rng = random.Random(1)
    for attempt in range(12):
        step = min(60.0, 2.0**attempt)
        waits = [backoff(attempt, policy, rng) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits), attempt  # equal jitter: half fixed, half random
    assert backoff(1000, policy, rng) <= 60.0  # no overflow for absurd attempt numbers
    assert backoff(0, RetryPolicy(backoff_s=0.0), rng) == 0.0


def test_backoff_jitter_spreads_concurrent_workers():
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=60.0)
    rng = random.Random(7)
    waits = [backoff(3, policy, rng) for _ in range(100)]  # step 8 s: waits in [4, 8]
    assert len({round(w, 3) for w in waits}) > 90  # not in lockstep
    assert max(waits) - min(waits) > 3
    assert 5 < sum(waits) / len(waits) < 7  # centred on 6 s
    same = random.Random(7)
    assert [backoff(3, policy, same) for _ in range(100)] == waits  # reproducible with a seeded rng


def test_breaker_opens_after_threshold_consecutive_failures():
    breaker = CircuitBreaker(3)
    assert not breaker.failure("HTTP 503: busy")
    assert not breaker.failure("timeout after 30 s")
    assert not breaker.is_open and breaker.failures == 2
    assert breaker.failure("HTTP 502: bad gateway")
    assert breaker.is_open and breaker.failures == 3 and breaker.last_error == "HTTP 502: bad gateway"


def test_breaker_success_resets_the_count_until_it_opens():
    breaker = CircuitBreaker(3)
    breaker.failure("a")
    breaker.failure("b")
    breaker.success()
    assert breaker.failures == 0 and not breaker.is_open
    assert not breaker.failure("c") and not breaker.failure("d")
    assert breaker.failure("e") and breaker.is_open
    breaker.success()  # a late answer from a request in flight does not reopen the sending
    assert breaker.is_open and breaker.failures == 3


def test_breaker_counts_every_failure_across_threads():
    breaker = CircuitBreaker(10_000)
    opened: list[bool] = []

    def fail() -> None:
        for _ in range(1000):
            opened.append(breaker.failure("x"))

    threads = [threading.Thread(target=fail) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.failures == 10_000 and breaker.is_open
    assert opened.count(False) == 9_999  # exactly one call saw it open, the very last one
