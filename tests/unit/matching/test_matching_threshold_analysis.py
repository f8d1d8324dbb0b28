"""The threshold analysis of ``bench/matching_thresholds.py``: the calibration bands count what
they say, and the oracle thresholds are the least review the truth allows (0 wrong links, the
duplicates goal), which is what the chosen thresholds are measured against."""

from __future__ import annotations

import pytest

from bench.matching_thresholds import Band, bands, bits, oracle
from cht_bridge.matching.decisions import MatchConfig
from cht_bridge.matching.thresholds import choose
from tests.unit.matching.test_matching_risks import _scored  # rows row<k>, one candidate e<k> each


def _counts(truth: dict[str, str | None]):
    def counts(decisions: list) -> tuple[int, int]:
        wrong = sum(1 for d in decisions if d.decision == "link" and truth[d.incoming_id] != d.existing_id)
        duplicates = sum(1 for d in decisions if d.decision == "new" and truth[d.incoming_id] is not None)
        return wrong, duplicates

    return counts


def test_bands_sum_predictions_and_count_events_per_bit_with_open_ends() -> None:
    items = [
        (0.75, 0.25, False, False),  # log2(3) = 1.58 bits: band 1
        (0.8, 0.2, True, True),  # 2 bits: band 2
        (0.85, 0.15, True, False),  # 2.50 bits: band 2
        (0.999999, 1e-6, False, False),  # 19.9 bits: into the last band (5)
        (0.01, 0.99, True, False),  # -6.6 bits: into the first band (0)
    ]
    assert bands(items, 0, 5) == [
        Band(0, 1, 0.99, 1, 0),
        Band(1, 1, 0.25, 0, 0),
        Band(2, 2, pytest.approx(0.35), 2, 1),
        Band(5, 1, 1e-6, 0, 0),
    ]
    assert bits(0.5) == 0.0 and bits(1.0) < 60 and bits(0.0) > -60


def test_the_oracle_links_down_to_just_above_the_highest_wrong_candidate() -> None:
    # 400 true pairs at 0.99, one truly new person at 0.995 whose candidate is someone else,
    # 90 true pairs at 0.999: the risk budget (1 in 20,000) keeps the 0.99 rows in review, the
    # truth shows that linking them would have been right; a link at 0.995 is the one wrong one
    rows = [0.999] * 90 + [0.995] + [0.99] * 400 + [0.3] * 9
    truth = {f"row{k}": f"e{k}" for k in range(len(rows))}
    truth["row90"] = None
    for k in range(491, 498):
        truth[f"row{k}"] = None  # 7 new and 2 existing people at 0.3
    scored = _scored(rows)
    config = MatchConfig(same_as_upper=None)
    upper, lower = oracle(scored, config, _counts(truth), duplicate_goal=2)
    assert 0.995 < upper <= 0.996  # the first grid step above the wrong candidate
    assert lower > 0.3  # 2 duplicates are within the goal: the 0.3 rows are new, not review
    chosen = choose(scored, config)
    assert chosen.upper > 0.999  # what the budget does without the truth


def test_the_oracle_keeps_the_duplicates_within_the_goal() -> None:
    rows = [0.9999] * 100 + [0.3] * 20
    truth = {f"row{k}": f"e{k}" for k in range(len(rows))}
    for k in range(100, 115):
        truth[f"row{k}"] = None  # 15 new, 5 existing people at 0.3
    upper, lower = oracle(_scored(rows), MatchConfig(same_as_upper=None), _counts(truth), duplicate_goal=4)
    assert lower <= 0.3 < upper  # 5 duplicates would break a goal of 4: the 0.3 rows stay in review
