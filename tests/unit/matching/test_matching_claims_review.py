"""Review of the claims (``exclusive.py``) and the household level (issue 14, fourth review)."""

from __future__ import annotations

from cht_bridge.matching import MatchConfig, Person, match

_CROWD = [Person(id=f"p{k}", given_name=f"name{k}", family_name="Otieno", place=f"hh-{100 + k}") for k in range(200)]
_AMINA = Person(
    id="x", given_name="Amina", family_name="Wanjiru", sex="F", phone="0712345678", place="hh-1", area="ward-1"
)


def _place_evidence(phone: str, place: str) -> tuple[str, float]:
    row = Person(id="row", given_name="Amina", family_name="Wanjiru", sex="F", phone=phone, place=place, area="ward-9")
    decision = match([row], [_AMINA, *_CROWD], MatchConfig())[0]
    best = next(candidate for candidate in decision.candidates if candidate.existing_id == "x")
    return next((words, weight) for field, words, weight in best.evidence if field == "place")


def test_a_near_phone_in_another_place_still_scores_places_differ() -> None:
    # a stranger one digit off, or with the same last 9 digits, in another village
    for phone in ("0712345679", "+255712345678"):
        words, weight = _place_evidence(phone, "hh-77")
        assert words == "places differ"
        assert -4.6 < weight < -4.0
    # the same number still counts the place once, wherever it is
    assert _place_evidence("0712345678", "hh-77")[0] == "same household (counted with the phone)"
    # and a near phone in the same place is the household's
    assert _place_evidence("0712345679", "hh-1")[0] == "same household (counted with the phone)"
