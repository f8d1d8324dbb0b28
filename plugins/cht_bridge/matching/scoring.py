"""Score candidate pairs with Splink 5 on an in-process DuckDB.

``predict_between(existing, incoming)`` scores each incoming person against the existing people
the blocking rules let through (the reverse-pipeline shape), and ``predict_within(incoming)``
finds people a list names twice. A model (shipped or trained by ``training.py``) is only scored
here, never trained.

Scoring is the matcher's hot spot, and most of it is the name comparison's list lambdas (Jaro-
Winkler and edit distance of every token against every token) on pairs that end far below any
threshold (two strangers in one village). So a model with such levels is scored in two passes
(``_predicted``): the first compares every blocked pair with those levels replaced by one level
worth the most any of them is worth, which gives each pair a match weight at least its true
one; only the pairs whose bound reaches the threshold are then scored with the model itself.
The pairs returned, and every number in them, are the ones a single pass gives.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from splink import DuckDBAPI, Linker
from splink.internals.duckdb.dataframe import DuckDBDataFrame

from cht_bridge.matching.evidence import TF_NOTE_BITS, Evidence, words
from cht_bridge.matching.model import BRIDGE_KEY, NARROWER_RULES, PAIRS_PER_INCOMING_ROW, load_model, upgraded

if TYPE_CHECKING:
    from splink.internals.splink_dataframe import SplinkDataFrame

log = logging.getLogger(__name__)

# Splink writes its comparison SQL with arrow lambdas (x -> ...), which DuckDB 2 rejects unless
# told otherwise on the connection.
_LAMBDA_SYNTAX = "SET lambda_syntax='ENABLE_SINGLE_ARROW'"
# Pairs below this match weight (odds of 1 in 1,000) cannot change a decision; leaving them in
# DuckDB saves converting hundreds of thousands of rows to Python.
_MIN_WEIGHT = -10.0
# A list lambda (``x -> ...``); one within another compares every name of one side with every name
# of the other, the costly kind of level the first pass skips (``_pairwise``).
_LAMBDA = "->"
# The first pass keeps pairs this much under the threshold (its bound is exact arithmetic on the
# same terms, so this only guards against a change in how Splink sums them), and so does a floor
# given as a probability.
_BOUND_MARGIN = 1e-6
#: The people (CHT population and list, as ``features.Frequencies`` counts them) for whom the
#: model's floors on a value's frequency were set: the benchmark at 5,000 x 5,000 (``floors_for_population``).
FLOOR_PEOPLE = 10_000
# The column holding, per person, the pairs the second pass scores (see ``_pair_keys``).
_PAIR_KEYS = "cht_pair_keys"
# One term of a blocking rule that a key count can measure: the same column on both sides.
_EQUAL_KEYS = re.compile(r'l\."(\w+)" = r\."\1"')


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
    within_min_probability: float | None = None,
) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """Return (incoming × existing pairs, incoming × incoming pairs), scored.

    :param existing: feature table of existing people (``features.build_table``).
    :param incoming: feature table of incoming people.
    :param tf_lookups: term-frequency lookup per compared column (``features.tf_tables``).
    :param prior_between: prior probability that a random existing/incoming pair is one person.
    :param prior_within: the same for two rows of the incoming list.
    :param threads: DuckDB threads (default: all cores).
    :param model: Splink settings to score with (a trained model); default the shipped one.
    :param within_min_probability: pairs of the list under this probability may be left out (the
        caller uses none of them); ``None``: every pair above the usual floor is returned.
    """
    model = floors_for_population(splink_settings(model or load_model()), existing.num_rows + incoming.num_rows)
    connection = duckdb.connect(":memory:")
    try:
        connection.execute(_LAMBDA_SYNTAX)
        if threads:
            connection.execute(f"SET threads={int(threads)}")
        db_api = DuckDBAPI(connection)
        existing_df = _register(db_api, existing, "existing_people")
        incoming_df = _register(db_api, incoming, "incoming_people")
        tf_frames = {column: db_api.register(table, table_name=f"tf_{column}") for column, table in tf_lookups.items()}
        # One linker for the model and one for its bound, for both kinds of pairs: Splink parses
        # every level's SQL when it builds a linker, a tenth of the scoring time for four of them.
        linkers = [_linker(incoming_df, settings, tf_frames) for settings in _with_bound(model)]
        between: list[ScoredPair] = []
        if existing.num_rows and incoming.num_rows:
            sides = [(existing, existing_df), (incoming, incoming_df)]
            rules = _within_budget(connection, model, "existing_people", incoming.num_rows)
            between = _pairs(_predicted(db_api, sides, linkers, (prior_between, rules), _MIN_WEIGHT), model)
        within: list[ScoredPair] = []
        if incoming.num_rows > 1:
            floor = _MIN_WEIGHT
            if within_min_probability is not None and within_min_probability > 0.0:
                # a hair under the probability's weight: a pair just under it may round up to it
                odds = within_min_probability / max(1.0 - within_min_probability, 1e-300)
                floor = max(floor, math.log2(odds) - _BOUND_MARGIN)
            rules = _within_budget(connection, model, None, incoming.num_rows)
            within = _pairs(_predicted(db_api, [(incoming, incoming_df)], linkers, (prior_within, rules), floor), model)
        return between, within
    finally:
        connection.close()


def floors_for_population(model: dict[str, Any], people: int) -> dict[str, Any]:
    """``model`` with each level's floor on a value's frequency (``tf_minimum_u_value``) held as a
    number of people, not as a share: the floors (1e-3 for a place, 1e-4 for a phone) cap the
    evidence one rare value gives, and were set and checked where the frequencies count
    ``FLOOR_PEOPLE`` people (1e-3 of them: 10 people; 1e-4: one). As a share, a household's place
    (4 people) is under the floor however large the population: at 5,000 x 100,000 agreeing on it
    was worth 7.8 bits (trained East model) where its frequency says 12.2, and read "a common
    place", while the prior of any one pair rightly fell by 4.3 bits; held as 10 people it is worth
    11.2 bits, as at 5,000 x 5,000 relative to the prior. Only ever lowered, so populations up to
    ``FLOOR_PEOPLE`` score as before."""
    if people <= FLOOR_PEOPLE:
        return model
    scale = FLOOR_PEOPLE / people
    comparisons = [
        dict(
            comparison,
            comparison_levels=[
                dict(level, tf_minimum_u_value=level["tf_minimum_u_value"] * scale)
                if level.get("tf_minimum_u_value")
                else level
                for level in comparison["comparison_levels"]
            ],
        )
        for comparison in model["comparisons"]
    ]
    return dict(model, comparisons=comparisons)


def _with_bound(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The model, and its bound when it has one (``_bound_settings``): two passes then."""
    return [settings for settings in (model, _bound_settings(model)) if settings is not None]


