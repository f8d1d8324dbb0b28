"""What an aggregate pipeline keeps in the state store, in the delivery ledger's own table.

Three kinds of rows, each under its own ``pipeline`` value so they never mix (``~`` cannot occur
in a pipeline name):

- ``<name>``: one row per **data value**, keyed by its natural key, a JSON array
  ``["period","orgUnit","dataElement","categoryOptionCombo","attributeOptionCombo"]``
  (``post.value_key``, read back by ``post.from_key``):
  ``delivered`` (with the value's hash), ``deleted`` (removed at DHIS2 after it left CHT),
  ``dead`` (DHIS2 refused it: ``last_error`` is DHIS2's conflict message) or ``failed`` (no
  answer: the next run posts the period again). "Is the February value of facility X in DHIS2,
  and if not why?" is one query, and the replay/dead-letter tools read these rows as any others.
- ``<name>~reports``: one row per **report** counted, its period in ``destination_id``: so a
  report deleted or moved to another period later still names the period it was counted in,
  which is then recomputed. A report whose place has no org unit is ``dead`` here, with the
  place in ``last_error``: counted, listed, never silently dropped.
- ``<name>~periods``: one row per **period** to recompute: ``failed`` while pending (written
  before the changes checkpoint moves past the reports that touched it), ``delivered`` once its
  values were all answered. A crash between the two leaves it pending for the next run.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from cht_bridge.aggregate.periods import bounds_ms
from cht_bridge.aggregate.post import period_prefix
from cht_bridge.mapping import payload_hash
from cht_bridge.state import DELETE, DELIVERED, Outcome, StateStore
from cht_bridge.state.store import bookkeeping, deliveries

#: Pending periods are never dead-lettered: they wait until posted.
NEVER_DEAD = 1_000_000_000
PENDING = "recompute pending: reports of this period changed since it was last posted"


def reports_of(name: str) -> str:
    return bookkeeping(name, "reports")


def periods_of(name: str) -> str:
    return bookkeeping(name, "periods")


def value_hash(value: str) -> str:
    return payload_hash(value)


def report_periods(store: StateStore, name: str, doc_ids: Iterable[str]) -> dict[str, str]:
    """The period each of these reports was last counted in (reports never counted are left out)."""
    states = store.states(reports_of(name), doc_ids)
    return {doc_id: s.destination_id for doc_id, s in states.items() if s.destination_id}


def pending_periods(store: StateStore, name: str) -> list[str]:
    rows: list[dict] = []
    while chunk := store.pending(periods_of(name), after=rows[-1]["doc_id"] if rows else None, limit=1000):
        rows.extend(chunk)
    return [r["doc_id"] for r in rows]


def mark_pending(store: StateStore, name: str, periods: Iterable[str]) -> None:
    outcomes = [Outcome(p, None, False, error=PENDING, retryable=True) for p in sorted(set(periods))]
    if outcomes:
        store.record(periods_of(name), outcomes, dead_after=NEVER_DEAD)


def mark_posted(store: StateStore, name: str, periods: Iterable[str], values: dict[str, int]) -> None:
    """Periods whose every value was answered; ``values``: how many each holds, kept as its "id"."""
    outcomes = [Outcome(p, None, True, payload_hash=None, destination_id=f"{values.get(p, 0)} values") for p in periods]
    if outcomes:
        store.record(periods_of(name), outcomes, dead_after=NEVER_DEAD)


def forget_reports(store: StateStore, name: str, removed: dict[str, str | None]) -> None:
    """Reports deleted in CHT (or no longer relevant): their rows say so, and keep their period."""
    outcomes = [Outcome(doc_id, rev, True, operation=DELETE) for doc_id, rev in removed.items()]
    if outcomes:
        store.record(reports_of(name), outcomes)


def record_reports(
    store: StateStore, name: str, ids: list[str], periods: list[Any], org_units: list[Any], unplaced: str
) -> None:
    """Each counted report's period; a report without an org unit is dead with the reason."""
    outcomes = []
    for doc_id, period, org_unit in zip(ids, periods, org_units, strict=True):
        if not isinstance(period, str):
            continue  # undated: counted in the summary; nothing to remember it by
        if org_unit is None:
            outcomes.append(Outcome(doc_id, None, False, error=unplaced, retryable=False, destination_id=period))
        else:
            outcomes.append(Outcome(doc_id, None, True, destination_id=period))
    if outcomes:
        store.record(reports_of(name), outcomes)


def delivered_values(store: StateStore, name: str, periods: Iterable[str]) -> dict[str, str | None]:
    """Data values of these periods DHIS2 holds by the ledger (delivered): natural key -> value hash."""
    c = deliveries.c
    found: dict[str, str | None] = {}
    with store.engine.connect() as conn:
        for period in sorted(set(periods)):
            rows = conn.execute(
                select(c.doc_id, c.delivered_hash).where(
                    c.pipeline == name,
                    c.status == DELIVERED,
                    c.doc_id.startswith(period_prefix(period), autoescape=True),
                )
            )
            found.update({r.doc_id: r.delivered_hash for r in rows})
    return found


def period_start(period: str, period_type: str, time_zone: str) -> datetime:
    return datetime.fromtimestamp(bounds_ms(period, period_type, time_zone)[0] / 1000, UTC)
