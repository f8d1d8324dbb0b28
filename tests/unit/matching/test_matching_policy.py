"""The probability arithmetic and the decision rules around the Splink scores."""

from __future__ import annotations

import pytest

from cht_bridge.matching import Candidate, MatchConfig, Person, match
from cht_bridge.matching.features import Frequencies
from cht_bridge.matching.matcher import _corroborated, _rank
from cht_bridge.matching.model import load_model
from cht_bridge.matching.scoring import ScoredPair

EXISTING = [
    Person("e-amina", "Amina", "Said", "F", "1985-04-30", None, "hh-10", area=("hh-10", "chw-1")),
    Person("e-baraka", "Baraka", "Juma", "M", "1999-12-24", "+254799888777", "hh-9", area=("hh-9", "chw-1")),
    Person("e-faith", "Faith Njeri", "Kariuki", "F", "2001-09-09", "+254711222333", "hh-8", area=("hh-8", "chw-2")),
]
# ``upper`` of 1 sends every probabilistic candidate to review unless the corroboration rule links it.
STRICT = MatchConfig(upper=1.0)


def _pair(left: str, weight: float, **weights: float) -> ScoredPair:
    return ScoredPair(left, "i0", 0.0, weight, tuple(weights.items()))


def test_someone_new_keeps_only_the_share_of_people_who_are_new() -> None:
    # Weights carry the prior (match share over existing people); "someone new" weighs 1 - share.
    ranked = _rank([_pair("e0", 0.0)], {"e0": "a"}, match_share=0.75)["i0"]
    assert ranked.candidates[0].probability == pytest.approx(1 / 1.25)
    assert ranked.any_match == pytest.approx(1 / 1.25)


def test_rank_keeps_the_best_candidates_weights() -> None:
    ranked = _rank([_pair("e0", 1.0, names=3.0), _pair("e1", 5.0, names=9.0)], {"e0": "a", "e1": "b"}, 0.75)["i0"]
    assert [c.existing_id for c in ranked.candidates] == ["b", "a"]
    assert ranked.best_weights == {"names": 9.0}


def test_lone_candidate_corroborated_by_date_of_birth_and_place_links() -> None:
    person = Person("amina", "Said", "Amina", "F", "30/04/1985", None, "hh-10")
    result = match([person], EXISTING, STRICT)[0]
    assert (result.decision, result.existing_id) == ("link", "e-amina")
    assert result.reason.startswith("lone candidate, corroborated")
    # Switched off, the same person waits for a reviewer.
    off = match([person], EXISTING, MatchConfig(upper=1.0, corroborated_link=1.0))[0]
    assert (off.decision, off.existing_id) == ("review", "e-amina")


def test_a_shared_phone_does_not_corroborate() -> None:
    # Names and phone agree, nothing else is known: household-level evidence, so review.
    result = match([Person("baraka", "Baraka", "Juma", "M", None, "0799888777")], EXISTING, STRICT)[0]
    assert (result.decision, result.existing_id) == ("review", "e-baraka")


@pytest.mark.parametrize(
    ("candidates", "weights", "expected"),
    [
        ([Candidate("a", 0.9, "")], {"names": 12.0, "date_of_birth": 6.0, "place": 3.0}, True),
        ([Candidate("a", 0.4, "")], {"names": 12.0, "date_of_birth": 6.0, "place": 3.0}, False),  # too unlikely
        ([Candidate("a", 0.9, ""), Candidate("b", 0.05, "")], {"names": 12.0, "date_of_birth": 9.0}, False),  # rival
        ([Candidate("a", 0.9, "")], {"names": -1.0, "date_of_birth": 12.0, "place": 8.0}, False),  # names differ
        ([Candidate("a", 0.9, "")], {"names": 12.0, "sex": -5.6, "date_of_birth": 12.0}, False),  # sex differs
        ([Candidate("a", 0.9, "")], {"names": 12.0, "phone": 13.0, "place": 1.0}, False),  # phone is household
        ([], {}, False),
    ],
)
def test_corroboration_rule(candidates: list[Candidate], weights: dict[str, float], expected: bool) -> None:
    assert _corroborated(candidates, weights, MatchConfig()) is expected


def test_a_1_january_date_is_weaker_evidence_than_a_full_date() -> None:
    dob = next(c for c in load_model()["comparisons"] if c["output_column_name"] == "date_of_birth")
    labels = [level["label_for_charts"] for level in dob["comparison_levels"]]
    estimated, exact = (
        dob["comparison_levels"][labels.index(name)] for name in ("same 1 January (estimated) date", "same date")
    )
    assert labels.index("same 1 January (estimated) date") < labels.index("same date")
    assert estimated["m_probability"] < exact["m_probability"]
    assert estimated["tf_adjustment_column"] == exact["tf_adjustment_column"] == "date_of_birth"


def test_an_area_is_as_common_as_the_people_living_under_it() -> None:
    people = [*EXISTING, Person("i", "Zawadi", place="chw-1")]
    counts = Frequencies(people, [None] * len(people))
    # chw-1 holds three of four people (two living under it, one naming it); hh-10 one.
    assert (counts.count("area", "chw-1"), counts.count("area", "hh-10")) == (3, 1)
    assert counts.tf("area", "chw-1") > counts.tf("area", "hh-10")
    place = next(c for c in load_model()["comparisons"] if c["output_column_name"] == "place")
    wider = next(level for level in place["comparison_levels"] if level["label_for_charts"] == "same wider area")
    assert wider["tf_adjustment_column"] == "area_key"


def test_within_list_threshold_is_validated_and_defaults_apart_from_upper() -> None:
    assert MatchConfig().same_as_upper == 0.99 < MatchConfig().upper
    with pytest.raises(ValueError, match="same_as_upper"):
        MatchConfig(same_as_upper=1.5)
