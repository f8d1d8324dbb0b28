"""Matching that learns, for reverse pipelines: which model a run scores with, what a review answer
teaches, and how ``cht_bridge_matching_train`` trains on a deployment's own people.

* ``match.model`` absent: the shipped model. A file: that model. ``learned``: the newest model of
  the pipeline's state store that passed its checks, else the shipped one (a run never waits for,
  or fails for lack of, a trained model).
* A reviewer's answer is stored as labelled pairs with the list row's person fields
  (``state/matching.py``), keyed ``<pipeline>|<source id>``.
* Training reads the CHT persons under every place of the pipelines' place tables, the list rows
  the ledger still holds (open or waiting) and the labelled people, and trains one model per state
  store (``matching.training.train``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cht_bridge.reverse.model import ReversePipeline
from cht_bridge.state.inbound import OPEN, WAITING, InboundLedger, InboundRow
from cht_bridge.state.matching import MatchingStore

log = logging.getLogger(__name__)
LEARNED = "learned"


def model_for(pipeline: ReversePipeline, matching: MatchingStore | None) -> tuple[dict[str, Any] | None, str]:
    """The model a run of ``pipeline`` scores with (``None``: the shipped one) and where it came from."""
    from cht_bridge.matching.model import load_model_file
    from cht_bridge.reverse.places import from_repo

    chosen = pipeline.match.model
    if chosen is None:
        return None, "shipped"
    if chosen != LEARNED:
        return load_model_file(from_repo(chosen)), f"file {chosen}"
    newest = matching.newest_passing() if matching is not None else None
    if newest is None:
        return None, "shipped (no trained model has passed its checks yet)"
    return newest.model, f"learned #{newest.id} of {newest.trained_at:%Y-%m-%d %H:%M}"


def incoming_key(pipeline: str, source_id: str) -> str:
    """The id a list row has in training data and labels."""
    return f"{pipeline}|{source_id}"


def record_answer(
    ledger: InboundLedger, row: InboundRow, linked: int | None, new: bool, reviewer: str, person: dict | None
) -> int:
    """Store a reviewer's answer to ``row`` as labelled pairs; returns how many pairs."""
    matching = MatchingStore(ledger.store)
    return matching.add_answer(
        row.pipeline,
        row.source_id,
        [c["id"] for c in row.candidates],
        linked,
        new,
        person,
        row.place_id,
        reviewer,
    )


def train_for(
    pipelines: Sequence[ReversePipeline],
    ledger: InboundLedger,
    persons_under: Callable[[ReversePipeline, str], list[dict[str, Any]]],
    seed: int = 42,
    keep: int = 12,
) -> dict[str, Any]:
    """Train one model for ``pipelines`` (sharing ``ledger``'s state store) and store it.

    :param persons_under: the CHT persons under a place of a pipeline (its CHT connection).
    :returns: counts, the checks and the thresholds (no personal data), for the log and XCom.
    """
    from cht_bridge.matching import from_cht_person
    from cht_bridge.matching.labels import Label
    from cht_bridge.matching.report import render_report
    from cht_bridge.matching.training import passed, train
    from cht_bridge.reverse.places import load_place_table
    from cht_bridge.reverse.run import incoming_person

    matching = MatchingStore(ledger.store)
    docs: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines:
        for place_id in sorted(set(load_place_table(pipeline.places.table).places.values())):
            for doc in persons_under(pipeline, place_id):
                docs.setdefault(doc["_id"], doc)
    identifier = pipelines[0].match.identifier_field if pipelines else None
    existing = [from_cht_person(doc, identifier) for doc in docs.values()]
    incoming: dict[str, Any] = {}
    # each row's pipeline: rows of different pipelines may name one person, and do not compete
    list_of: dict[str, str] = {}
    for pipeline in pipelines:
        for row in ledger.rows(pipeline.name, [*OPEN, *WAITING]):
            if row.record and row.place_id:
                key = incoming_key(pipeline.name, row.source_id)
                incoming[key] = incoming_person(row, key, pipeline)
                list_of[key] = pipeline.name
    labels: list[Label] = []
    by_name = {p.name: p for p in pipelines}
    for stored in matching.labels(by_name):
        key = incoming_key(stored.pipeline, stored.source_id)
        if stored.person is not None and key not in incoming:
            row = InboundRow(
                stored.pipeline, stored.source_id, "", "review", {"person": stored.person}, stored.place_id
            )
            incoming[key] = incoming_person(row, key, by_name[stored.pipeline])
            list_of[key] = stored.pipeline
        if key in incoming:
            labels.append(Label(key, stored.existing_id, stored.match))
    region = pipelines[0].match.region if pipelines else "KE"
    lists = [list_of[key] for key in incoming]
    model = train(existing, list(incoming.values()), labels, region=region, seed=seed, lists=lists)
    ok = passed(model)
    model_id = matching.add_model(model, ok, render_report(model), keep=keep)
    block = model["cht_bridge"]
    summary = {
        "model_id": model_id,
        "passed": ok,
        "existing": len(existing),
        "incoming": len(incoming),
        "labels": len(labels),
        "upper": block.get("upper"),
        "lower": block.get("lower"),
        "checks": block.get("checks"),
        "seconds": block.get("seconds"),
    }
    log.info("trained matching model #%d for %s: %s", model_id, sorted(by_name), summary)
    return summary
