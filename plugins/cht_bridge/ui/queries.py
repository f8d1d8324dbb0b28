"""What the CHT Bridge page asks the state store: a few grouped queries, never a row's payload.

Every answer holds ids, statuses, counts, times and reasons only (the ledgers keep no payloads;
an inbound row's ``record`` is never selected). The queries are written for the ledger's
indexes (``state/store.py``): the counts per status from the primary key and the partial
``ix_cht_bridge_delivery_unsettled`` (``status_counts``), that partial index (pipeline, status,
doc_id, last_attempt_at of the rows not delivered) for the last 24 hours and the failures, the
one-row-per-pipeline ``cht_bridge_freshness`` for the freshness, and ``ix_cht_bridge_inbound_status``
for the reverse rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from cht_bridge.state.inbound import FAILED as ROW_FAILED
from cht_bridge.state.inbound import REVIEW, UNPLACED, inbound
from cht_bridge.state.store import (
    DEAD,
    FAILED,
    StateStore,
    _stamp,
    deliveries,
    newest_reported,
    status_counts,
    unsettled,
)

#: Rows a list shows at most (newest first); the page says when there are more.
LIST_LIMIT = 200
RECENT = timedelta(hours=24)
WAITING = (REVIEW, UNPLACED, ROW_FAILED)


def aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives naive datetimes or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _lag(newest: Any, now: datetime) -> float | None:
    when = aware(newest)
    return None if when is None else round((now - when).total_seconds(), 1)


def forward_overview(store: StateStore, names: Iterable[str], now: datetime | None = None) -> dict[str, dict]:
    """Per pipeline: rows per ledger status, failed and dead in the last 24 h, lag, breaker."""
    names = sorted(set(names))
    now = now or datetime.now(UTC)
    out: dict[str, dict] = {n: {"counts": {}, "recent": {FAILED: 0, DEAD: 0}, "lag_seconds": None} for n in names}
    if not names:
        return out
    c = deliveries.c
    with store.engine.connect() as conn:
        for pipeline, counts in status_counts(conn, names).items():
            out[pipeline]["counts"] = counts
        since = _stamp(conn, now - RECENT)
        for pipeline, status, n in conn.execute(
            select(c.pipeline, c.status, func.count())
            .where(
                c.pipeline.in_(names),
                c.status.in_([FAILED, DEAD]),
                c.last_attempt_at >= since,
                *unsettled([FAILED, DEAD]),
            )
            .group_by(c.pipeline, c.status)
        ):
            out[pipeline]["recent"][status] = n
        newest = newest_reported(conn, names)
        for name in names:
            out[name]["lag_seconds"] = _lag(newest.get(name), now)
    for name, state in store.breakers(names).items():
        out[name]["breaker"] = {
            "open": bool(state["is_open"]),
            "reason": state["reason"],
            "since": aware(state["changed_at"]),
        }
    return out


def reverse_overview(store: StateStore, names: Iterable[str], now: datetime | None = None) -> dict[str, dict]:
    """Per reverse pipeline: rows per status, rows failed in the last 24 h, lag (newest report written)."""
    names = sorted(set(names))
    now = now or datetime.now(UTC)
    out: dict[str, dict] = {n: {"counts": {}, "recent": {ROW_FAILED: 0}, "lag_seconds": None} for n in names}
    if not names:
        return out
    c = inbound.c
    with store.engine.connect() as conn:
        if not _has_inbound(conn):
            return out
        for pipeline, status, n in conn.execute(
            select(c.pipeline, c.status, func.count()).where(c.pipeline.in_(names)).group_by(c.pipeline, c.status)
        ):
            out[pipeline]["counts"][status] = n
        since = _stamp(conn, now - RECENT)
        for pipeline, n in conn.execute(
            select(c.pipeline, func.count())
            .where(c.pipeline.in_(names), c.status == ROW_FAILED, c.updated_at >= since)
            .group_by(c.pipeline)
        ):
            out[pipeline]["recent"][ROW_FAILED] = n
        for name in names:
            out[name]["lag_seconds"] = reverse_lag_seconds(store, name, now, conn=conn)
    return out


def reverse_lag_seconds(
    store: StateStore, pipeline: str, now: datetime | None = None, conn: Any = None
) -> float | None:
    """Seconds since the newest row of a reverse pipeline was written to CHT (``done``)."""
    c = inbound.c
    query = select(func.max(c.updated_at)).where(c.pipeline == pipeline, c.status == "done")
    if conn is None:
        with store.engine.connect() as own:
            newest = own.execute(query).scalar() if _has_inbound(own) else None
    else:
        newest = conn.execute(query).scalar()
    return _lag(newest, now or datetime.now(UTC))


def failures(
    store: StateStore,
    pipeline: str,
    *,
    statuses: Iterable[str] = (DEAD, FAILED),
    reason: str | None = None,
    limit: int = LIST_LIMIT,
) -> dict[str, Any]:
    """A pipeline's dead letters and pending failures, newest first, and its reasons with their counts.

    ``reason`` keeps the rows whose last answer contains it (case-insensitive).
    """
    c = deliveries.c
    statuses = list(statuses)
    where = [c.pipeline == pipeline, c.status.in_(statuses), *unsettled(statuses)]
    with store.engine.connect() as conn:
        reasons = [
            {"reason": r, "count": n}
            for r, n in conn.execute(
                select(c.last_error, func.count()).where(*where).group_by(c.last_error).order_by(func.count().desc())
                .limit(50)
            )
        ]  # fmt: skip
        if reason:
            where.append(func.lower(c.last_error).contains(reason.lower(), autoescape=True))
        total = conn.execute(select(func.count()).where(*where)).scalar() or 0
        rows = conn.execute(
            select(c.doc_id, c.status, c.attempts, c.failures, c.response_status, c.last_error, c.last_attempt_at)
            .where(*where)
            .order_by(c.last_attempt_at.desc(), c.doc_id)
            .limit(limit)
        )
        listed = [
            {
                "doc_id": r.doc_id,
                "status": r.status,
                "attempts": r.attempts,
                "failed_runs": r.failures,
                "response_status": r.response_status,
                "reason": r.last_error,
                "when": aware(r.last_attempt_at),
            }
            for r in rows
        ]
    return {"total": total, "rows": listed, "reasons": reasons}


def waiting_rows(store: StateStore, pipeline: str, limit: int = LIST_LIMIT) -> dict[str, Any]:
    """A reverse pipeline's rows waiting for a person: in review, unplaced, failed (ids and reasons only)."""
    c = inbound.c
    out: dict[str, Any] = {status: [] for status in WAITING}
    with store.engine.connect() as conn:
        if not _has_inbound(conn):
            return {**out, "totals": {}}
        totals = dict(
            conn.execute(
                select(c.status, func.count()).where(c.pipeline == pipeline, c.status.in_(WAITING)).group_by(c.status)
            ).all()
        )
        for status in WAITING:
            rows = conn.execute(
                select(c.source_id, c.source_version, c.status, c.reason, c.attempts, c.updated_at)
                .where(c.pipeline == pipeline, c.status == status)
                .order_by(c.updated_at.desc(), c.source_id)
                .limit(limit)
            )
            out[status] = [
                {
                    "source_id": r.source_id,
                    "source_version": r.source_version,
                    "status": r.status,
                    "reason": r.reason,
                    "attempts": r.attempts,
                    "when": aware(r.updated_at),
                }
                for r in rows
            ]
    return {**out, "totals": totals}


def _has_inbound(conn: Any) -> bool:
    """Whether the reverse ledger exists yet (a store no reverse pipeline has opened has none)."""
    from sqlalchemy import inspect

    return inspect(conn).has_table(inbound.name)
