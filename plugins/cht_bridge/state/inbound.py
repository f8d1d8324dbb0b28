"""The inbound ledger: what each row of a reverse pipeline's list became in CHT.

CHT's records and people APIs have no idempotency key (cht.md §2.2), so a retried POST creates a
second report or person. This ledger is the integration-side key: one row per (pipeline, source
record id, source version), moved through its statuses one write at a time, and a write to CHT is
marked *before* it is sent (``person_sent``/``report_sent``, committed durably: ``save``). A run that
finds such a mark after a crash looks the document up in CHT by its ``source_ref`` before it posts
again.

Statuses: ``received`` (mapped, not yet matched) → ``review`` (a person decides) → ``ready``
(decided: ``person_id`` set to link, empty to create) → ``person_sent`` → ``ready`` (with the new
``person_id``) → ``report_sent`` → ``done``. Rows that cannot go on yet say why and wait, with
their record: ``unplaced`` (no place for the row's facility or area; matched again by every run,
so adding the code to the place table lets it through) and ``failed`` (CHT refused a write for a
reason a person must fix, or the mapping failed; sent again by a replay). ``skipped`` rows (a
reviewer chose to skip it, the list names the same person twice, or a newer version of the
record replaced it) and ``done`` rows are closed.

The mapped record (names, phone…) is kept in ``record`` while the row is open or waiting and is
cleared when it is closed: the ledger outlives the data it needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, select, update

from cht_bridge.errors import one_line
from cht_bridge.state.store import (
    PIPELINE_CHARS,
    SOURCE_ID_CHARS,
    SOURCE_VERSION_CHARS,
    StateStore,
    _insert_for,
    _stamp,
    _upsert_checkpoint,
    fits,
    short_id,
)

metadata = MetaData()

inbound = Table(
    "cht_bridge_inbound",
    metadata,
    Column("pipeline", String(PIPELINE_CHARS), primary_key=True),
    Column("source_id", String(SOURCE_ID_CHARS), primary_key=True),
    Column("source_version", String(SOURCE_VERSION_CHARS), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("record", Text),  # the mapped row as JSON while it is open; NULL once closed
    Column("place_id", String(255)),
    Column("decision", String(10)),  # link | new | review: the matcher's, then the reviewer's
    Column("decided_by", String(200)),  # matcher | deterministic | <reviewer>
    Column("probability", Float),
    Column("candidates", Text),  # JSON [{id, probability, reason}]: ids only
    Column("same_as", String(255)),  # an earlier row of the same list that is the same person
    Column("person_id", String(255)),
    Column("person_created", Integer, nullable=False, default=0),
    Column("report_id", String(255)),
    Column("reason", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("run_id", String(250)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_cht_bridge_inbound_status", "pipeline", "status"),
)

RECEIVED = "received"
REVIEW = "review"
READY = "ready"
PERSON_SENT = "person_sent"
REPORT_SENT = "report_sent"
DONE = "done"
UNPLACED = "unplaced"
FAILED = "failed"
SKIPPED = "skipped"
OPEN = (RECEIVED, REVIEW, READY, PERSON_SENT, REPORT_SENT)
#: Stopped until a person acts (a place-table code, a fix and a replay): the record is kept.
WAITING = (UNPLACED, FAILED)
#: Written *before* CHT is asked to create the person or report: a run finding one looks it up first.
MARKS = (PERSON_SENT, REPORT_SENT)
#: Finished for good: the record is erased when the row closes, and housekeeping erases any
#: record such a row still holds after the retention time.
FINISHED = (DONE, SKIPPED)


@dataclass
class InboundRow:
    """One list row as the ledger knows it."""

    pipeline: str
    source_id: str
    source_version: str
    status: str
    record: dict[str, Any] | None = None
    place_id: str | None = None
    decision: str | None = None
    decided_by: str | None = None
    probability: float | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    same_as: str | None = None
    person_id: str | None = None
    person_created: bool = False
    report_id: str | None = None
    reason: str | None = None
    attempts: int = 0
    run_id: str | None = None  # the run that last saved the row (read back; ``save`` sets it)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source_id, self.source_version)

    @property
    def source_ref(self) -> str:
        """Stored on what the row creates in CHT, so a run after a crash can find it again."""
        return f"{self.pipeline}:{self.source_id}:{self.source_version}"


def ledger_key(source_id: str, source_version: str) -> tuple[str, str]:
    """The (id, version) a row is kept under: as the source sent them when they fit the columns."""
    return short_id(source_id, SOURCE_ID_CHARS), short_id(source_version, SOURCE_VERSION_CHARS)


def refused_row(pipeline: str, source_id: str, source_version: str) -> InboundRow | None:
    """A failed row for a record whose id or version the ledger cannot hold, else ``None``.

    Checked when the record is received, before anything is written to CHT: the row is kept under
    ``ledger_key`` (the id's first characters and a hash), so a person sees it and a re-read adds
    nothing, and nothing is created in CHT for a row the ledger could not track.
    """
    for what, value, chars in (("id", source_id, SOURCE_ID_CHARS), ("version", source_version, SOURCE_VERSION_CHARS)):
        if not fits(value, chars):
            reason = (
                f"source: the ledger cannot hold the record's {what} ({len(value)} characters; at most {chars}, "
                "with no NUL or invalid character)"
            )
            return InboundRow(pipeline, *ledger_key(source_id, source_version), FAILED, reason=reason)
    return None


class InboundLedger:
    """The reverse pipelines' ledger and checkpoints, in the state store's database."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.engine = store.engine
        metadata.create_all(self.engine)

    def checkpoint(self, pipeline: str) -> Any:
        return self.store.checkpoint(pipeline)

    def seen(self, pipeline: str, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (source id, version) pairs are already in the ledger: a re-read page adds nothing."""
        stored = {key: ledger_key(*key) for key in keys}  # a refused id is kept under its short form
        found = {(r.source_id, r.source_version) for r in self._versions(pipeline, {k[0] for k in stored.values()})}
        return {key for key, at in stored.items() if at in found}

    def settled(self, pipeline: str, source_ids: Iterable[str]) -> set[str]:
        """Which source ids have a row in any version that is not waiting (``unplaced``/``failed``).

        For a source whose records are final once read (``once_per_id``): such a record, read
        again under a new version, has been or is being written already and must not be again.
        """
        stored = {source_id: short_id(source_id, SOURCE_ID_CHARS) for source_id in source_ids}
        found = {r.source_id for r in self._versions(pipeline, set(stored.values())) if r.status not in WAITING}
        return {source_id for source_id, at in stored.items() if at in found}

    def _versions(self, pipeline: str, ids: set[str]) -> list[Any]:
        """(source_id, source_version, status) of every row of these stored ids; one query per 500."""
        ordered = sorted(ids)
        c = inbound.c
        found: list[Any] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                query = select(c.source_id, c.source_version, c.status).where(
                    c.pipeline == pipeline, c.source_id.in_(chunk)
                )
                found.extend(conn.execute(query))
        return found

    def receive(
        self,
        pipeline: str,
        rows: list[InboundRow],
        checkpoint: Any,
        run_id: str | None,
        superseded: list[tuple[str, str]] | None = None,
    ) -> int:
        """Add a page's new rows and move the source's checkpoint, in one transaction.

        A new version of a record replaces its older versions still waiting (``unplaced`` or
        ``failed``): they become ``skipped``, so adding a code to the place table, or a replay,
        sends the record once, as it is now. Their keys are appended to ``superseded``.
        """
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if rows:
                stmt = _insert_for(conn, inbound).on_conflict_do_nothing()
                # created_at keeps the list's order: rows are matched and written in it
                values = [
                    _values(row, now + timedelta(microseconds=i), run_id, created=True) for i, row in enumerate(rows)
                ]
                conn.execute(stmt, values)
                replaced = _supersede(conn, pipeline, rows, now, run_id)
                if superseded is not None:
                    superseded.extend(replaced)
            _upsert_checkpoint(conn, pipeline, checkpoint, now)
        return len(rows)

    def rows(self, pipeline: str, statuses: Iterable[str], limit: int | None = None) -> list[InboundRow]:
        """Rows in these statuses, oldest first (a list is written in the order it came)."""
        c = inbound.c
        query = (
            select(inbound)
            .where(c.pipeline == pipeline, c.status.in_(list(statuses)))
            .order_by(c.created_at, c.source_id, c.source_version)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(query)]

    def get(self, pipeline: str, source_id: str, source_version: str) -> InboundRow | None:
        c = inbound.c
        with self.engine.connect() as conn:
            r = conn.execute(
                select(inbound).where(
                    c.pipeline == pipeline, c.source_id == source_id, c.source_version == source_version
                )
            ).first()
        return None if r is None else _row(r)

    def save(self, row: InboundRow, run_id: str | None = None) -> None:
        """Write a row's current state; a closed row forgets its record (patient data).

        A write mark (``person_sent``/``report_sent``, ``MARKS``) is committed durably
        (``StateStore.durable``): it precedes a POST that has no idempotency key, and a mark a power
        loss rolled back after the POST would let the next run post a second person or report.
        Every other state is a plain commit: losing one sends nothing twice (the row goes back to
        its mark, or to before it, and a mark is looked up in CHT before anything is posted).
        """
        if row.status in FINISHED:
            row.record = None
        values = _values(row, datetime.now(UTC), run_id, created=False)
        c = inbound.c
        with self.store.durable() if row.status in MARKS else self.engine.begin() as conn:
            conn.execute(
                update(inbound)
                .where(c.pipeline == row.pipeline, c.source_id == row.source_id, c.source_version == row.source_version)
                .values(**values)
            )

    def review_keys(self, pipeline: str) -> list[list[str]]:
        """``[source_id, source_version]`` of the rows waiting for a person, oldest first."""
        c = inbound.c
        query = (
            select(c.source_id, c.source_version)
            .where(c.pipeline == pipeline, c.status == REVIEW)
            .order_by(c.created_at, c.source_id, c.source_version)
        )
        with self.engine.connect() as conn:
            return [[r.source_id, r.source_version] for r in conn.execute(query)]

    def erase_records(self, before: datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Erase the record (names, phones…) of rows done or skipped before ``before``; per pipeline.

        Every pipeline of this database, including those whose file is gone. Open rows, and rows
        that may be tried again, keep theirs. ``dry_run`` changes nothing and counts the same rows.
        """
        from sqlalchemy import func

        c = inbound.c
        with self.engine.begin() as conn:
            where = (c.status.in_(FINISHED), c.record.is_not(None), c.updated_at < _stamp(conn, before))
            found = conn.execute(select(c.pipeline, func.count()).where(*where).group_by(c.pipeline)).all()
            if found and not dry_run:
                conn.execute(update(inbound).where(*where).values(record=None))
        return {pipeline: n for pipeline, n in found}

    def counts(self, pipeline: str) -> dict[str, int]:
        from sqlalchemy import func

        c = inbound.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(c.status, func.count()).where(c.pipeline == pipeline).group_by(c.status)).all()
        return {status: n for status, n in rows}


def _supersede(
    conn: Any, pipeline: str, rows: list[InboundRow], now: datetime, run_id: str | None
) -> list[tuple[str, str]]:
    c = inbound.c
    # Only a version that can be sent replaces a waiting one: a newer version that failed to map
    # (no record) must not erase the older one's data.
    newest = {row.source_id: row.source_version for row in rows if row.record is not None}
    ids = sorted(newest)
    replaced: list[tuple[str, str]] = []
    for start in range(0, len(ids), 500):
        found = conn.execute(
            select(c.source_id, c.source_version).where(
                c.pipeline == pipeline, c.source_id.in_(ids[start : start + 500]), c.status.in_(WAITING)
            )
        )
        replaced.extend((r.source_id, r.source_version) for r in found if r.source_version != newest[r.source_id])
    for source_id, version in replaced:
        values: dict[str, Any] = {
            "status": SKIPPED,
            "record": None,
            "reason": f"replaced by a newer version of the record ({newest[source_id]})",
            "updated_at": now,
        }
        if run_id is not None:
            values["run_id"] = run_id
        conn.execute(
            update(inbound)
            .where(c.pipeline == pipeline, c.source_id == source_id, c.source_version == version)
            .values(**values)
        )
    return replaced


def _values(row: InboundRow, now: datetime, run_id: str | None, *, created: bool) -> dict[str, Any]:
    row.reason = one_line(row.reason)  # stored and then logged by the caller as one line
    values: dict[str, Any] = {
        "pipeline": row.pipeline,
        "source_id": row.source_id,
        "source_version": row.source_version,
        "status": row.status,
        "record": None if row.record is None else json.dumps(row.record, sort_keys=True),
        "place_id": row.place_id,
        "decision": row.decision,
        "decided_by": row.decided_by,
        "probability": row.probability,
        "candidates": json.dumps(row.candidates) if row.candidates else None,
        "same_as": row.same_as,
        "person_id": row.person_id,
        "person_created": int(row.person_created),
        "report_id": row.report_id,
        "reason": row.reason,
        "attempts": row.attempts,
        "updated_at": now,
    }
    if run_id is not None:
        values["run_id"] = run_id
    if created:
        values["created_at"] = now
    return values


def _row(r: Any) -> InboundRow:
    return InboundRow(
        pipeline=r.pipeline,
        source_id=r.source_id,
        source_version=r.source_version,
        status=r.status,
        record=None if r.record is None else json.loads(r.record),
        place_id=r.place_id,
        decision=r.decision,
        decided_by=r.decided_by,
        probability=r.probability,
        candidates=json.loads(r.candidates) if r.candidates else [],
        same_as=r.same_as,
        person_id=r.person_id,
        person_created=bool(r.person_created),
        report_id=r.report_id,
        reason=r.reason,
        attempts=r.attempts,
        run_id=r.run_id,
    )
