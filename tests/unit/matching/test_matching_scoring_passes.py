"""Scoring in two passes (``scoring``'s module docstring) is only a shortcut: the
pairs, their numbers and the decisions are those of one pass. Real Splink and DuckDB; the one-pass
reference is the same code with the bound switched off."""

from __future__ import annotations

import math

import pytest

from bench.matching import simulated_answers
from cht_bridge.matching import MatchConfig, match, scoring
from cht_bridge.matching.decisions import config_for_model
from cht_bridge.matching.matcher import decide_all, score_people
from cht_bridge.matching.model import load_model
from cht_bridge.matching.training import train
from standins.populations import population
from standins.populations_west import west_population
from tests.unit.matching.test_matching_one_edit import as_before


def _people(seed: int = 5):
    data = population(400, 400, seed=seed)
    return data.incoming, data.existing


def _as_rows(pairs):
    return sorted((p.left, p.right, p.probability, p.match_weight, p.weights, p.evidence) for p in pairs)


@pytest.fixture
def one_pass(monkeypatch: pytest.MonkeyPatch):
    """Switch the first pass off: every blocked pair is scored with the model itself."""

    def switch_off() -> None:
        monkeypatch.setattr(scoring, "_bound_settings", lambda model: None)

    return switch_off


@pytest.mark.parametrize("claims", [False, True])
def test_two_passes_and_the_within_floor_change_no_pair_number_or_decision(one_pass, claims: bool) -> None:
    incoming, existing = _people()
    model = load_model()
    if claims:
        model["cht_bridge"] = {"exclusive_claims": True}
    config = MatchConfig(model=model)
    assert scoring._bound_settings(scoring.splink_settings(model)) is not None  # the shipped model has lambdas

    fast = score_people(incoming, existing, config, within_min_probability=0.5)
    decisions = match(incoming, existing, config)
    one_pass()
    reference = score_people(incoming, existing, config)
    expected = decide_all(reference, config)

    assert decisions == expected
    assert fast.ranked == reference.ranked
    # the list's pairs: every pair of one pass that reaches the floor, the same, and none far under it
    assert _as_rows(p for p in fast.within if p.probability >= 0.5) == _as_rows(
        p for p in reference.within if p.probability >= 0.5
    )
    assert all(p.match_weight >= -1e-6 for p in fast.within)
    assert len(fast.within) < len(reference.within)  # the floor left some out


def test_the_between_pairs_are_those_of_one_pass(one_pass) -> None:
    incoming, existing = _people(seed=9)
    config = MatchConfig()
    fast = score_people(incoming, existing, config)
    one_pass()
    reference = score_people(incoming, existing, config)
    assert fast.ranked == reference.ranked
    assert _as_rows(fast.within) == _as_rows(reference.within)


def test_the_bound_is_worth_the_most_of_the_levels_it_replaces() -> None:
    model = scoring.splink_settings(load_model())
    bound = scoring._bound_settings(model)
    for original, bounded in zip(model["comparisons"], bound["comparisons"], strict=True):
        levels, kept = original["comparison_levels"], bounded["comparison_levels"]
        first = next((i for i, lv in enumerate(levels) if scoring._pairwise(lv["sql_condition"])), None)
        if first is None:
            assert bounded == original
            continue
        assert kept[:first] == levels[:first]
        (most,) = kept[first:]
        replaced = [scoring._level_weight(lv) for lv in levels[first:]]
        assert most["sql_condition"] == "ELSE"
        assert math.log2(most["m_probability"] / most["u_probability"]) == max(replaced)


def test_no_bound_when_a_replaced_level_has_a_frequency_adjustment() -> None:
    model = scoring.splink_settings(load_model())
    names = next(c for c in model["comparisons"] if c["output_column_name"] == "names")
    lambda_level = next(lv for lv in names["comparison_levels"] if scoring._pairwise(lv["sql_condition"]))
    lambda_level["tf_adjustment_column"] = "name_key"
    assert scoring._bound_settings(model) is None


# --- Against plain Splink ------------------------------------------------------------------------
# The reference scores each kind of pair in one pass, with a linker of its own built with its own
# prior, and the model's SQL as it was before the speed changes (``as_before``): the bound, the
# shared linkers and the cheaper SQL must all leave every pair, number and decision as they were.


