"""The state store: each pipeline's checkpoint and its delivery ledger, in one SQL database.

The ledger is how a person answers "did record R arrive, and if not why": one row per pipeline
and document. The checkpoint and the ledger rows of a batch are written in one transaction, so
after a crash either both moved or neither did, and the batch is simply read again.

SQLAlchemy Core keeps the same code on the default SQLite file and on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

checkpoints = Table(
    "cht_bridge_checkpoint",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("seq", Text, nullable=False),  # the server's seq as JSON text: opaque, never parsed
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "cht_bridge_delivery",
    metadata,
    Column("pipeline", String(200), primary_key=True),
    Column("doc_id", String(255), primary_key=True),
    Column("doc_rev", String(100)),
    Column("status", String(20), nullable=False),  # delivered | failed
    Column("payload_hash", String(64)),  # of the last attempt
    Column("delivered_hash", String(64)),  # of the last successful delivery: the dedup key
    Column("attempts", Integer, nullable=False, default=0),
    Column("response_status", Integer),
    Column("destination_id", String(255)),
    Column("last_error", Text),
    Column("first_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_attempt_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True)),
)

DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What happened to one document in one attempt."""

    doc_id: str
    doc_rev: str | None
    delivered: bool
    payload_hash: str | None = None
    response_status: int | None = None
    destination_id: str | None = None
    error: str | None = None


class StateStore:
    """Checkpoints and ledger of every pipeline, on one SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args, future=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    # -- checkpoint ------------------------------------------------------------------------

    def checkpoint(self, pipeline: str) -> Any:
        """The seq to resume from, or ``None`` before the first batch."""
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoints.c.seq).where(checkpoints.c.pipeline == pipeline)).first()
        return None if row is None else json.loads(row.seq)

    # -- ledger ----------------------------------------------------------------------------

    def delivered_hashes(self, pipeline: str, doc_ids: Iterable[str]) -> dict[str, str]:
        """The hash of the last successful delivery of each document that has one."""
        ids = list(doc_ids)
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(deliveries.c.doc_id, deliveries.c.delivered_hash).where(
                        deliveries.c.pipeline == pipeline,
                        deliveries.c.doc_id.in_(ids[start : start + 500]),
                        deliveries.c.delivered_hash.is_not(None),
                    )
                )
                found.update({r.doc_id: r.delivered_hash for r in rows})
        return found

    def record(self, pipeline: str, outcomes: list[Outcome], checkpoint: Any) -> None:
        """Write a batch's outcomes and its checkpoint, in one transaction."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if outcomes:
                _upsert_deliveries(conn, pipeline, outcomes, now)
            _upsert_checkpoint(conn, pipeline, checkpoint, now)

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
            rows = conn.execute(
                select(deliveries.c.status, func.count())
                .where(deliveries.c.pipeline == pipeline)
                .group_by(deliveries.c.status)
            )
            return {status: n for status, n in rows}

    def failures(self, pipeline: str, limit: int = 20) -> list[dict]:
        """The most recent failed documents with their reasons (no payloads are stored)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries.c.doc_id, deliveries.c.response_status, deliveries.c.last_error)
                .where(deliveries.c.pipeline == pipeline, deliveries.c.status == FAILED)
                .order_by(deliveries.c.last_attempt_at.desc())
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the UI or a person read the ledger while a run writes it.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


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
    "destination_id", "last_error", "first_attempt_at", "last_attempt_at", "delivered_at",
)  # fmt: skip
# Plain SQL that SQLite (3.24+) and PostgreSQL both accept. It goes straight to the driver: a
# batch of a thousand rows costs half of what SQLAlchemy's per-row parameter handling adds.
_UPSERT_DELIVERIES = (
    "INSERT INTO cht_bridge_delivery ({columns}) VALUES ({values}) "
    "ON CONFLICT (pipeline, doc_id) DO UPDATE SET "
    "doc_rev = excluded.doc_rev, status = excluded.status, payload_hash = excluded.payload_hash, "
    # a failed attempt keeps the last successful hash, so an unchanged doc stays skipped
    "delivered_hash = COALESCE(excluded.delivered_hash, cht_bridge_delivery.delivered_hash), "
    "attempts = cht_bridge_delivery.attempts + 1, response_status = excluded.response_status, "
    "destination_id = COALESCE(excluded.destination_id, cht_bridge_delivery.destination_id), "
    "last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at, "
    "delivered_at = COALESCE(excluded.delivered_at, cht_bridge_delivery.delivered_at)"
)


def _upsert_sql(dialect: str) -> str:
    mark = (lambda c: f":{c}") if dialect == "sqlite" else (lambda c: f"%({c})s")
    return _UPSERT_DELIVERIES.format(
        columns=", ".join(_DELIVERY_COLUMNS), values=", ".join(map(mark, _DELIVERY_COLUMNS))
    )


def _upsert_deliveries(conn: Any, pipeline: str, outcomes: list[Outcome], now: datetime) -> None:
    # SQLAlchemy keeps SQLite datetimes as naive UTC text; PostgreSQL takes the datetime itself.
    stamp: Any = now.replace(tzinfo=None).isoformat(" ") if conn.dialect.name == "sqlite" else now
    rows = [
        {
            "pipeline": pipeline,
            "doc_id": o.doc_id,
            "doc_rev": o.doc_rev,
            "status": DELIVERED if o.delivered else FAILED,
            "payload_hash": o.payload_hash,
            "delivered_hash": o.payload_hash if o.delivered else None,
            "attempts": 1,
            "response_status": o.response_status,
            "destination_id": o.destination_id,
            "last_error": o.error,
            "first_attempt_at": stamp,
            "last_attempt_at": stamp,
            "delivered_at": stamp if o.delivered else None,
        }
        for o in outcomes
    ]
    conn.exec_driver_sql(_upsert_sql(conn.dialect.name), rows)


def _upsert_checkpoint(conn: Any, pipeline: str, seq: Any, now: datetime) -> None:
    stmt = _insert_for(conn, checkpoints).values(pipeline=pipeline, seq=json.dumps(seq), updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[checkpoints.c.pipeline],
        set_={"seq": stmt.excluded.seq, "updated_at": stmt.excluded.updated_at},
    )
    conn.execute(stmt)
