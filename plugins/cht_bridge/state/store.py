"""The state store: each pipeline's checkpoint and its delivery ledger, in one SQL database.

The ledger is how a person answers "did record R arrive, and if not why": one row per pipeline
and document. The checkpoint and the ledger rows of a batch are written in one transaction, so
after a crash either both moved or neither did, and the batch is simply read again.

A row's ``status`` is its life cycle: ``delivered``; ``failed`` (a retryable failure: the next
runs try it again, before new changes); ``dead`` (a permanent rejection, a mapping error, or
``dead_after`` failed runs: it waits for a person, who replays it with the ``cht_bridge_replay``
DAG); ``deleted`` (the document was deleted in CHT and the delete was sent); ``closed`` (a failed
document that no longer needs sending: deleted in CHT, or no longer relevant, before a retry).
Dead letters can be read with plain SQL from the ``cht_bridge_dead_letters`` view.

SQLAlchemy Core keeps the same code on the default SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    literal,
    select,
    text,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex

from cht_bridge.errors import one_line
from cht_bridge.state.keys import idempotency_key

log = logging.getLogger("cht_bridge.state")

metadata = MetaData()

#: The widths of the ledgers' id columns, in characters: the one place both ledgers and the
#: checks before sending read them. PostgreSQL refuses a longer value (or a NUL character) when
#: the row is written; SQLite stores anything, so only PostgreSQL would fail, after the send.
PIPELINE_CHARS = 200
DOC_ID_CHARS = 255
DOC_REV_CHARS = 100
DESTINATION_ID_CHARS = 255
SOURCE_ID_CHARS = 255
SOURCE_VERSION_CHARS = 255

#: The destination ids ``ix_cht_bridge_delivery_reference`` holds: those with a "/" (FHIR's
#: "Type/id"). A query must repeat this text for the database to use that partial index.
REFERENCE = "destination_id LIKE '%/%'"
#: The rows ``ix_cht_bridge_delivery_unsettled`` holds: every status but ``delivered``. As for
#: REFERENCE, a query repeats this text (``unsettled``) for the database to use the partial index.
UNSETTLED = "status <> 'delivered'"

checkpoints = Table(
    "cht_bridge_checkpoint",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("seq", Text, nullable=False),  # the server's seq as JSON text: opaque, never parsed
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "cht_bridge_delivery",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("doc_id", String(DOC_ID_CHARS), primary_key=True),
    Column("doc_rev", String(DOC_REV_CHARS)),
    Column("status", String(20), nullable=False),  # delivered | failed | dead | deleted | closed
    Column("payload_hash", String(64)),  # of the last attempt
    Column("delivered_hash", String(64)),  # of the last successful delivery: the dedup key
    Column("attempts", Integer, nullable=False, default=0),
    Column("response_status", Integer),
    Column("destination_id", String(DESTINATION_ID_CHARS)),
    Column("last_error", Text),
    Column("first_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
    # added with retries and dead letters; _migrate adds them to a ledger made before
    Column("failures", Integer, nullable=False, default=0, server_default="0"),  # failed runs since the last success
    Column("operation", String(10), nullable=False, default="upsert", server_default="upsert"),  # upsert | delete
    Column("reported_at", DateTime(timezone=True)),  # the document's reported_date: for the run's lag
    Column("idempotency_key", String(64)),  # of the last attempt: a retry of that payload repeats it
    # Indexes are what a ledger row costs (RETIRED_INDEXES): every index a delivered row enters is
    # one more B-tree write per row. A delivered row enters the primary key's alone (and
    # ``_reference`` when FHIR refers to it); the rest is answered by the partial index of the rows
    # not delivered, the primary key (counts per pipeline) and ``cht_bridge_freshness``.
    # a destination asking whether a record it refers to was delivered (delivered_destination_ids):
    # only references ("Type/id", what a FHIR payload refers to) are ever asked for, so only they
    # are indexed (REFERENCE). Most destinations answer random ids (uuids), and a random key costs
    # an index page per row once the ledger is large; a ledger row costs about half as much without.
    # (With the pipeline and status, so the lookup is answered from the index alone, and SQLite
    # prefers it to the primary key, which would read every row of the pipelines.)
    Index(
        "ix_cht_bridge_delivery_reference",
        "destination_id",
        "pipeline",
        "status",
        sqlite_where=text(REFERENCE),
        postgresql_where=text(REFERENCE),
    ),
    # Every question about the rows not delivered (UNSETTLED): the UI's failures of the last 24 h
    # and newest failures, the retries' pending rows in id order, replay's selection, the counts of
    # each status but ``delivered``. Partial: most rows are delivered and never enter it, so a
    # delivered row costs no write here; a query must repeat UNSETTLED (``unsettled``) to use it.
    Index(
        "ix_cht_bridge_delivery_unsettled",
        "pipeline",
        "status",
        "doc_id",
        "last_attempt_at",
        sqlite_where=text(UNSETTLED),
        postgresql_where=text(UNSETTLED),
    ),
)

#: The retired index freshness was read from: a ledger that has it was last written by a version
#: that kept no ``cht_bridge_freshness`` (see ``_fill_freshness``).
REPORTED_INDEX = "ix_cht_bridge_delivery_reported"

#: Indexes of earlier versions that no table needs any more, dropped from a ledger that has them.
#: ``ix_cht_bridge_delivery_status`` (pipeline, status) repeated the first columns of
#: ``ix_cht_bridge_delivery_recent`` and ``_reported``: every row cost one more index write (about
#: 0.7 µs of the ~10 µs a ledger row costs on SQLite) for no query those cannot answer.
#: ``ix_cht_bridge_delivery_destination_id`` indexed every destination id; the partial
#: ``ix_cht_bridge_delivery_reference`` that replaces it holds only references, the only ids asked for.
#: ``ix_cht_bridge_delivery_recent`` (pipeline, status, last_attempt_at) held every row, for questions
#: about failed and dead rows only: ``ix_cht_bridge_delivery_unsettled`` holds those alone (~1.1 µs
#: of ledger write per row less). ``ix_cht_bridge_delivery_reported`` (pipeline, status,
#: reported_at) answered freshness with a random-order insert per row (~1.8 µs): the newest
#: reported date is now kept per pipeline in ``cht_bridge_freshness``, filled from the rows by
#: ``_migrate`` in the transaction that drops the index.
RETIRED_INDEXES = {
    deliveries.name: (
        "ix_cht_bridge_delivery_status",
        "ix_cht_bridge_delivery_destination_id",
        "ix_cht_bridge_delivery_recent",
        REPORTED_INDEX,
    )
}

#: How fresh each pipeline's destination is: the newest ``reported_at`` (the document's
#: ``reported_date``; an aggregate value's period start) of a row ``record`` wrote as delivered.
#: Written by ``record`` in the transaction of the rows themselves, as the larger of the stored
#: value and the batch's newest, so it can never be ahead of or behind the ledger after a crash.
#: It only grows: a document delivered and later failed, deleted or closed still counts, since
#: the destination did receive data that fresh (the question is how far the stream has got, not
#: which rows are delivered now). A row per pipeline instead of an index over every ledger row:
#: the index cost a random B-tree insert per row (reported dates arrive in no order).
#: A date ahead of the batch's time counts as that time (``FUTURE_SLACK``), so a wrong clock
#: cannot pin it. Refilled from the rows: delete the pipeline's row, and the next batch that
#: delivers a dated document fills it again from the ledger (``_refill_if_missing``).
freshness = Table(
    "cht_bridge_freshness",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("newest_reported_at", DateTime(timezone=True), nullable=False),
)

#: How far ahead of the batch's time (the worker's clock) a delivered report's date may count in
#: ``cht_bridge_freshness``; a later one counts as the batch's time plus this. A report's
#: ``reported_date`` is the phone's clock: one a few minutes fast (no network time for a while,
#: or a worker's own clock a little behind) keeps its date, so the freshness stays what the
#: rows say. A date further ahead is a wrong clock (a wrong year, a wrong time zone): stored as
#: it is, it would hold the freshness, which only grows, ahead of every later report, and the
#: lag negative (its alert silent) until that date. Capped, the lag is at most this negative
#: and an alert on it fires at most this late.
FUTURE_SLACK = timedelta(minutes=5)


def bookkeeping(pipeline: str, kind: str) -> str:
    """The ledger's name for rows a pipeline keeps beside its documents (an aggregate's reports and
    periods, a tracker's enrollments): "~" is in no pipeline's name (``config.loader.NAME_RE``),
    so these rows never mix with a pipeline's own, and the store can tell them apart."""
    return f"{pipeline}~{kind}"