def _plain_splink(
    existing,
    incoming,
    tf_lookups,
    *,
    prior_between,
    prior_within,
    threads=None,
    model=None,
    within_min_probability=None,
):
    import duckdb
    from splink import DuckDBAPI, Linker

    model = as_before(scoring.splink_settings(model or load_model()))
    connection = duckdb.connect()
    connection.execute("SET lambda_syntax='ENABLE_SINGLE_ARROW'")
    db_api = DuckDBAPI(connection)
    existing_df = db_api.register(existing, table_name="existing_people")
    incoming_df = db_api.register(incoming, table_name="incoming_people")
    tf_frames = {column: db_api.register(table, table_name=f"tf_{column}") for column, table in tf_lookups.items()}

    def linker(prior: float, rules: list) -> Linker:
        settings = dict(model, probability_two_random_records_match=min(max(prior, 1e-9), 0.5))
        made = Linker(incoming_df, dict(settings, blocking_rules_to_generate_predictions=rules), log_level=None)
        for column, frame in tf_frames.items():
            if scoring._uses_tf(model, column):
                made.table_management.register_term_frequency_lookup(frame, column)
        return made

    rules = scoring._within_budget(connection, model, "existing_people", incoming.num_rows)
    between = linker(prior_between, rules).inference.predict_between(
        existing_df, incoming_df, threshold_match_weight=scoring._MIN_WEIGHT, warning_mode="never"
    )
    floor = scoring._MIN_WEIGHT
    if within_min_probability:
        floor = max(floor, math.log2(within_min_probability / (1 - within_min_probability)) - scoring._BOUND_MARGIN)
    rules = scoring._within_budget(connection, model, None, incoming.num_rows)
    within = linker(prior_within, rules).inference.predict_within(
        incoming_df, threshold_match_weight=floor, warning_mode="never"
    )
    return scoring._pairs(between.as_pyarrow_table(), model), scoring._pairs(within.as_pyarrow_table(), model)


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


_TRAINED: dict = {}


def _case(kind: str, seed: int, what: str):
    data = population(500, 400, seed=seed) if kind == "east" else west_population(500, 400, seed=seed)
    if what.startswith("shipped"):
        model = load_model()
        if what == "shipped + claims":
            model["cht_bridge"] = {"exclusive_claims": True}
        return data, MatchConfig(model=model)
    key = (kind, seed)
    if key not in _TRAINED:
        _TRAINED[key] = train(data.existing, data.incoming, seed=seed)
    model = _TRAINED[key]
    if what == "trained + labels":
        answered = match(data.incoming, data.existing, config_for_model(model))
        model = train(data.existing, data.incoming, simulated_answers(answered, data, 40), seed=seed)
    return data, config_for_model(model)


_CASES = [
    (kind, seed, what) for kind in ("east", "second") for seed in (7, 11, 13) for what in ("shipped", "trained")
] + [
    ("east", 7, "shipped + claims"),
    ("east", 11, "trained + labels"),
    ("second", 11, "trained + labels"),
]


@pytest.mark.parametrize(("kind", "seed", "what"), _CASES)
def test_same_pairs_numbers_and_decisions_as_plain_splink(monkeypatch: pytest.MonkeyPatch, kind, seed, what) -> None:
    from cht_bridge.matching import matcher

    data, config = _case(kind, seed, what)
    if what != "shipped":  # trained models and the claims case sum claims of rival rows
        assert config.model["cht_bridge"].get("exclusive_claims")
    kept = {}

    def keeping(score):
        def scored(*args, **kwargs):
            kept[score] = score(*args, **kwargs)
            return kept[score]

        return scored

    fast = matcher.score
    monkeypatch.setattr(matcher, "score", keeping(fast))
    decisions = match(data.incoming, data.existing, config)
    monkeypatch.setattr(matcher, "score", keeping(_plain_splink))
    expected = match(data.incoming, data.existing, config)

    for mine, theirs in zip(kept[fast], kept[_plain_splink], strict=True):
        mine, theirs = _as_rows(mine), _as_rows(theirs)
        assert [row[:2] for row in mine] == [row[:2] for row in theirs]  # the same pairs
        assert _close(mine, theirs)  # the same probabilities, weights and evidence
    assert len(kept[fast][0]) > 300
    assert [(d.incoming_id, d.decision, d.existing_id, d.same_as, d.reason) for d in decisions] == [
        (d.incoming_id, d.decision, d.existing_id, d.same_as, d.reason) for d in expected
    ]
    assert _close([d.probability for d in decisions], [d.probability for d in expected])
