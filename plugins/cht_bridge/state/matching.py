"""What the matcher learns from, and what it learnt: reviewers' labelled pairs and trained models.

Labels (``cht_bridge_match_labels``): every answered review question, one row per candidate the
question offered (link to k: k is the person, the others are not; new: none is) and one row without
a candidate for a skip. The list row's person fields (``person``, the mapped names, sex, date of
birth, phone) are kept with the label, because training must compare the pair again long after
the inbound ledger has erased the row's record; ``erase_people`` drops them after the retention
time, and a label without its person no longer trains anything.

Models (``cht_bridge_match_models``): each training's model file (JSON) with its metrics, whether
it passed its checks, and when. The reverse DAGs use the newest model that passed
(``newest_passing``); ``keep`` bounds how many stay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, delete, func, select, update

from cht_bridge.state.store import PIPELINE_CHARS, SOURCE_ID_CHARS, StateStore, _stamp

metadata = MetaData()

labels_table = Table(
    "cht_bridge_match_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(PIPELINE_CHARS), nullable=False, index=True),
    Column("source_id", String(SOURCE_ID_CHARS), nullable=False),
    Column("existing_id", String(255)),  # the CHT person the question offered; NULL for a skip
    Column("match", Integer),  # 1 same person, 0 not, NULL skipped
    Column("person", Text),  # the list row's person fields (JSON) until erased
    Column("place_id", String(255)),
    Column("reviewer", String(200)),
    Column("answered_at", DateTime(timezone=True), nullable=False),
)

models_table = Table(
    "cht_bridge_match_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trained_at", DateTime(timezone=True), nullable=False, index=True),
    Column("passed", Integer, nullable=False),
    Column("metrics", Text),  # JSON: the model's cht_bridge block without the probabilities
    Column("model", Text, nullable=False),  # the model file (JSON)
    Column("report", Text),  # the Markdown report
)


@dataclass(frozen=True)
class StoredLabel:
    pipeline: str
    source_id: str
    existing_id: str | None
    match: bool | None
    person: dict[str, Any] | None
    place_id: str | None


@dataclass(frozen=True)
class StoredModel:
    id: int
    trained_at: datetime
    passed: bool
    model: dict[str, Any]
    metrics: dict[str, Any]
    report: str


class MatchingStore:
    """Labels and models, in the state store's database."""

    def __init__(self, store: StateStore) -> None:
        self.engine = store.engine
        metadata.create_all(self.engine)

    # -- labels ---------------------------------------------------------------------------------

    def add_answer(
        self,
        pipeline: str,
        source_id: str,
        candidates: list[str],
        linked: int | None,
        new: bool,
        person: dict[str, Any] | None,
        place_id: str | None,
        reviewer: str,
    ) -> int:
        """Store one answered review question as labelled pairs; returns how many rows."""
        from cht_bridge.matching.labels import from_answer

        now = datetime.now(UTC)
        rows = [
            {
                "pipeline": pipeline,
                "source_id": source_id,
                "existing_id": label.existing_id,
                "match": None if label.match is None else int(label.match),
                "person": json.dumps(person, sort_keys=True, default=str) if person else None,
                "place_id": place_id,
                "reviewer": reviewer,
                "answered_at": now,
            }
            for label in from_answer(source_id, candidates, linked, new)
        ]
        with self.engine.begin() as conn:
            conn.execute(labels_table.insert(), rows)
        return len(rows)

    def labels(self, pipelines: Iterable[str] | None = None) -> list[StoredLabel]:
        """Stored labels, oldest first; only those of ``pipelines`` when given."""
        c = labels_table.c
        query = select(labels_table).order_by(c.answered_at, c.id)
        if pipelines is not None:
            query = query.where(c.pipeline.in_(list(pipelines)))
        with self.engine.connect() as conn:
            return [
                StoredLabel(
                    r.pipeline,
                    r.source_id,
                    r.existing_id,
                    None if r.match is None else bool(r.match),
                    json.loads(r.person) if r.person else None,
                    r.place_id,
                )
                for r in conn.execute(query)
            ]

    def erase_people(self, before: datetime, *, dry_run: bool = False) -> int:
        """Drop the person fields of labels answered before ``before``; returns how many (in a dry
        run, how many would be). The label itself (which ids matched) stays: it holds no patient data."""
        c = labels_table.c
        with self.engine.begin() as conn:
            where = (c.person.is_not(None), c.answered_at < _stamp(conn, before))
            if dry_run:
                return conn.execute(select(func.count()).select_from(labels_table).where(*where)).scalar_one()
            return conn.execute(update(labels_table).where(*where).values(person=None)).rowcount

    # -- models ---------------------------------------------------------------------------------

    def add_model(self, model: dict[str, Any], passed: bool, report: str, keep: int = 12) -> int:
        """Store a trained model; only the newest ``keep`` stay. Returns its id."""
        metrics = {k: v for k, v in model.get("cht_bridge", {}).items() if k != "probabilities"}
        with self.engine.begin() as conn:
            result = conn.execute(
                models_table.insert().values(
                    trained_at=datetime.now(UTC),
                    passed=int(passed),
                    metrics=json.dumps(metrics, sort_keys=True, default=str),
                    model=json.dumps(model, sort_keys=True),
                    report=report,
                )
            )
            new_id = int(result.inserted_primary_key[0])
            c = models_table.c
            old = [r.id for r in conn.execute(select(c.id).order_by(c.id.desc()).offset(max(keep, 1)))]
            if old:
                conn.execute(delete(models_table).where(c.id.in_(old)))
        return new_id

    def models(self) -> list[StoredModel]:
        """Every stored model, newest first."""
        c = models_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(models_table).order_by(c.id.desc())).all()
        return [
            StoredModel(
                r.id, r.trained_at, bool(r.passed), json.loads(r.model), json.loads(r.metrics or "{}"), r.report
            )
            for r in rows
        ]

    def newest_passing(self) -> StoredModel | None:
        """The newest model that passed its checks, or ``None`` (then the shipped model is used)."""
        c = models_table.c
        with self.engine.connect() as conn:
            r = conn.execute(select(models_table).where(c.passed == 1).order_by(c.id.desc()).limit(1)).first()
        if r is None:
            return None
        return StoredModel(r.id, r.trained_at, True, json.loads(r.model), json.loads(r.metrics or "{}"), r.report)