def _within_budget(connection: Any, model: dict[str, Any], existing: str | None, rows: int) -> list[dict[str, Any]]:
    """``model``'s blocking rules, each rule of ``model.NARROWER_RULES`` replaced by the first of its
    versions (itself, then the narrower ones) that makes at most ``PAIRS_PER_INCOMING_ROW`` pairs
    per incoming row on this run's tables, or left out when none does.

    A name and a letter of another is a key many people share, and its pairs grow with the
    population (5,000 rows x 100,000 people: 819,000 pairs on the East African population, 5.4
    million on the second, against 430,000 of every other rule together): counted per key before
    any pair is made, the cost stays bounded by the list. ``existing``: the table of existing
    people, or ``None`` for pairs within the incoming list. Only counts are logged."""
    budget = PAIRS_PER_INCOMING_ROW * max(rows, 1)
    rules = []
    for position, rule in enumerate(model.get("blocking_rules_to_generate_predictions", [])):
        narrower = NARROWER_RULES.get(rule.get("blocking_rule", "")) if isinstance(rule, dict) else None
        if not narrower:
            rules.append(rule)
            continue
        counts: list[int] = []
        for version in [rule, *narrower]:
            counts.append(_pair_count(connection, version, existing))
            if counts[-1] <= budget:
                rules.append(version)
                break
        if len(counts) > 1 or counts[-1] > budget:
            used = f"version {len(counts) - 1} used" if counts[-1] <= budget else "left out"
            log.info(
                "blocking rule %d: %s pairs per version for %d incoming rows (budget %d): %s",
                position,
                counts,
                rows,
                budget,
                used,
            )
    return rules


def _pair_count(connection: Any, rule: dict[str, Any], existing: str | None) -> int:
    """The pairs a blocking rule of equal keys makes, counted per key (``GROUP BY``) without
    making them: the sum over keys of the people holding it on each side (a pair sharing two keys
    counts twice, so never fewer than Splink makes). ``existing`` as in ``_within_budget``."""
    terms = [term.strip() for term in rule["blocking_rule"].split(" AND ")]
    matched = [_EQUAL_KEYS.fullmatch(term) for term in terms]
    if not all(matched):
        raise ValueError(f"a rule of NARROWER_RULES must be equal keys joined by AND: {rule['blocking_rule']}")
    keys = ", ".join(f'"{found.group(1)}"' for found in matched if found)
    known = " AND ".join(f'"{found.group(1)}" IS NOT NULL' for found in matched if found)
    explode = rule.get("arrays_to_explode", [])

    def per_key(table: str) -> str:
        return f"(SELECT {keys}, count(*) AS n FROM {exploded(table, explode)} WHERE {known} GROUP BY {keys})"  # noqa: S608

    if existing is None:
        sql = f"SELECT coalesce(sum(n * (n - 1) // 2), 0) FROM {per_key('incoming_people')}"  # noqa: S608
    else:
        on = " AND ".join(f"l.{key} = r.{key}" for key in keys.split(", "))
        sql = (
            f"SELECT coalesce(sum(l.n * r.n), 0) FROM {per_key(existing)} l JOIN {per_key('incoming_people')} r ON {on}"  # noqa: S608
        )
    return int(connection.execute(sql).fetchall()[0][0])


