"""The risk budgets ``thresholds.choose`` spends by default: with the claims of the other rows
(``exclusive.py``) far more people sit just above a threshold, and the budget is used; answered
people spend what the model expects of them, and the budgets are per row nobody answered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cht_bridge.matching import Person
from cht_bridge.matching.decisions import Candidate, MatchConfig
from cht_bridge.matching.deterministic import DeterministicIndex
from cht_bridge.matching.labels import Label
from cht_bridge.matching.matcher import Scored, _Ranked, decide_all
from cht_bridge.matching.thresholds import choose


def _scored(rows: list[float | None]) -> Scored:
    """A list of 5,000 rows, each with one candidate at the probability given (``None``: none)."""
    people = [Person(id=f"row{k}") for k in range(len(rows))]
    keys = [f"i{k}" for k in range(len(rows))]
    ranked = {
        key: _Ranked([Candidate(f"e{k}", p, "model")], p, {})
        for k, (key, p) in enumerate(zip(keys, rows, strict=True))
        if p is not None
    }
    return Scored(people, keys, [None] * len(rows), ranked, DeterministicIndex([], [], 2), [])


def test_the_expected_wrong_links_stay_under_one_in_four_per_five_thousand_rows() -> None:
    # linking the 200 rows at 0.999 as well makes 0.4 expected wrong links: one in 12,500 rows
    # was within the old budget (1 in 10,000), and on the benchmarks such budgets turned into
    # one or two real wrong links in three runs of four
    scored = _scored([0.99995] * 4000 + [0.999] * 200 + [None] * 800)
    chosen = choose(scored, MatchConfig())
    assert chosen.upper > 0.999
    assert chosen.expected_wrong_links <= 0.25


def test_the_expected_duplicates_stay_under_one_in_a_thousand_rows() -> None:
    # 60 rows at 0.2 are 12 expected duplicates if called new: within the old budget of 0.25 %
    # of the rows (12.5), though people no candidate was found for add to the duplicates too
    scored = _scored([0.99995] * 4000 + [0.2] * 60 + [None] * 940)
    chosen = choose(scored, MatchConfig())
    assert chosen.lower <= 0.2
    assert chosen.expected_duplicates <= 5.0


def _review_of_unanswered(scored: Scored, chosen, labels: list[Label]) -> int:
    answered = {label.incoming_id for label in labels}
    decisions = decide_all(scored, replace(MatchConfig(), upper=chosen.upper, lower=chosen.lower))
    return sum(1 for d in decisions if d.decision == "review" and d.incoming_id not in answered)


def test_answered_people_spend_what_the_model_expects_not_whole_duplicates() -> None:
    # 20 unanswered rows at 0.2 are 4 expected duplicates, within one in 1,000 of 5,000 rows; three
    # people the model thought unlikely (0.05) were answered "this is the candidate". They spend
    # 0.05 each, as rows like them on the next list will; counting each as a whole duplicate
    # (7 > 5) sent the 20 unanswered rows to review
    rows = [0.99995] * 4000 + [0.2] * 20 + [0.05] * 3 + [None] * 977
    scored = _scored(rows)
    labels = [Label(f"row{k}", f"e{k}", True) for k in range(4020, 4023)]
    without = choose(scored, MatchConfig())
    answered = choose(scored, MatchConfig(), labels)
    assert without.lower > 0.2
    assert answered.lower >= without.lower and answered.upper <= without.upper
    assert _review_of_unanswered(scored, answered, labels) <= _review_of_unanswered(scored, without, labels) == 0
    assert answered.expected_duplicates <= 5.0


def test_a_labelled_wrong_link_still_moves_upper() -> None:
    # answers never link against an answer: a pair at 0.9999 a reviewer said are two people
    scored = _scored([0.99995] * 4000 + [0.9999] * 10 + [None] * 990)
    labels = [Label("row4000", "e4000", False)]
    assert choose(scored, MatchConfig()).upper <= 0.9999
    chosen = choose(scored, MatchConfig(), labels)
    assert chosen.upper > 0.9999
    decisions = decide_all(scored, replace(MatchConfig(), upper=chosen.upper, lower=chosen.lower))
    assert decisions[4000].decision != "link"


def test_a_list_that_is_mostly_old_answers_does_not_loosen_the_budgets_for_the_rest() -> None:
    # 1,000 open rows, 10 of them at 0.2 (2 expected duplicates if called new: twice the budget of
    # one in 1,000), and 9,000 rows answered "new" (training lists keep old answers): when answered
    # rows cost nothing yet counted in the budget's rows, it grew tenfold and the 10 rows were
    # called new; they spend what the model expects of them (0.05 each) like any other row
    open_rows = [0.99995] * 900 + [0.2] * 10 + [None] * 90
    scored = _scored(open_rows + [0.05] * 9000)
    labels = [Label(f"row{k}", f"e{k}", False) for k in range(1000, 10000)]
    chosen = choose(scored, MatchConfig(), labels)
    decisions = decide_all(scored, replace(MatchConfig(), upper=chosen.upper, lower=chosen.lower))
    assert {d.decision for d in decisions[900:910]} == {"review"}
    assert chosen.expected_duplicates <= 1.0
    assert chosen.review_share == pytest.approx(10 / 1000)
