"""Send slots: at most N tasks send to one destination Connection at once, across every worker.

An Airflow task has one pool, and a forward ``sync`` task (or a DHIS2 ``aggregate``) reads CHT and
writes its destination in one stream, so it sits in its CHT Connection's pool (``cht_bridge.pools``).
What bounds the destination is this: a counting semaphore per destination Connection, kept in the
state store every worker shares (PostgreSQL under a distributed executor, SQLite locally), sized
like the pools (``pools.pool_slots``). A task takes a slot around each send (one batch, one DHIS2
chunk), not for its whole run, so the slot goes round the tasks that have something to send, and a
task mapping its next page holds none.

How it stays right when things go wrong:

- **At most N, by a primary key.** Slot ``k`` of a Connection is one row (``conn_id``, ``k``);
  taking it is an ``INSERT ... ON CONFLICT DO NOTHING`` or an ``UPDATE`` of an expired row, each
  seen by its RETURNING row, so two workers can never both hold slot ``k``, on either database,
  without locks held across statements.
- **Leases, renewed while held.** A slot row expires ``lease_s`` seconds after its last renewal; a
  thread renews it every third of that while the send runs. A worker SIGKILLed mid-send stops
  renewing, and the slot is free again within ``lease_s``. Times are the *database's* clock, so
  workers on machines whose clocks differ agree on what has expired.
- **Fair waiting.** A waiter registers in a queue (``cht_bridge_send_waiter``, by when it first
  asked) and takes a free slot only when fewer waiters are ahead of it than slots are free; a task
  that just gave its slot back asks again at the back of the queue, so a fast sender cannot keep
  a slot from the others. A waiter that stops polling (killed) drops out of the queue after
  ``STALE_WAITER_S`` (deleted by other waiters, only rows no one holds locked: no deadlock between them).
- **A busy database is one more try.** A try that fails on the database (SQLite's "database is
  locked", a PostgreSQL deadlock) is rolled back whole and tried again within the same wait.
- **Bounded waiting.** After ``wait_s`` without a slot, ``DestinationBusyError`` (a
  ``TransportError``): nothing of that batch was sent or recorded, the checkpoint did not move, and
  the task fails to be retried by Airflow (or the next run), which reads the batch again. Nothing
  is lost and no document's count of failed runs moves.

The tables are created on first use in an existing store (``create_all`` checks first): a store
made by an older version gains them without a step of its own.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, and_, delete, func, literal_column, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from cht_bridge.errors import DestinationBusyError
from cht_bridge.state.store import _insert_for

log = logging.getLogger("cht_bridge.state.send_slots")

metadata = MetaData()
CONN_ID_CHARS = 250

slots_table = Table(
    "cht_bridge_send_slot",
    metadata,
    Column("conn_id", String(CONN_ID_CHARS), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("holder", String(64), nullable=False),  # one hold's random id
    Column("expires_at", Float, nullable=False),  # epoch seconds, the database's clock
)

waiters_table = Table(
    "cht_bridge_send_waiter",
    metadata,
    Column("conn_id", String(CONN_ID_CHARS), primary_key=True),
    Column("holder", String(64), primary_key=True),
    Column("since", Float, nullable=False),  # when it first asked: its place in the queue
    Column("seen_at", Float, nullable=False),  # its last poll
)

LEASE_S = 60.0
WAIT_S = 300.0
#: A waiter not seen for this long (killed while waiting) leaves the queue.
STALE_WAITER_S = 15.0
POLL_S = (0.05, 0.5)  # first and longest pause between two tries

#: "Now" in epoch seconds, by the database's clock (never the worker's: clocks differ between machines).
_NOW = {
    "postgresql": "extract(epoch from clock_timestamp())",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}


def _now(conn: Any) -> float:
    return float(conn.execute(select(literal_column(_NOW[conn.dialect.name]))).scalar())


class SendSlots:
    """The ``slots`` send slots of destination Connection ``conn_id``, on a state store's database."""

    def __init__(
        self, engine: Engine, conn_id: str, slots: int, *, lease_s: float = LEASE_S, wait_s: float = WAIT_S
    ) -> None:
        if slots < 1:
            raise ValueError(f"send slots of {conn_id}: {slots} is not a positive number")
        self.engine, self.conn_id, self.slots = engine, conn_id, slots
        self.lease_s, self.wait_s = lease_s, wait_s
        self.waited_s = 0.0  # over this object's holds: how long sends waited for a slot (the run's log)
        _create_tables(engine)

    @contextmanager
    def held(self) -> Iterator[int]:
        """Hold a slot for the ``with`` block (renewed meanwhile); yields its number.

        :raises DestinationBusyError: no slot came free within ``wait_s``.
        """
        holder = uuid.uuid4().hex
        started = time.monotonic()
        slot = self._acquire(holder)
        waited = time.monotonic() - started
        self.waited_s += waited
        if waited >= 1:
            log.info("destination %s: waited %.1f s for one of its %d send slots", self.conn_id, waited, self.slots)
        stop = threading.Event()
        renewer = threading.Thread(
            target=self._renew, args=(slot, holder, stop), name=f"send-slot-{self.conn_id}", daemon=True
        )
        renewer.start()
        try:
            yield slot
        finally:
            stop.set()
            renewer.join(self.lease_s)  # bounded: a renewal stuck on the database ends with its lease
            self._release(slot, holder)

    def holders(self) -> int:
        """Slots held now (unexpired), for people and tests."""
        s = slots_table.c
        with self.engine.connect() as conn:
            now = _now(conn)
            return int(
                conn.execute(select(func.count()).where(s.conn_id == self.conn_id, s.expires_at > now)).scalar() or 0
            )

    # -- inside -----------------------------------------------------------------------------------

    def _acquire(self, holder: str) -> int:
        deadline = time.monotonic() + self.wait_s
        pause = POLL_S[0]
        try:
            while True:
                try:
                    slot, failed = self._try(holder), None
                except OperationalError as exc:
                    # SQLite "database is locked", a PostgreSQL deadlock or serialization failure: the
                    # transaction was rolled back whole, so this is one more try within the same wait.
                    # (A programming error is no such thing: it is raised at once.)
                    slot, failed = None, exc
                    log.info("send slot of %s: try failed (%s); trying again", self.conn_id, type(exc.orig).__name__)
                if slot is not None:
                    return slot
                if time.monotonic() >= deadline:
                    if failed is not None:
                        raise failed  # the store itself failed to the end: not a busy destination
                    raise DestinationBusyError(self.conn_id, self.slots, self.wait_s)
                time.sleep(min(pause, max(deadline - time.monotonic(), 0)) * random.uniform(0.5, 1.0))
                pause = min(pause * 2, POLL_S[1])
        except BaseException:
            self._leave_queue(holder)
            raise

    def _try(self, holder: str) -> int | None:
        """One try, in one transaction: join (or stay in) the queue; take a slot if it is our turn."""
        s, w = slots_table.c, waiters_table.c
        with self.engine.begin() as conn:
            now = _now(conn)
            queued = _insert_for(conn, waiters_table).values(
                conn_id=self.conn_id, holder=holder, since=now, seen_at=now
            )
            conn.execute(queued.on_conflict_do_update(index_elements=[w.conn_id, w.holder], set_={"seen_at": now}))
            # Others' stale rows only, and only those no one has locked now (SKIP LOCKED: two waiters
            # clearing the same rows in different orders would deadlock; a locked one is left for the next
            # try). SQLite has no row locks and ignores FOR UPDATE: its writers take turns on the file.
            stale = (
                select(w.holder)
                .where(w.conn_id == self.conn_id, w.holder != holder, w.seen_at < now - STALE_WAITER_S)
                .with_for_update(skip_locked=True)
            )
            conn.execute(delete(waiters_table).where(w.conn_id == self.conn_id, w.holder.in_(stale)))
            since = conn.execute(select(w.since).where(w.conn_id == self.conn_id, w.holder == holder)).scalar()
            ahead = conn.execute(
                select(func.count()).where(
                    w.conn_id == self.conn_id,
                    or_(w.since < since, and_(w.since == since, w.holder < holder)),
                )
            ).scalar()
            held = conn.execute(select(func.count()).where(s.conn_id == self.conn_id, s.expires_at > now)).scalar()
            if ahead >= self.slots - held:
                return None
            until = now + self.lease_s
            for slot in range(self.slots):
                # RETURNING, not the row count: the driver's count of an INSERT ... ON CONFLICT is not reliable.
                taken = conn.execute(
                    _insert_for(conn, slots_table)
                    .values(conn_id=self.conn_id, slot=slot, holder=holder, expires_at=until)
                    .on_conflict_do_nothing(index_elements=[s.conn_id, s.slot])
                    .returning(s.slot)
                ).first()
                if taken is None:  # a row is there: take it only if its lease ran out (its holder died)
                    taken = conn.execute(
                        sql_update(slots_table)
                        .where(s.conn_id == self.conn_id, s.slot == slot, s.expires_at <= now)
                        .values(holder=holder, expires_at=until)
                        .returning(s.slot)
                    ).first()
                if taken is not None:
                    conn.execute(delete(waiters_table).where(w.conn_id == self.conn_id, w.holder == holder))
                    return slot
        return None

    def _renew(self, slot: int, holder: str, stop: threading.Event) -> None:
        s = slots_table.c
        while not stop.wait(self.lease_s / 3):
            try:
                with self.engine.begin() as conn:
                    until = _now(conn) + self.lease_s
                    kept = conn.execute(
                        sql_update(slots_table)
                        .where(s.conn_id == self.conn_id, s.slot == slot, s.holder == holder)
                        .values(expires_at=until)
                        .returning(s.slot)
                    ).first()
            except DBAPIError as exc:  # the store is unreachable: try again; the lease runs out if it stays so
                log.warning("send slot %s/%d of %s not renewed: %s", slot, self.slots, self.conn_id, type(exc).__name__)
                continue
            if kept is None:
                log.warning(
                    "send slot %d of %s expired while held (renewals late by over %.0f s): another task may send too",
                    slot, self.conn_id, self.lease_s,
                )  # fmt: skip
                return

    def _release(self, slot: int, holder: str) -> None:
        """Give the slot back. If the store cannot be reached, the lease runs out instead: the send's
        answer is what matters now, and it must still be recorded."""
        s = slots_table.c
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(slots_table).where(s.conn_id == self.conn_id, s.slot == slot, s.holder == holder))
        except DBAPIError as exc:
            log.warning("send slot %d of %s not given back (%s): free again within its lease", slot, self.conn_id,
                        type(exc).__name__)  # fmt: skip

    def _leave_queue(self, holder: str) -> None:
        w = waiters_table.c
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(waiters_table).where(w.conn_id == self.conn_id, w.holder == holder))
        except DBAPIError:  # it drops out of the queue after STALE_WAITER_S anyway
            pass


def _create_tables(engine: Engine) -> None:
    """Create the two tables if missing. Two workers doing it at once on PostgreSQL: one wins,
    the other's ``CREATE`` fails on the name, and the tables are there for both."""
    try:
        metadata.create_all(engine)
    except DBAPIError:
        metadata.create_all(engine)  # checks first again: now they exist, or the error was real
