"""What the RapidPro destination keeps in the state store: its request budget and its flow starts.

**Request budget.** A RapidPro workspace allows each endpoint group (DRF throttle scope: ``v2``,
``v2.contacts``, ``v2.runs``…) a number of requests per hour, shared by every client of the
workspace (CHT's own gateway, the bridge's pipelines and tasks); past it every client gets 429. A
backlog sent as fast as it can go would trip that for everyone, so the bridge spends at most its
own budget per endpoint group and hour, counted here, in the store every task shares, per
Connection and group (``budget_key``): the budget spans runs, tasks and pipelines on the same
workspace. The hour slides, as DRF's does: requests are counted in minute buckets and the last
sixty count. A request is reserved *before* it is sent (add, then give back what exceeds the
limit), so two tasks taking at once can under-use the budget but never overspend it.

**Flow starts.** ``POST flow_starts.json`` has no idempotency key: posted twice, the flow starts
twice. Each start is recorded here *before* it is posted (``intend``, committed durably), with a
reference of ours that the start carries in its ``params`` (``cht_bridge_start``), and the start's
``uuid`` is recorded as soon as the answer comes (``started``). A run that finds a document's key with an
intention but no uuid (the worker died between the POST and the ledger write, or the answer was
lost) looks the start up by that reference in ``GET flow_starts.json`` before it posts again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, func, select, update

from cht_bridge.state.store import DOC_ID_CHARS, PIPELINE_CHARS, StateStore, _insert_for

metadata = MetaData()

budget = Table(
    "cht_bridge_request_budget",
    metadata,
    Column("budget_key", String(300), primary_key=True),  # <conn id>:<endpoint group>
    Column("minute", Integer, primary_key=True),  # minutes since the epoch
    Column("used", Integer, nullable=False),
)

starts = Table(
    "cht_bridge_rapidpro_start",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("delivery_key", String(64), primary_key=True),  # the delivery's idempotency key: doc and payload
    Column("doc_id", String(DOC_ID_CHARS), nullable=False),
    Column("start_ref", String(64), nullable=False),  # ours, sent in params.cht_bridge_start
    Column("start_uuid", String(64)),  # RapidPro's, once known
    Column("intended_at", DateTime(timezone=True), nullable=False),
)

WINDOW_MINUTES = 60


def _minute(now: datetime) -> int:
    return int(now.timestamp() // 60)


class RapidProState:
    """The budget and start tables on a state store's database (created on first use)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.engine = store.engine
        metadata.create_all(self.engine)

    # -- budget -----------------------------------------------------------------------------------

    def take(self, key: str, wanted: int, limit: int, now: datetime | None = None) -> int:
        """Reserve up to ``wanted`` requests of ``key``'s hourly ``limit``; how many were granted."""
        if wanted <= 0:
            return 0
        minute = _minute(now or datetime.now(UTC))
        c = budget.c
        with self.engine.begin() as conn:
            conn.execute(delete(budget).where(c.budget_key == key, c.minute <= minute - WINDOW_MINUTES))
            stmt = _insert_for(conn, budget).values(budget_key=key, minute=minute, used=wanted)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[c.budget_key, c.minute], set_={"used": c.used + wanted})
            )
        used = self.used(key, now)
        excess = min(wanted, max(0, used - limit))
        if excess:
            self.give_back(key, excess, now)
        return wanted - excess

    def give_back(self, key: str, n: int, now: datetime | None = None) -> None:
        """Return ``n`` reserved requests that were not sent (to this minute's bucket)."""
        if n <= 0:
            return
        minute = _minute(now or datetime.now(UTC))
        c = budget.c
        with self.engine.begin() as conn:
            conn.execute(update(budget).where(c.budget_key == key, c.minute == minute).values(used=c.used - n))

    def used(self, key: str, now: datetime | None = None) -> int:
        """Requests counted for ``key`` in the sliding hour up to ``now``."""
        minute = _minute(now or datetime.now(UTC))
        c = budget.c
        with self.engine.connect() as conn:
            value = conn.execute(
                select(func.coalesce(func.sum(c.used), 0)).where(
                    c.budget_key == key, c.minute > minute - WINDOW_MINUTES
                )
            ).scalar()
        return max(int(value or 0), 0)

    # -- flow starts ------------------------------------------------------------------------------

    def intended(self, pipeline: str, keys: Iterable[str]) -> dict[str, tuple[str, str | None, datetime]]:
        """Delivery key -> (start ref, start uuid or None, when intended), for keys with a start."""
        keys = list(dict.fromkeys(keys))
        c = starts.c
        found: dict[str, tuple[str, str | None, datetime]] = {}
        with self.engine.connect() as conn:
            for at in range(0, len(keys), 500):
                rows = conn.execute(
                    select(c.delivery_key, c.start_ref, c.start_uuid, c.intended_at).where(
                        c.pipeline == pipeline, c.delivery_key.in_(keys[at : at + 500])
                    )
                )
                for r in rows:
                    when = r.intended_at
                    if isinstance(when, str):
                        when = datetime.fromisoformat(when)
                    found[r.delivery_key] = (
                        r.start_ref,
                        r.start_uuid,
                        when if when.tzinfo else when.replace(tzinfo=UTC),
                    )
        return found

    def intend(self, pipeline: str, ref: str, items: list[tuple[str, str]], now: datetime | None = None) -> None:
        """Record, before the POST, that ``items`` ((delivery key, doc id)) go in start ``ref``.

        Committed durably (``StateStore.durable``): an intention a power loss rolled back after the
        POST would let the next run start the flow again. ``started`` and ``forget`` are plain
        commits: losing either leaves the intention, which the next run looks up before posting.
        """
        if not items:
            return
        c = starts.c
        with self.store.durable() as conn:
            when = now or datetime.now(UTC)
            for key, doc_id in items:
                stmt = _insert_for(conn, starts).values(
                    pipeline=pipeline, delivery_key=key, doc_id=doc_id, start_ref=ref, start_uuid=None, intended_at=when
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[c.pipeline, c.delivery_key],
                        set_={"start_ref": ref, "start_uuid": None, "intended_at": when},
                    )
                )

    def started(self, pipeline: str, ref: str, start_uuid: str) -> None:
        """The start ``ref`` exists in RapidPro as ``start_uuid``."""
        c = starts.c
        with self.engine.begin() as conn:
            conn.execute(update(starts).where(c.pipeline == pipeline, c.start_ref == ref).values(start_uuid=start_uuid))

    def forget(self, pipeline: str, ref: str) -> None:
        """The start ``ref`` was refused or never made: its documents may be started afresh."""
        c = starts.c
        with self.engine.begin() as conn:
            conn.execute(delete(starts).where(c.pipeline == pipeline, c.start_ref == ref, c.start_uuid.is_(None)))

    def prune(self, pipeline: str, older_than: timedelta) -> int:
        """Drop started rows older than ``older_than``: the delivery ledger has them by then."""
        c = starts.c
        with self.engine.begin() as conn:
            cutoff = datetime.now(UTC) - older_than
            result = conn.execute(
                delete(starts).where(c.pipeline == pipeline, c.start_uuid.is_not(None), c.intended_at < cutoff)
            )
        return int(result.rowcount or 0)