def _is_bookkeeping(pipeline: str) -> bool:
    return "~" in pipeline


#: Whether a pipeline's last run stopped on its circuit breaker (the destination was down): the
#: breaker itself lives only for one run, so the sync task records its state here for the UI.
breakers = Table(
    "cht_bridge_breaker",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("is_open", Integer, nullable=False),
    Column("reason", Text),  # one line, as the task's error: the connection id and the last answer
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

DELIVERED = "delivered"
FAILED = "failed"
DEAD = "dead"
DELETED = "deleted"
CLOSED = "closed"
#: Not a status: what ``record`` counts for deferred outcomes (stored as ``failed``, i.e. pending,
#: with their count of failed runs unchanged, so waiting never makes a dead letter).
WAITING = "waiting"
UPSERT = "upsert"
DELETE = "delete"

_DEAD_LETTER_VIEW = (
    "SELECT pipeline, doc_id, doc_rev, operation, failures, attempts, response_status, last_error, "
    "first_attempt_at, last_attempt_at FROM cht_bridge_delivery WHERE status = 'dead' AND " + UNSETTLED
)


@dataclass(slots=True)
class Outcome:
    """What happened to one document in one attempt.

    ``retryable`` matters only when it was not delivered: False means trying the same payload
    again cannot help (a 4xx, a mapping error), so the document becomes a dead letter at once.

    Treated as a value (nothing changes one; ``dataclasses.replace`` makes a changed copy), but
    not declared frozen: one is made per document, and a frozen dataclass's ``__init__`` costs
    three times as much (``object.__setattr__`` per field).
    """

    doc_id: str
    doc_rev: str | None
    delivered: bool
    payload_hash: str | None = None
    response_status: int | None = None
    destination_id: str | None = None
    error: str | None = None
    retryable: bool = True
    operation: str = UPSERT
    reported_at: datetime | None = None
    key: str | None = None
    closed: bool = False  # nothing left to send: the failure needs no one (see CLOSED)
    deferred: bool = False  # not sent: it waits for the destination's request budget (not a failure)

    def __post_init__(self) -> None:
        # The reason is stored and logged as one line: made safe here, once, for both.
        if self.error is not None:
            self.error = one_line(self.error)


class LedgerState(NamedTuple):
    """What the ledger knows of one document, to decide whether to send it.

    (A named tuple: one is made per document a run finds in the ledger, for about a third of a
    frozen dataclass's cost.)
    """

    status: str
    delivered_hash: str | None
    destination_id: str | None
    operation: str


#: ``record(checkpoint=KEEP)`` writes outcomes without moving the checkpoint (retries, backfills).
KEEP = object()


def fits(value: str | None, chars: int) -> bool:
    """Whether a ledger column ``chars`` characters wide holds ``value`` on every database.

    PostgreSQL also refuses a NUL character, and the driver a string that is not valid UTF-8 (a
    lone surrogate, which JSON can carry).
    """
    if value is None:
        return True
    if len(value) > chars or "\x00" in value:
        return False
    if value.isascii():  # the common case, without encoding a copy
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def short_id(value: str, chars: int = DOC_ID_CHARS) -> str:
    """An id as a ledger row and a log line can hold it: itself when it fits, else its first
    characters (one line) and a hash of the whole, so two long ids never share a row."""
    if fits(value, chars):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = one_line(value[:40].replace("\x00", " ").encode("utf-8", "replace").decode("utf-8"))
    return f"{head}…#{digest}"


def refusal(doc_id: str, doc_rev: str | None, reported_at: datetime | None = None) -> Outcome | None:
    """A dead letter for a document whose id or revision the ledger cannot hold, else ``None``.

    Checked before sending: a document delivered and then refused by the ledger's write would be
    sent again by every run. Its row is kept under ``short_id`` so a person sees why.
    """
    if fits(doc_id, DOC_ID_CHARS) and fits(doc_rev, DOC_REV_CHARS):
        return None
    for what, value, chars in (("id", doc_id, DOC_ID_CHARS), ("revision", doc_rev, DOC_REV_CHARS)):
        if not fits(value, chars):
            reason = (
                f"not sent: the ledger cannot hold the document's {what} ({len(value or '')} characters; "
                f"at most {chars}, with no NUL or invalid character)"
            )
            rev = doc_rev if fits(doc_rev, DOC_REV_CHARS) else None
            return Outcome(short_id(doc_id), rev, False, error=reason, retryable=False, reported_at=reported_at)
    return None


class StateStore:
    """Checkpoints and ledger of every pipeline, on one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args, future=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        _migrate(self.engine)

    @contextmanager
    def durable(self) -> Iterator[Connection]:
        """A transaction whose commit is on disk when the block ends, not only in the OS's cache.

        For the writes that precede a POST with no idempotency key: RapidPro's flow-start
        intentions (``state.rapidpro``) and the inbound ledger's ``person_sent``/``report_sent``
        marks (``state.inbound``). A run that finds such a mark looks the write up before posting
        again, so the mark must outlive whatever the POST made: under ``synchronous=NORMAL`` (see
        ``_sqlite_pragmas``) a power loss can roll a commit back after the POST was sent, and the
        next run would post a second person or flow start. Every other write stays NORMAL: the
        forward ledger rolls back with its checkpoint and is re-sent with the same idempotency keys.

        On SQLite the connection runs ``PRAGMA synchronous=FULL`` (WAL: the WAL file is fsynced at
        each commit, and with it every commit before, of any connection) for this transaction only.
        The PRAGMA is run and committed *outside* the transaction: SQLAlchemy 2.0 autobegins on the
        first statement, so it is committed before ``begin()`` (pysqlite itself opens no SQLite
        transaction for a PRAGMA; it begins one before the first INSERT/UPDATE/DELETE). NORMAL is
        restored afterwards, also when the block raised; a connection that cannot be restored is
        invalidated, so the pool never hands out a FULL one.

        On PostgreSQL this is a plain transaction: a commit returns once its WAL is flushed while
        ``synchronous_commit`` is on (the default), so it is durable already.
        """
        with self.engine.connect() as conn:
            if conn.dialect.name != "sqlite":
                with conn.begin():
                    yield conn
                return
            conn.exec_driver_sql("PRAGMA synchronous=FULL")
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                try:
                    conn.exec_driver_sql("PRAGMA synchronous=NORMAL")
                    conn.commit()
                except Exception:  # noqa: BLE001 - the commit is made; only this connection is left FULL
                    log.warning("state store: could not restore synchronous=NORMAL; the connection is dropped")
                    conn.invalidate()

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self, pipeline: str) -> Any:
        """The seq to resume from, or ``None`` before the first batch."""
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints.c.seq).where(checkpoints.c.pipeline == pipeline)).first()
        return None if row is None else json.loads(row.seq)

    # -- ledger ----------------------------------------------------------------------------

    def states(self, pipeline: str, doc_ids: Iterable[str]) -> dict[str, LedgerState]:
        """The ledger's view of each document that has a row."""
        ids = [i for i in dict.fromkeys(doc_ids) if fits(i, DOC_ID_CHARS)]  # a longer id has no row
        found: dict[str, LedgerState] = {}
        with self.engine.connect() as conn:
            mark = "?" if conn.dialect.name == "sqlite" else "%s"
            # Plain SQL to the driver, as for ``record``: a page asks for thousands of ids, and
            # SQLAlchemy's handling of an expanding IN costs more per id than the query.
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = conn.exec_driver_sql(
                    "SELECT doc_id, status, delivered_hash, destination_id, operation FROM cht_bridge_delivery "
                    f"WHERE pipeline = {mark} AND doc_id IN ({', '.join([mark] * len(chunk))})",
                    (pipeline, *chunk),
                )
                found.update({r[0]: LedgerState._make(r[1:]) for r in rows})
        return found

    def delivered_hashes(self, pipeline: str, doc_ids: Iterable[str]) -> dict[str, str]:
        """The hash of the last successful delivery of each document that has one."""
        return {i: s.delivered_hash for i, s in self.states(pipeline, doc_ids).items() if s.delivered_hash}

    def delivered_destination_ids(
        self, destination_ids: Iterable[str], pipelines: Iterable[str] | None = None
    ) -> set[str]:
        """Which of ``destination_ids`` one of ``pipelines`` delivered (a row ``delivered`` with that
        destination id): a payload may refer to those records without sending them again.

        ``pipelines`` are the ones delivering to the asking destination's Connection
        (``for_destination``): a ``Patient/<uuid>`` another system holds (an OpenMRS pipeline's,
        with the same deterministic id) says nothing about this server. None: every pipeline.
        One indexed lookup per 500 references ("Type/id": ``ix_cht_bridge_delivery_reference``;
        the pipelines filter its rows). Only references are looked up: other ids (a dangling
        ``urn:uuid:``, a bare id) are not in that index, and answering them would read every
        delivered row once per reference of every document a broken mapping produces; they are
        answered "not delivered", which makes the payload carry what it refers to.
        """
        references = [i for i in dict.fromkeys(destination_ids) if "/" in i and fits(i, DESTINATION_ID_CHARS)]
        c = deliveries.c
        found: set[str] = set()
        scope = None if pipelines is None else list(dict.fromkeys(pipelines))
        if scope == [] or not references:
            return found
        with self.engine.connect() as conn:
            for start in range(0, len(references), 500):
                query = select(c.destination_id).where(
                    c.status == DELIVERED,
                    c.destination_id.in_(references[start : start + 500]),
                    text(REFERENCE),  # true of each: lets the database use the partial index
                )
                if scope is not None:
                    query = query.where(c.pipeline.in_(scope))
                found.update(r.destination_id for r in conn.execute(query))
        return found

    def for_destination(
        self, pipeline: str, peers: Iterable[str] | Callable[[], Iterable[str]] = ()
    ) -> DestinationLedger:
        """What ``pipeline``'s destination may ask this ledger, scoped to the pipelines (``pipeline``
        and ``peers``) that deliver to the same Connection and kind. ``peers`` may be a function:
        it is called once, when a destination first asks (most kinds never do)."""
        return DestinationLedger(self, pipeline, peers)

    def record(
        self, pipeline: str, outcomes: list[Outcome], checkpoint: Any = KEEP, *, dead_after: int = 5
    ) -> dict[str, int]:
        """Write a batch's outcomes and its checkpoint, in one transaction.

        A failure becomes a dead letter when it is permanent or is the ``dead_after``-th failed
        run in a row. Returns how many rows ended in each status.
        """
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            counts = _upsert_deliveries(conn, pipeline, outcomes, now, dead_after) if outcomes else {}
            if checkpoint is not KEEP:
                _upsert_checkpoint(conn, pipeline, checkpoint, now)
        return counts

    def pending(self, pipeline: str, *, after: str | None = None, limit: int = 1000) -> list[dict]:
        """Failed documents that the next run retries, in doc id order from ``after``."""
        c = deliveries.c
        query = select(c.doc_id, c.doc_rev, c.operation, c.destination_id, c.payload_hash, c.idempotency_key).where(
            c.pipeline == pipeline, c.status == FAILED, *unsettled([FAILED])
        )
        if after is not None:
            query = query.where(c.doc_id > after)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(c.doc_id).limit(limit))]

    def select(
        self,
        pipeline: str,
        *,
        statuses: Iterable[str] = (DEAD,),
        doc_ids: Iterable[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict]:
        """Documents to replay: by status, and optionally by id and last-attempt time ``[since, until)``.

        Several statuses not delivered are asked one by one, in one statement (UNION ALL): each part
        reads ``ix_cht_bridge_delivery_unsettled``; with ``status IN (...)`` SQLite would rather walk
        the pipeline's part of the primary key, every row of it, to give the id order without a sort.
        Not when ids are given: the primary key finds those (pipeline, doc_id), and one ``status IN``
        sends the ids once (a list per status would pass PostgreSQL's 65,535 parameters at ~32,700 ids).
        """
        c = deliveries.c
        statuses = list(dict.fromkeys(statuses))
        ids = None if doc_ids is None else list(doc_ids)
        with self.engine.connect() as conn:

            def asking(*where: Any) -> Any:
                query = select(
                    c.doc_id, c.doc_rev, c.status, c.operation, c.destination_id, c.payload_hash, c.idempotency_key
                ).where(c.pipeline == pipeline, *where)
                if ids is not None:
                    query = query.where(c.doc_id.in_(ids))
                if since is not None:
                    query = query.where(c.last_attempt_at >= _stamp(conn, since))
                if until is not None:
                    query = query.where(c.last_attempt_at < _stamp(conn, until))
                return query

            if len(statuses) > 1 and unsettled(statuses) and ids is None:
                parts = union_all(*(asking(c.status == status, *unsettled([status])) for status in statuses))
                query = parts.order_by(parts.selected_columns.doc_id)
            else:
                query = asking(c.status.in_(statuses), *unsettled(statuses)).order_by(c.doc_id)
            return [dict(r._mapping) for r in conn.execute(query)]

    def rearm(self, pipeline: str, doc_ids: Iterable[str]) -> None:
        """Give documents a fresh count of failed runs, before a person replays them."""
        ids = list(doc_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.pipeline == pipeline, deliveries.c.doc_id.in_(ids[start : start + 500]))
                    .values(failures=0)
                )

    def ledger(self, pipeline: str, doc_id: str) -> dict | None:
        """One ledger row as a dict, for people and tests."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(deliveries).where(deliveries.c.pipeline == pipeline, deliveries.c.doc_id == doc_id)
            ).first()
        return None if row is None else dict(row._mapping)

    def counts(self, pipeline: str) -> dict[str, int]:
        """Ledger rows per status."""
        with self.engine.connect() as conn:
            return status_counts(conn, [pipeline])[pipeline]

    def failures(self, pipeline: str, limit: int = 20, statuses: Iterable[str] = (FAILED, DEAD)) -> list[dict]:
        """The most recent failed or dead documents with their reasons (no payloads are stored)."""
        c = deliveries.c
        statuses = list(statuses)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.doc_id, c.status, c.response_status, c.last_error)
                .where(c.pipeline == pipeline, c.status.in_(statuses), *unsettled(statuses))
                .order_by(c.last_attempt_at.desc(), c.doc_id)
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    def newest_delivered(self, pipeline: str) -> datetime | None:
        """The newest ``reported_date`` the pipeline delivered: how fresh the destination is (see
        ``freshness``: a row delivered and later failed or deleted still counts)."""
        with self.engine.connect() as conn:
            return newest_reported(conn, [pipeline]).get(pipeline)

    def set_breaker(self, pipeline: str, is_open: bool, reason: str | None = None) -> None:
        """Record whether the pipeline's last run stopped on its circuit breaker (``reason``: why)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            stmt = _insert_for(conn, breakers).values(
                pipeline=pipeline, is_open=int(is_open), reason=one_line(reason) if reason else None, changed_at=now
            )
            changed = {name: stmt.excluded[name] for name in ("is_open", "reason", "changed_at")}
            conn.execute(stmt.on_conflict_do_update(index_elements=[breakers.c.pipeline], set_=changed))

    def breakers(self, pipelines: Iterable[str]) -> dict[str, dict]:
        """The recorded breaker state of each pipeline that has one."""
        names = list(pipelines)
        with self.engine.connect() as conn:
            rows = conn.execute(select(breakers).where(breakers.c.pipeline.in_(names))) if names else []
            return {r.pipeline: dict(r._mapping) for r in rows}

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class DestinationLedger:
    """The delivery ledger as one pipeline's destination sees it (``destinations.base.Ledger``).

    ``peers``: the other pipelines delivering to the destination's Connection (conn_id and kind),
    or a function finding them; a record another Connection holds is never taken as delivered here.
    """

    store: StateStore
    pipeline: str
    peers: Iterable[str] | Callable[[], Iterable[str]] = ()

    @cached_property
    def pipelines(self) -> tuple[str, ...]:
        """This pipeline and its peers, found once."""
        found = self.peers() if callable(self.peers) else self.peers
        return tuple(dict.fromkeys([self.pipeline, *found]))

    def delivered_destination_ids(self, destination_ids: Iterable[str]) -> set[str]:
        return self.store.delivered_destination_ids(destination_ids, self.pipelines)

    def last_delivered(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """The idempotency key of each document's last successful delivery by this pipeline: the
        key its payload then had, so a delivery with another key carries an edit since."""
        hashes = self.store.delivered_hashes(self.pipeline, doc_ids)
        return {doc_id: idempotency_key(self.pipeline, doc_id, digest) for doc_id, digest in hashes.items()}


def unsettled(statuses: Iterable[str]) -> list[Any]:
    """The condition that lets a query for rows in ``statuses`` use ``ix_cht_bridge_delivery_unsettled``
    (none when ``delivered`` is asked for: those rows are not in it)."""
    return [] if DELIVERED in statuses else [text(UNSETTLED)]


def status_counts(conn: Connection, pipelines: list[str]) -> dict[str, dict[str, int]]:
    """Ledger rows per status of each pipeline (statuses in name order, as a GROUP BY gives them).

    No index holds every row's status (a delivered row would cost one more B-tree write): the rows
    not delivered are counted in ``ix_cht_bridge_delivery_unsettled``, every row in the primary
    key's index (the pipeline's part of it, read without the table), and ``delivered`` is the rest.
    Both counts are one statement (UNION ALL; the totals with a NULL status), so one snapshot: as
    two, a batch another task committed between them would skew ``delivered``, even below zero.
    """
    c = deliveries.c
    found: dict[str, dict[str, int]] = {name: {} for name in pipelines}
    if not pipelines:
        return found
    every = select(c.pipeline, literal(None, String).label("status"), func.count()).where(c.pipeline.in_(pipelines))
    rest = select(c.pipeline, c.status, func.count()).where(c.pipeline.in_(pipelines), text(UNSETTLED))
    totals: dict[str, int] = {}
    for pipeline, status, n in conn.execute(union_all(every.group_by(c.pipeline), rest.group_by(c.pipeline, c.status))):
        if status is None:
            totals[pipeline] = n
        else:
            found[pipeline][status] = n
    for pipeline, total in totals.items():
        counts = found[pipeline]
        if delivered := total - sum(counts.values()):
            counts[DELIVERED] = delivered
        found[pipeline] = dict(sorted(counts.items()))
    return found


def newest_reported(conn: Connection, pipelines: list[str]) -> dict[str, datetime]:
    """``cht_bridge_freshness``'s newest reported date of each pipeline that delivered one (aware, UTC)."""
    f = freshness.c
    # As text on SQLite (what ``record`` stored), parsed here as the rows' own values were
    rows = conn.execute(
        select(f.pipeline, type_coerce(f.newest_reported_at, Text)).where(f.pipeline.in_(pipelines))
    ).all()
    return {pipeline: _parsed(value) for pipeline, value in rows if value is not None}


def _parsed(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


#: SQLite's WAL interval, in pages, on the store's connections (SQLite's default: 1,000). See
#: ``_sqlite_pragmas`` for what it costs and what it keeps.
WAL_CHECKPOINT_PAGES = 10_000
#: Each connection's page cache, in KiB (SQLite's default: 2,000 KiB).
CACHE_KIB = 16 * 1024


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the UI or a person read the ledger while a run writes it.
    #
    # What synchronous=NORMAL keeps, in WAL mode: a commit is not fsynced; the WAL is fsynced
    # before each checkpoint and the database after. A killed process loses nothing committed; an
    # OS crash or power loss can roll back the commits since the last checkpoint, whole and in
    # order (WAL recovery keeps a prefix). A page's ledger rows and its checkpoint are one
    # transaction in this one file (``record``), so they roll back together and the page is read
    # and sent again with the same idempotency keys.
    # The marks written *before* a POST that has no idempotency key (RapidPro's flow-start
    # intentions, state.rapidpro; the inbound ledger's person_sent/report_sent, state.inbound) must
    # survive a power loss too, or the next run would post again: they are written in
    # StateStore.durable(), which sets synchronous=FULL for their transaction only (their commit,
    # and every commit before it, is fsynced) and restores NORMAL after.
    #
    # The checkpoint interval and the page cache are larger than SQLite's defaults because a ledger
    # row costs mostly pages: CHT ids are uuids, so a page of 2,000 documents lands on most leaves
    # of the primary key's index (and of ``_reported``), and each commit writes them all to the WAL.
    # With SQLite's 1,000-page interval every such commit was also checkpointed: the same leaves
    # copied into the database once per commit (and two fsyncs). With 10,000 pages a leaf that
    # several commits change is copied once; the WAL file grows to at most the interval plus one
    # commit (~45 MB with a ledger of 50,000 rows, ~55 MB at 300,000 and 1M), is checkpointed and removed
    # when the last connection closes (the end of the task), and the power-loss window above is a
    # few pages of documents instead of one, re-sent with the same keys as before. The 16 MiB
    # cache keeps the indexes' leaves between commits instead of reading them back from the file
    # (a bounded cost: the benchmark worker's peak RSS 178 -> 194-198 MB).
    # Measured (2026-12, 2 cores, under load; ``StateStore.record`` alone, pages of 1,600 uuid rows,
    # CPU per row over a whole ledger of 300,000 rows, final checkpoint included): 31.5 µs with the
    # defaults, 26.4 with the interval alone, 23.5 with both (8 MiB: 26.7; 32 MiB: 22-24); the first
    # 40,000 rows ~14 against ~11.5. In the 50k benchmark the worker's CPU went 45.8 -> 43.3 µs/doc.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


#: The key of the PostgreSQL advisory lock that lets one task at a time bring a ledger up to date.
MIGRATION_LOCK = 7_420_631_905


def _migrate(engine: Engine) -> None:
    """Create the ledger's tables, bring one created by an older version up to date, and create the
    dead-letter view.

    Tasks opening one ledger at the same moment after an upgrade would race to add the same index
    (PostgreSQL answers the loser "relation already exists", even with IF NOT EXISTS when both
    create at once): on PostgreSQL they take turns under an advisory lock, and every index is
    created IF NOT EXISTS, which on SQLite (writers take turns anyway) is enough.
    """
    if engine.dialect.name != "postgresql":
        _migrate_now(engine)
        return
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            _migrate_now(engine)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            lock.commit()


def _migrate_now(engine: Engine) -> None:
    had_freshness = inspect(engine).has_table(freshness.name)
    metadata.create_all(engine)
    existing = {col["name"] for col in inspect(engine).get_columns(deliveries.name)}
    with engine.begin() as conn:
        for column in deliveries.columns:
            if column.name not in existing:
                ddl = f"ALTER TABLE {deliveries.name} ADD COLUMN {column.name} {column.type.compile(engine.dialect)}"
                if column.server_default is not None:
                    ddl += f" NOT NULL DEFAULT '{column.server_default.arg}'"
                conn.execute(text(ddl))
        present = {index["name"] for index in inspect(conn).get_indexes(deliveries.name)}
        for index in deliveries.indexes:
            if index.name not in present:
                conn.execute(CreateIndex(index, if_not_exists=True))
    _fill_freshness(engine, had_freshness)
    # Only when present, as for the view below: DROP INDEX locks the table.
    for table, names in RETIRED_INDEXES.items():
        present = {index["name"] for index in inspect(engine).get_indexes(table)}
        for name in names:
            if name in present:
                with engine.begin() as conn:
                    conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    # Only when missing or made by an earlier version (its WHERE without UNSETTLED, which SQLite
    # needs to read the dead letters from ``ix_cht_bridge_delivery_unsettled`` instead of the
    # pipeline's part of the primary key): replacing it on every open would make concurrent tasks
    # fight for its lock (and the IF NOT EXISTS / OR REPLACE lets two first tasks both succeed).
    inspector = inspect(engine)
    view = "cht_bridge_dead_letters"
    if view not in inspector.get_view_names() or "delivered" not in inspector.get_view_definition(view):
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"CREATE OR REPLACE VIEW {view} AS {_DEAD_LETTER_VIEW}"))
            else:
                conn.execute(text(f"DROP VIEW IF EXISTS {view}"))
                conn.execute(text(f"CREATE VIEW IF NOT EXISTS {view} AS {_DEAD_LETTER_VIEW}"))


