"""Three defects a review found in training: a level that counts against a match could flip
unchecked, ``train --start`` kept the start model's level set, and answers collapsed the thresholds."""

from __future__ import annotations

from dataclasses import replace

from cht_bridge.matching.decisions import MatchConfig
from cht_bridge.matching.labels import Label
from cht_bridge.matching.matcher import decide_all
from cht_bridge.matching.thresholds import choose
from tests.unit.matching.test_matching_risks import _scored


def test_answering_the_uncertain_rows_does_not_collapse_the_thresholds() -> None:
    # 150 rows at an even chance, every one of them answered (reviewers answer the most uncertain
    # rows; half were the candidate, half new), and nothing else between the thresholds. Leaving
    # answered rows out of the budgets, nothing unanswered was left to spend them on: lower rose to
    # upper and the model called such rows new (75 expected duplicates), as it does on the next list
    rows = [0.99995] * 4000 + [0.5] * 150 + [None] * 850
    scored = _scored(rows)
    labels = [Label(f"row{k}", f"e{k}", k % 2 == 0) for k in range(4000, 4150)]
    without = choose(scored, MatchConfig())
    answered = choose(scored, MatchConfig(), labels)
    assert without.lower <= 0.5 < without.upper
    assert answered.lower <= 0.5 < answered.upper
    assert answered.expected_duplicates <= 5.0
    decisions = decide_all(scored, replace(MatchConfig(), upper=answered.upper, lower=answered.lower))
    assert {d.decision for d in decisions[4000:4150]} == {"review"}
    assert answered.review_share == 0.0  # the rows people review: the answered ones are decided