def exploded(table: str, columns: Sequence[str]) -> str:
    """``table`` with one row per element of each list column (all combinations), as Splink blocks."""
    sql = table
    for column in columns:
        sql = f'(SELECT * EXCLUDE ("{column}"), unnest("{column}") AS "{column}" FROM {sql})'
    return sql


def _predicted(
    db_api: DuckDBAPI,
    sides: list[tuple[pa.Table, SplinkDataFrame]],
    linkers: list[Linker],
    scoring: tuple[float, list[dict[str, Any]]],
    floor: float,
) -> pa.Table:
    """Splink's predictions at match weight ``floor`` or more: between the two ``sides`` (left,
    right), or within the one. ``linkers``: the model's, and the bound's (``_bound_settings``)
    when there is one, which makes it two passes. ``scoring``: the prior probability of a match
    and the blocking rules of these pairs."""
    prior, rules = scoring
    frames = [frame for _, frame in sides]
    if len(linkers) == 1:
        return _predict(linkers[0], frames, prior, floor, rules)
    candidates = _predict(linkers[1], frames, prior, floor - _BOUND_MARGIN, rules)
    if candidates.num_rows == 0:
        return candidates
    keyed = [
        _register(db_api, _pair_keys(table, candidates), f"{frame.templated_name}_pairs_{len(sides)}")
        for table, frame in sides
    ]
    keys = [{"blocking_rule": f'l."{_PAIR_KEYS}" = r."{_PAIR_KEYS}"', "arrays_to_explode": [_PAIR_KEYS]}]
    return _predict(linkers[0], keyed, prior, floor, keys)


def _predict(
    linker: Linker, frames: list[SplinkDataFrame], prior: float, floor: float, rules: list[dict[str, Any]]
) -> pa.Table:
    # The prior is the one setting that differs between a list's pairs and its pairs with the
    # existing people; Splink reads it from the linker's settings when it writes the SQL.
    linker._settings_obj._probability_two_random_records_match = min(max(prior, 1e-9), 0.5)
    options: dict[str, Any] = {
        "threshold_match_weight": floor,
        "warning_mode": "never",
        "blocking_rules_to_generate_predictions": rules,
    }
    if len(frames) == 2:
        return linker.inference.predict_between(frames[0], frames[1], **options).as_pyarrow_table()
    return linker.inference.predict_within(frames[0], **options).as_pyarrow_table()


class _RegisteredFrame(DuckDBDataFrame):
    """A table the bridge registered, whose columns never change: Splink reads and parses a
    table's columns again for every statement it writes (a tenth of the scoring time); this
    reads them once."""

    @property
    def columns(self) -> list:
        known = self.__dict__.get("_known_columns")
        if known is None:
            known = self.__dict__["_known_columns"] = super().columns
        return list(known)


def _register(db_api: DuckDBAPI, table: pa.Table, name: str) -> SplinkDataFrame:
    frame = db_api.register(table, table_name=name)
    if type(frame) is DuckDBDataFrame:
        frame.__class__ = _RegisteredFrame
    return frame


def _pair_keys(table: pa.Table, candidates: pa.Table) -> pa.Table:
    """``table`` with, per person, the numbers of the candidate pairs it is in: two people share
    a number exactly when they are a candidate pair, so blocking on it finds those pairs only."""
    ids = pa.concat_arrays([candidates.column(name).combine_chunks() for name in ("unique_id_l", "unique_id_r")])
    numbers = np.tile(np.arange(candidates.num_rows, dtype=np.int64), 2)
    rows = pc.index_in(ids, value_set=table.column("unique_id").combine_chunks())
    found = rows.is_valid().to_numpy(zero_copy_only=False)
    rows = rows.drop_null().to_numpy().astype(np.int64)
    order = np.argsort(rows, kind="stable")
    offsets = np.zeros(table.num_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=table.num_rows), out=offsets[1:])
    keys = pa.ListArray.from_arrays(pa.array(offsets), pa.array(numbers[found][order]))
    return table.append_column(_PAIR_KEYS, keys)


