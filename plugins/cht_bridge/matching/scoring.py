"""Score candidate pairs with Splink 5 on an in-process DuckDB.

``predict_between(existing, incoming)`` scores each incoming person against the existing people
the blocking rules let through (the reverse-pipeline shape), and ``predict_within(incoming)``
finds people a list names twice. A model (shipped or trained by ``training.py``) is only scored
here, never trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from splink import DuckDBAPI, Linker

from cht_bridge.matching.evidence import Evidence, words
from cht_bridge.matching.model import BRIDGE_KEY, load_model

if TYPE_CHECKING:
    from splink.internals.splink_dataframe import SplinkDataFrame

# Splink writes its comparison SQL with arrow lambdas (x -> ...), which DuckDB 2 rejects unless
# told otherwise on the connection.
_LAMBDA_SYNTAX = "SET lambda_syntax='ENABLE_SINGLE_ARROW'"
# Pairs below this match weight (odds of 1 in 1,000) cannot change a decision; leaving them in
# DuckDB saves converting hundreds of thousands of rows to Python.
_MIN_WEIGHT = -10.0


@dataclass(frozen=True)
class ScoredPair:
    """One scored candidate pair; ``weights`` holds each field's match weight (bits, after the
    term-frequency adjustment), which explains a score without repeating any personal data."""

    left: str
    right: str
    probability: float
    match_weight: float
    weights: tuple[tuple[str, float], ...]
    evidence: tuple[Evidence, ...] = ()  # per field: (comparison, words, weight), see evidence.py


def score(
    existing: pa.Table,
    incoming: pa.Table,
    tf_lookups: dict[str, pa.Table],
    *,
    prior_between: float,
    prior_within: float,
    threads: int | None = None,
    model: dict[str, Any] | None = None,
) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """Return (incoming × existing pairs, incoming × incoming pairs), scored.

    :param existing: feature table of existing people (``features.build_table``).
    :param incoming: feature table of incoming people.
    :param tf_lookups: term-frequency lookup per compared column (``features.tf_tables``).
    :param prior_between: prior probability that a random existing/incoming pair is one person.
    :param prior_within: the same for two rows of the incoming list.
    :param threads: DuckDB threads (default: all cores).
    :param model: Splink settings to score with (a trained model); default the shipped one.
    """
    model = splink_settings(model or load_model())
    connection = duckdb.connect(":memory:")
    try:
        connection.execute(_LAMBDA_SYNTAX)
        if threads:
            connection.execute(f"SET threads={int(threads)}")
        db_api = DuckDBAPI(connection)
        existing_df = db_api.register(existing, table_name="existing_people")
        incoming_df = db_api.register(incoming, table_name="incoming_people")
        tf_frames = {column: db_api.register(table, table_name=f"tf_{column}") for column, table in tf_lookups.items()}
        between: list[ScoredPair] = []
        if existing.num_rows and incoming.num_rows:
            linker = _linker(existing_df, model, prior_between, tf_frames)
            predictions = linker.inference.predict_between(
                existing_df, incoming_df, threshold_match_weight=_MIN_WEIGHT, warning_mode="never"
            )
            between = _pairs(predictions.as_pyarrow_table(), model)
        within: list[ScoredPair] = []
        if incoming.num_rows > 1:
            linker = _linker(incoming_df, model, prior_within, tf_frames)
            predictions = linker.inference.predict_within(
                incoming_df, threshold_match_weight=_MIN_WEIGHT, warning_mode="never"
            )
            within = _pairs(predictions.as_pyarrow_table(), model)
        return between, within
    finally:
        connection.close()


def _linker(
    frame: SplinkDataFrame, model: dict[str, Any], prior: float, tf_frames: dict[str, SplinkDataFrame]
) -> Linker:
    settings = dict(model, probability_two_random_records_match=min(max(prior, 1e-9), 0.5))
    linker = Linker(frame, settings, log_level=None)
    for column, tf_frame in tf_frames.items():
        if _uses_tf(model, column):
            linker.table_management.register_term_frequency_lookup(tf_frame, column)
    return linker


def splink_settings(model: dict[str, Any]) -> dict[str, Any]:
    """What Splink reads of a model file: everything but the bridge's own ``cht_bridge`` block
    (thresholds, metrics, how it was trained)."""
    return {key: value for key, value in model.items() if key != BRIDGE_KEY}


def _uses_tf(model: dict[str, Any], column: str) -> bool:
    return any(
        level.get("tf_adjustment_column") == column
        for comparison in model["comparisons"]
        for level in comparison["comparison_levels"]
    )


def _pairs(table: pa.Table, model: dict[str, Any]) -> list[ScoredPair]:
    columns = table.to_pydict()
    zeros = [0.0] * table.num_rows
    names = [comparison["output_column_name"] for comparison in model["comparisons"]]
    tf = {name: columns.get(f"mw_tf_adj_{name}", zeros) for name in names}
    per_field = [[a + b for a, b in zip(columns[f"mw_{name}"], tf[name], strict=True)] for name in names]
    labels = {comparison["output_column_name"]: _level_labels(comparison) for comparison in model["comparisons"]}
    pairs = []
    for row, (left, right, probability, match_weight, *weights) in enumerate(
        zip(
            columns["unique_id_l"],
            columns["unique_id_r"],
            columns["match_probability"],
            columns["match_weight"],
            *per_field,
            strict=True,
        )
    ):
        evidence = tuple(
            (name, words(name, _level_of(labels[name], columns[f"mw_{name}"][row]), tf[name][row] or 0.0), weight)
            for name, weight in zip(names, weights, strict=True)
        )
        pairs.append(
            ScoredPair(
                left,
                right,
                float(probability),
                float(match_weight),
                tuple(zip(names, weights, strict=True)),
                evidence,
            )
        )
    return pairs


def _level_labels(comparison: dict[str, Any]) -> list[tuple[str | None, float]]:
    """Each level's label and its weight before frequencies, log2(m/u): Splink 5 returns the
    weight of the level a pair reached (``mw_<name>``), not the level, so the weight names it."""
    found: list[tuple[str | None, float]] = []
    for level in comparison["comparison_levels"]:
        m, u = level.get("m_probability"), level.get("u_probability")
        if level.get("is_null_level") or not m or not u:
            continue
        found.append((level.get("label_for_charts"), math.log2(m / u)))
    return found


def _level_of(levels: list[tuple[str | None, float]], weight: float | None) -> str | None:
    """The label of the level with this weight (``None``: a null level, weight 0, or no match)."""
    if weight is None:
        return None
    for label, level_weight in levels:
        if abs(level_weight - weight) < 1e-6:
            return label
    return None
