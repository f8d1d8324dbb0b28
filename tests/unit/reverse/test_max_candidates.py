"""``review.max_candidates`` is how many candidates the matcher keeps and the reviewer is offered."""

from __future__ import annotations

import pytest

from cht_bridge.matching import MatchConfig, Person, match
from cht_bridge.operators.reverse import MatchReviewOperator
from cht_bridge.reverse.run import match_config
from tests.unit.reverse.test_reverse_loader import parse

#: Six people CHT cannot tell apart from the incoming one (one name, one date of birth, no phone).
LOOK_ALIKES = [Person(f"e-mary-{i}", "Mary", "Wanjiku", "F", "1980-01-01", None, f"hh-{i}") for i in range(6)]
OTHERS = [
    Person("e-peter", "Peter Kamau", "Mwangi", "M", "1975-11-20", "+254722111333", "hh-20"),
    Person("e-faith", "Faith Njeri", "Kariuki", "F", "2001-09-09", "+254711222333", "hh-21"),
    Person("e-baraka", "Baraka", "Juma", "M", "1999-12-24", "+254799888777", "hh-22"),
    Person("e-amina", "Amina", "Said", "F", "1985-04-30", None, "hh-23"),
]
MARY = Person("i-mary", "Mary", "Wanjiku", "F", "1980-01-01")


def candidates_for(config: MatchConfig) -> list[str]:
    (decision,) = match([MARY], LOOK_ALIKES + OTHERS, config)
    assert decision.decision == "review"
    return [c.existing_id for c in decision.candidates]


@pytest.mark.parametrize("kept", [1, 3, 5])
def test_the_matcher_keeps_the_configured_number_of_candidates(kept: int) -> None:
    found = candidates_for(MatchConfig(max_candidates=kept))
    assert len(found) == kept and set(found) <= {p.id for p in LOOK_ALIKES}


def test_the_default_is_three() -> None:
    assert len(candidates_for(MatchConfig())) == 3


def test_a_pipeline_with_five_candidates_matches_and_asks_with_five() -> None:
    pipeline = parse(review={"max_candidates": 5})
    config = match_config(pipeline)
    assert config.max_candidates == 5
    assert len(candidates_for(config)) == 5
    operator = MatchReviewOperator(task_id="review", pipeline_file="ltfu.yaml", review_key=["r", "1"], max_candidates=5)
    links = [o for o in operator.options if o.startswith("Link to candidate")]
    assert links == [f"Link to candidate {k}" for k in range(1, 6)]


def test_max_candidates_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_candidates"):
        MatchConfig(max_candidates=0)
