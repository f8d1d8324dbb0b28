"""The risk budgets ``thresholds.choose`` spends by default: with the claims of the other rows
(``exclusive.py``) far more people sit just above a threshold, and the budget is used."""

from __future__ import annotations

from cht_bridge.matching import Person
from cht_bridge.matching.decisions import Candidate, MatchConfig
from cht_bridge.matching.deterministic import DeterministicIndex
from cht_bridge.matching.matcher import Scored, _Ranked
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
