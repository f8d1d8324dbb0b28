"""The page's answers, put together from the pipeline files, the state stores and Airflow's runs.

The web layer (``app.py``) decides *who* may see which pipeline; this module only answers for
the DAG ids it is given, so the benchmark and the tests call exactly what the page calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from cht_bridge.errors import one_line
from cht_bridge.state.store import StateStore
from cht_bridge.ui import catalog, queries
from cht_bridge.ui.catalog import FORWARD, Entry

log = logging.getLogger(__name__)

_stores: dict[str | None, StateStore] = {}
_stores_lock = threading.Lock()


def store_for(conn_id: str | None) -> StateStore:
    """One open store per Connection for the life of the api-server (its engine pools connections)."""
    from cht_bridge.hooks import open_state_store

    with _stores_lock:
        if conn_id not in _stores:
            _stores[conn_id] = open_state_store(conn_id)
        return _stores[conn_id]


def find(name: str, allowed: Iterable[str]) -> Entry | None:
    """The pipeline called ``name`` if the user may read its DAG."""
    if name not in set(allowed):
        return None
    return next((e for e in catalog.pipelines() if e.name == name), None)


def overview(
    allowed: Iterable[str],
    runs: Callable[[Iterable[str]], dict[str, dict]] = catalog.last_runs,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per pipeline whose DAG id is in ``allowed``: schedule, last run, lag, counts, breaker."""
    allowed = set(allowed)
    now = now or datetime.now(UTC)
    entries = [e for e in catalog.pipelines() if e.name in allowed]
    last = runs([e.name for e in entries])
    rows: list[dict[str, Any]] = []
    for conn_id, group in catalog.by_store(entries).items():
        try:
            store = store_for(conn_id)
            forward = queries.forward_overview(store, [e.name for e in group if e.kind == FORWARD], now)
            reverse = queries.reverse_overview(store, [e.name for e in group if e.kind != FORWARD], now)
            error = None
        except Exception as exc:  # one unreachable store must not hide the pipelines of the others
            log.warning("state store %s: %s", conn_id or "(default)", one_line(str(exc)))
            forward, reverse = {}, {}
            error = f"state store {conn_id or '(default)'} cannot be read: {one_line(type(exc).__name__)}"
        for e in group:
            stats = forward.get(e.name) or reverse.get(e.name) or {}
            recent = stats.get("recent", {})
            breaker = stats.get("breaker") or {}
            run = last.get(e.name)
            rows.append(
                {
                    "pipeline": e.name,
                    "kind": e.kind,
                    "schedule": e.schedule,
                    "last_run": None if run is None else {**run, "run_after": queries.aware(run.get("run_after"))},
                    "lag_seconds": stats.get("lag_seconds"),
                    "counts": stats.get("counts", {}),
                    "failed_24h": recent.get("failed", 0),
                    "dead_24h": recent.get("dead", 0),
                    "breaker_open": bool(breaker.get("open")),
                    "breaker_reason": breaker.get("reason") if breaker.get("open") else None,
                    "error": error,
                }
            )
    return sorted(rows, key=lambda r: r["pipeline"])
