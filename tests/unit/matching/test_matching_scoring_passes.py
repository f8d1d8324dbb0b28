"""Scoring in two passes (``scoring``'s module docstring) is only a shortcut: the
pairs, their numbers and the decisions are those of one pass. Real Splink and DuckDB; the one-pass
reference is the same code with the bound switched off."""

from __future__ import annotations

import math

import pytest

from cht_bridge.matching import MatchConfig, match, scoring
from cht_bridge.matching.matcher import decide_all, score_people
from cht_bridge.matching.model import load_model
from standins.populations import population


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