#: The newer of a stored freshness and a new one (``excluded``): the value only grows.
_NEWER = (
    "ON CONFLICT (pipeline) DO UPDATE SET newest_reported_at = CASE "
    "WHEN excluded.newest_reported_at > cht_bridge_freshness.newest_reported_at "
    "THEN excluded.newest_reported_at ELSE cht_bridge_freshness.newest_reported_at END"
)
#: Each pipeline's freshness as the ledger's rows say it: what ``newest_delivered`` used to ask them,
#: a date after the row's delivery counted as its delivery time (``FUTURE_SLACK``; without the
#: slack: SQLite and PostgreSQL add time to a date differently). ``{where}``: more conditions.
_FILL_FRESHNESS = (
    "INSERT INTO cht_bridge_freshness (pipeline, newest_reported_at) "
    "SELECT pipeline, max(CASE WHEN reported_at > delivered_at THEN delivered_at ELSE reported_at END) "
    "FROM cht_bridge_delivery WHERE status = 'delivered' AND reported_at IS NOT NULL{where} GROUP BY pipeline " + _NEWER
)


def _fill_freshness(engine: Engine, had_table: bool) -> None:
    """Fill ``cht_bridge_freshness`` from the ledger's rows, for a ledger an older version wrote.

    That is a ledger without the table, or one that has ``ix_cht_bridge_delivery_reported``: only
    a version without the table makes that index (``_migrate``), so a task of the previous version
    still running during an upgrade, which writes rows without the freshness, brings it back, and
    the next open fills again from the rows (the newer value wins: the fill never moves it back).
    The fill is committed before ``_migrate_now`` drops the index, in a transaction of its own: on
    PostgreSQL a batch being recorded holds the ledger and then wants its pipeline's freshness row,
    so a fill holding that row while DROP INDEX waits for the ledger was a deadlock. A crash between
    the two leaves the index, and the next open fills again (the fill only raises values). Runs
    under the migration's advisory lock on PostgreSQL.
    """
    present = {index["name"] for index in inspect(engine).get_indexes(deliveries.name)}
    if had_table and REPORTED_INDEX not in present:
        return
    with engine.begin() as conn:
        # Reads the delivered rows themselves (their delivered_at), not the old index alone: at
        # 1,000,000 rows on SQLite the open took 2.7-3.3 s instead of 0.8 (measured under load), once.
        conn.exec_driver_sql(_FILL_FRESHNESS.format(where=""))