def _bound_settings(model: dict[str, Any]) -> dict[str, Any] | None:
    """``model`` with each comparison's levels from its first costly level (``_pairwise``) on
    replaced by one level (``ELSE``) worth the most any of them is worth, so that a pair's match
    weight is at least its true one and costs no pairwise comparison of names; ``None`` when no
    level is costly, or when one of the levels replaced has a term-frequency adjustment or no
    weight (no bound is known then)."""
    comparisons, changed = [], False
    for comparison in model["comparisons"]:
        levels = comparison["comparison_levels"]
        first = next((i for i, level in enumerate(levels) if _pairwise(level.get("sql_condition", ""))), None)
        if first is None:
            comparisons.append(comparison)
            continue
        weights = [_level_weight(level) for level in levels[first:]]
        if any(level.get("tf_adjustment_column") for level in levels[first:]) or None in weights:
            return None
        top = max(weights)
        if top == -math.inf:
            return None
        m, u = (1.0, 2.0**-top) if top >= 0 else (2.0**top, 1.0)
        most = {"sql_condition": "ELSE", "label_for_charts": "bound", "m_probability": m, "u_probability": u}
        comparisons.append(dict(comparison, comparison_levels=[*levels[:first], most]))
        changed = True
    return dict(model, comparisons=comparisons) if changed else None


def _pairwise(sql: str) -> bool:
    """Whether a level's condition is of the costly kind: a lambda within a lambda (every name of
    one side against every name of the other). One lambda over a list (``len(list_filter(
    "names_l", x -> list_contains("names_r", x)))``, the tokens shared) costs about what comparing
    two columns does; the first pass keeps such levels as they are."""
    start = sql.find(_LAMBDA)
    while start >= 0:
        depth, end = 0, start
        while end < len(sql) and depth >= 0:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        if _LAMBDA in sql[start + len(_LAMBDA) : end]:
            return True
        start = sql.find(_LAMBDA, start + len(_LAMBDA))
    return False


def _level_weight(level: dict[str, Any]) -> float | None:
    """A level's match weight, log2(m/u) (0 for a null level, -inf for m = 0; ``None``: unknown)."""
    if level.get("is_null_level"):
        return 0.0
    m, u = level.get("m_probability"), level.get("u_probability")
    if m is None or not u:
        return None
    return math.log2(m / u) if m > 0 else -math.inf


def _linker(frame: SplinkDataFrame, model: dict[str, Any], tf_frames: dict[str, SplinkDataFrame]) -> Linker:
    # The settings are a model the bridge wrote and its tables the bridge's own: Splink's
    # validation only logs, and costs a tenth of a second per linker. The prior is set per
    # prediction (``_predict``).
    linker = Linker(frame, model, log_level=None, validate_settings=False)
    for column, tf_frame in tf_frames.items():
        if _uses_tf(model, column):
            linker.table_management.register_term_frequency_lookup(tf_frame, column)
    return linker


def splink_settings(model: dict[str, Any]) -> dict[str, Any]:
    """What Splink reads of a model file: everything but the bridge's own ``cht_bridge`` block
    (thresholds, metrics, how it was trained), with conditions of earlier model files upgraded
    (``model.upgraded``)."""
    return upgraded({key: value for key, value in model.items() if key != BRIDGE_KEY})


def _uses_tf(model: dict[str, Any], column: str) -> bool:
    return any(
        level.get("tf_adjustment_column") == column
        for comparison in model["comparisons"]
        for level in comparison["comparison_levels"]
    )


def _pairs(table: pa.Table, model: dict[str, Any]) -> list[ScoredPair]:
    # In a fixed order (DuckDB's depends on its threads and on the passes): the matcher sums a
    # row's candidates in this order, and the same pairs should give the same bits every run.
    table = table.sort_by([("unique_id_r", "ascending"), ("unique_id_l", "ascending")])
    columns = table.to_pydict()
    zeros = [0.0] * table.num_rows
    names = [comparison["output_column_name"] for comparison in model["comparisons"]]
    tf = {name: columns.get(f"mw_tf_adj_{name}", zeros) for name in names}
    per_field = [[a + b for a, b in zip(columns[f"mw_{name}"], tf[name], strict=True)] for name in names]
    labels = {comparison["output_column_name"]: _level_labels(comparison) for comparison in model["comparisons"]}
    # A field's words depend on its level (named by its weight) and on whether the frequency
    # moved it by a noted amount; pairs repeat those few combinations thousands of times.
    said: dict[tuple[str, float | None, int], str] = {}

    def words_for(name: str, weight: float | None, tf_bits: float | None) -> str:
        bits = tf_bits or 0.0
        key = (name, weight, (bits >= TF_NOTE_BITS) - (bits <= -TF_NOTE_BITS))
        found = said.get(key)
        if found is None:
            found = said[key] = words(name, _level_of(labels[name], weight), bits)
        return found

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
            (name, words_for(name, columns[f"mw_{name}"][row], tf[name][row]), weight)
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
