"""The tasks' metrics, through Airflow's own metrics (StatsD, Datadog or OpenTelemetry as configured).

Each name is ``cht_bridge.<pipeline>.<metric>`` (after Airflow's ``statsd_prefix``), and the
pipeline is also given as a tag for the backends that keep tags, so a StatsD → Prometheus
exporter can turn the name into ``cht_bridge_<metric>{pipeline="..."}`` (README, "Metrics and
alerts"). Only counts and seconds: never an id or a reason.

Forward pipelines: ``lag_seconds`` (gauge: now minus the newest delivered ``reported_date``),
``sent``, ``failed``, ``dead_lettered`` (counters, per run) and ``breaker_opened`` (a counter, one
per run stopped by the circuit breaker). Reverse pipelines: ``rows_in_review`` (gauge, after
matching), ``sent`` (reports created in CHT), ``failed`` (rows CHT refused in this run) and
``lag_seconds`` (now minus the newest row written to CHT).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PREFIX = "cht_bridge"


def _name(pipeline: str, metric: str) -> str:
    from airflow.sdk.observability.stats import normalize_name_for_stats

    return f"{PREFIX}.{normalize_name_for_stats(pipeline, log_warning=False)}.{metric}"


def count(pipeline: str, metric: str, n: int) -> None:
    """Add ``n`` to a counter (nothing is sent for 0: a counter that did not move needs no packet)."""
    from airflow.sdk.observability.stats import Stats

    if n:
        Stats.incr(_name(pipeline, metric), count=int(n), tags={"pipeline": pipeline})


def gauge(pipeline: str, metric: str, value: float | None) -> None:
    """Set a gauge; ``None`` (not known in this run) sends nothing."""
    from airflow.sdk.observability.stats import Stats

    if value is not None:
        Stats.gauge(_name(pipeline, metric), float(value), tags={"pipeline": pipeline})


def sync_run(summary: Any) -> None:
    """A forward run's metrics, from its ``RunSummary`` (a dry run sends nothing, so it has none)."""
    if summary.dry_run:
        return
    gauge(summary.pipeline, "lag_seconds", summary.lag_seconds)
    count(summary.pipeline, "sent", summary.sent)
    count(summary.pipeline, "failed", summary.failed)
    count(summary.pipeline, "dead_lettered", summary.dead_lettered)


def breaker_opened(pipeline: str) -> None:
    count(pipeline, "breaker_opened", 1)


def reverse_step(pipeline: str, step: str, counts: dict[str, Any], lag_seconds: float | None = None) -> None:
    """A reverse step's metrics from its counts: rows in review after ``match``; reports and failures after ``write``."""
    if step == "match":
        gauge(pipeline, "rows_in_review", counts.get("waiting_review", 0))
    elif step == "write":
        count(pipeline, "sent", counts.get("reports_created", 0))
        count(pipeline, "failed", counts.get("failed", 0))
        gauge(pipeline, "lag_seconds", lag_seconds)


@contextmanager
def breaker_recorded(store: Any, pipeline: str, dry_run: bool) -> Iterator[None]:
    """Record in the state store whether this run stopped on the circuit breaker (the UI shows it).

    A run that ends normally closes it; one stopped by ``CircuitOpenError`` opens it and counts
    ``breaker_opened``. Any other failure leaves the recorded state as it was. A dry run sends
    nothing, so it says nothing about the destination.
    """
    from cht_bridge.errors import CircuitOpenError

    try:
        yield
    except CircuitOpenError as exc:
        if not dry_run:
            store.set_breaker(pipeline, True, str(exc))
            breaker_opened(pipeline)
        raise
    if not dry_run:
        store.set_breaker(pipeline, False)