def _stamp(conn: Any, when: datetime) -> Any:
    """A timestamp as this database compares it: SQLAlchemy keeps SQLite's as naive UTC text."""
    return _sqlite_stamp(when) if conn.dialect.name == "sqlite" else _aware(when)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _sqlite_stamp(when: datetime) -> str:
    if when.tzinfo is UTC:  # the common case, once per ledger row: the same text, without two copies
        return when.isoformat(" ")[:-6]  # less "+00:00"
    return _aware(when).astimezone(UTC).replace(tzinfo=None).isoformat(" ")


def _insert_for(conn: Any, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - other databases are not supported yet
        raise NotImplementedError(f"state store on {conn.dialect.name} is not supported")
    return insert(table)


_DELIVERY_COLUMNS = (
    "pipeline", "doc_id", "doc_rev", "status", "payload_hash", "delivered_hash", "attempts", "response_status",
    "destination_id", "last_error", "first_attempt_at", "last_attempt_at", "delivered_at", "failures", "operation",
    "reported_at", "idempotency_key",
)  # fmt: skip
# Plain SQL that SQLite (3.24+) and PostgreSQL both accept. It goes straight to the driver: a
# batch of a thousand rows costs half of what SQLAlchemy's per-row parameter handling adds.
_UPSERT_DELIVERIES = (
    "INSERT INTO cht_bridge_delivery ({columns}) VALUES ({values}) "
    "ON CONFLICT (pipeline, doc_id) DO UPDATE SET "
    "doc_rev = excluded.doc_rev, status = excluded.status, payload_hash = excluded.payload_hash, "
    # a failed attempt keeps the last successful hash, so an unchanged doc stays skipped; a sent
    # delete forgets it, so a document restored in CHT is sent again
    "delivered_hash = CASE WHEN excluded.status = 'deleted' THEN NULL "
    "ELSE COALESCE(excluded.delivered_hash, cht_bridge_delivery.delivered_hash) END, "
    "failures = excluded.failures, operation = excluded.operation, "
    "reported_at = COALESCE(excluded.reported_at, cht_bridge_delivery.reported_at), "
    "idempotency_key = excluded.idempotency_key, "
    "attempts = cht_bridge_delivery.attempts + 1, response_status = excluded.response_status, "
    "destination_id = COALESCE(excluded.destination_id, cht_bridge_delivery.destination_id), "
    "last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at, "
    "delivered_at = COALESCE(excluded.delivered_at, cht_bridge_delivery.delivered_at)"
)


def _upsert_sql(dialect: str) -> str:
    # Positional parameters: the driver binds a row's tuple without a name lookup per column.
    mark = "?" if dialect == "sqlite" else "%s"
    return _UPSERT_DELIVERIES.format(
        columns=", ".join(_DELIVERY_COLUMNS), values=", ".join([mark] * len(_DELIVERY_COLUMNS))
    )


#: The row of a plain delivery (delivered, no reason, not a delete) on SQLite, whose other columns
#: are the same for every such row: the constants are SQL literals, the batch's time one numbered
#: parameter used three times, the payload hash one used twice (``delivered_hash``). pysqlite binds
#: every parameter of every row (a call into SQLite, under its mutex): 9 a row instead of 17 is
#: ~0.9 µs less per ledger row (measured: 2026-12, 2 cores, 1,600-row batches). The values stored
#: are those of the general statement (``_UPSERT_DELIVERIES``), column for column.
_DELIVERED_VALUES = {
    "pipeline": "?1", "doc_id": "?2", "doc_rev": "?3", "status": f"'{DELIVERED}'", "payload_hash": "?4",
    "delivered_hash": "?4", "attempts": "1", "response_status": "?5", "destination_id": "?6", "last_error": "NULL",
    "first_attempt_at": "?7", "last_attempt_at": "?7", "delivered_at": "?7", "failures": "0",
    "operation": f"'{UPSERT}'", "reported_at": "?8", "idempotency_key": "?9",
}  # fmt: skip
_UPSERT_DELIVERED_SQLITE = _UPSERT_DELIVERIES.format(
    columns=", ".join(_DELIVERY_COLUMNS), values=", ".join(_DELIVERED_VALUES[name] for name in _DELIVERY_COLUMNS)
)


def _delivered_rows(pipeline: str, outcomes: list[Outcome], stamp: str) -> list[tuple] | None:
    """The rows of a batch whose every outcome is a plain delivery, in ``_DELIVERED_VALUES``' parameter
    order; None when one is not, or a value may not fit its column as it is (then ``_storable`` decides).

    The most common batch by far, so it is built in one pass, and its ids are checked column by
    column (``_all_fit``) instead of three ``fits`` a row.
    """
    for o in outcomes:
        if not o.delivered or o.error is not None or o.operation != UPSERT or o.deferred:
            return None
    rows = [
        (
            pipeline, o.doc_id, o.doc_rev, o.payload_hash, o.response_status, o.destination_id, stamp,
            None if o.reported_at is None else _sqlite_stamp(o.reported_at), o.key,
        )
        for o in outcomes
    ]  # fmt: skip
    _, ids, revs, _, _, destination_ids, *_ = zip(*rows, strict=True)
    fit = _all_fit(ids, DOC_ID_CHARS) and _all_fit(revs, DOC_REV_CHARS)
    return rows if fit and _all_fit(destination_ids, DESTINATION_ID_CHARS) else None


def _all_fit(values: Iterable[str | None], chars: int) -> bool:
    """``fits`` for every value at once, sure only of plain ASCII: False may still fit (``fits`` says)."""
    present = [v for v in values if v is not None]
    try:
        if max(map(len, present), default=0) > chars:
            return False
        joined = "".join(present)
    except TypeError:  # not text: ``fits`` (the general path) says what it makes of it
        return False
    return joined.isascii() and "\x00" not in joined


def _upsert_deliveries(
    conn: Any, pipeline: str, outcomes: list[Outcome], now: datetime, dead_after: int
) -> dict[str, int]:
    stamp = _stamp(conn, now)
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    delivered = _delivered_rows(pipeline, outcomes, stamp) if conn.dialect.name == "sqlite" else None
    if delivered is not None:
        delivered.sort(key=_doc_id_order)  # as below
        conn.exec_driver_sql(_UPSERT_DELIVERED_SQLITE, delivered)
        reported = [row[7] for row in delivered]
        kept = [] if None not in reported or _is_bookkeeping(pipeline) else [r[1] for r in delivered if r[7] is None]
        _move_freshness(conn, pipeline, max(filter(None, reported), default=None), kept, now, mark)
        return {DELIVERED: len(delivered)}
    c = deliveries.c
    outcomes = [_storable(pipeline, o) for o in outcomes]
    failed_ids = [o.doc_id for o in outcomes if not o.delivered]
    before: dict[str, int] = {}
    for start in range(0, len(failed_ids), 500):
        rows = conn.execute(
            select(c.doc_id, c.failures).where(c.pipeline == pipeline, c.doc_id.in_(failed_ids[start : start + 500]))
        )
        before.update({r.doc_id: r.failures for r in rows})
    rows, counts = [], {}
    stamp_of = _sqlite_stamp if conn.dialect.name == "sqlite" else _aware
    newest = None  # the newest reported_at (as stored) of the rows delivered now
    kept: list[str] = []  # rows delivered without one: the row keeps the one it had (the upsert's COALESCE)
    # Bookkeeping rows (``bookkeeping``) never have a date to keep: no lookup for one (it took ~11%
    # of an aggregate's ``record``).
    dated = not _is_bookkeeping(pipeline)
    for o in outcomes:
        failures = 0 if o.delivered else before.get(o.doc_id, 0) + (0 if o.deferred else 1)
        status = FAILED if o.deferred else _status(o, failures, dead_after)
        counted = WAITING if o.deferred else status
        counts[counted] = counts.get(counted, 0) + 1
        reported = None if o.reported_at is None else stamp_of(o.reported_at)
        if status == DELIVERED:
            if reported is None:
                if dated:
                    kept.append(o.doc_id)
            elif newest is None or reported > newest:
                newest = reported
        rows.append(
            (  # in the order of _DELIVERY_COLUMNS
                pipeline,
                o.doc_id,
                o.doc_rev,
                status,
                o.payload_hash,
                o.payload_hash if status == DELIVERED else None,  # delivered_hash
                1,  # attempts
                o.response_status,
                o.destination_id,
                o.error,  # last_error
                stamp,  # first_attempt_at
                stamp,  # last_attempt_at
                stamp if o.delivered else None,  # delivered_at
                failures,
                o.operation,
                reported,  # reported_at
                o.key,  # idempotency_key
            )
        )
    # In key order (stable: a document twice keeps its order): the primary key's index is then
    # walked forward instead of at random, which counts once the ledger is large (uuid ids).
    rows.sort(key=_doc_id_order)
    conn.exec_driver_sql(_upsert_sql(conn.dialect.name), rows)
    _move_freshness(conn, pipeline, newest, kept, now, mark)
    return counts


def _move_freshness(conn: Any, pipeline: str, newest: Any, kept: list[str], now: datetime, mark: str) -> None:
    """Raise the pipeline's freshness to the newest reported date the batch delivered (as stored),
    or the one its rows ``kept`` (delivered without a date of their own) still hold."""
    stamp_of = _sqlite_stamp if conn.dialect.name == "sqlite" else _aware
    for start in range(0, len(kept), 500):  # rare: a delivered document without a reported_date
        chunk = kept[start : start + 500]
        stored = conn.exec_driver_sql(
            f"SELECT max(reported_at) FROM cht_bridge_delivery WHERE pipeline = {mark} "
            f"AND doc_id IN ({', '.join([mark] * len(chunk))})",
            (pipeline, *chunk),
        ).scalar()
        if stored is not None and (newest is None or stored > newest):
            newest = stored
    if newest is not None:  # in this transaction: the freshness moves with the rows, or neither does
        newest = min(newest, stamp_of(now + FUTURE_SLACK))  # a wrong clock cannot pin it (FUTURE_SLACK)
        _refill_if_missing(conn, pipeline, mark)
        conn.exec_driver_sql(
            f"INSERT INTO cht_bridge_freshness (pipeline, newest_reported_at) VALUES ({mark}, {mark}) " + _NEWER,
            (pipeline, newest),
        )


def _refill_if_missing(conn: Any, pipeline: str, mark: str) -> None:
    """Fill the pipeline's freshness from its rows when it has none: the documented refill (README,
    "Ledger writes"): a person deletes the row, and the next batch that delivers a dated document
    fills it again. One primary-key lookup per such batch; the fill itself reads the pipeline's
    delivered rows once (a new pipeline's first batch: those rows alone)."""
    found = conn.exec_driver_sql(f"SELECT 1 FROM cht_bridge_freshness WHERE pipeline = {mark}", (pipeline,)).first()
    if found is None:
        conn.exec_driver_sql(_FILL_FRESHNESS.format(where=f" AND pipeline = {mark}"), (pipeline,))


def _doc_id_order(row: tuple) -> str:
    return row[1] or ""  # a row without an id still goes to the database, which refuses the batch


def _storable(pipeline: str, o: Outcome) -> Outcome:
    """The outcome as the ledger's columns can hold it, so a delivered batch is always recorded.

    Documents are refused before sending (``refusal``); this catches the rest. A destination id
    too long for its column is not kept rather than cut: a cut id in a delete's path could name
    another record. A delete then uses the CHT document id, as for a destination that answers none.
    """
    if fits(o.doc_id, DOC_ID_CHARS) and fits(o.doc_rev, DOC_REV_CHARS) and fits(o.destination_id, DESTINATION_ID_CHARS):
        return o
    changes: dict[str, Any] = {"doc_id": short_id(o.doc_id)}
    if not fits(o.doc_rev, DOC_REV_CHARS):
        changes["doc_rev"] = None
    if not fits(o.destination_id, DESTINATION_ID_CHARS):
        note = (
            f"the destination answered an id of {len(o.destination_id or '')} characters, which the ledger "
            f"cannot hold (at most {DESTINATION_ID_CHARS}); it was not kept"
        )
        log.warning("pipeline %s: document %s: %s", pipeline, changes["doc_id"], note)
        changes.update(destination_id=None, error=f"{o.error}; {note}" if o.error else note)
    return replace(o, **changes)


def _status(outcome: Outcome, failures: int, dead_after: int) -> str:
    if outcome.delivered:
        return DELETED if outcome.operation == DELETE else DELIVERED
    if outcome.closed:
        return CLOSED
    return DEAD if not outcome.retryable or failures >= dead_after else FAILED


def _upsert_checkpoint(conn: Any, pipeline: str, seq: Any, now: datetime) -> None:
    stmt = _insert_for(conn, checkpoints).values(pipeline=pipeline, seq=json.dumps(seq), updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[checkpoints.c.pipeline],
        set_={"seq": stmt.excluded.seq, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt)
