"""Review of the claims (``exclusive.py``) and the household level (issue 14, fourth review)."""

from __future__ import annotations

import logging
import random

import pytest

from cht_bridge.matching import MatchConfig, Person, exclusive, match
from cht_bridge.matching.exclusive import MAX_BOOST, with_claims
from cht_bridge.matching.matcher import _rank
from cht_bridge.matching.scoring import ScoredPair

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


def _pair(existing: str, incoming: str, weight: float) -> ScoredPair:
    return ScoredPair(existing, incoming, 1 / (1 + 2**-weight), weight, ())


def _weights(pairs: list[ScoredPair]) -> dict[tuple[str, str], float]:
    return {(pair.left, pair.right): pair.match_weight for pair in pairs}


def _dense(seed: int = 3) -> list[ScoredPair]:
    """300 rows and 300 people, ten pairs a row at weights from 4 to 21 bits: many claims."""
    rng = random.Random(seed)
    drawn = [
        _pair(f"e{rng.randrange(300)}", f"i{rng.randrange(300)}", rng.choice([20, 14, 10, 8, 6, 4]) + rng.random())
        for _ in range(3000)
    ]
    return list({(pair.left, pair.right): pair for pair in drawn}.values())


def test_the_people_the_others_leave_raise_a_weight_by_what_the_share_leaves_at_most() -> None:
    # 1,200 rows name 1,000 of 1,001 people beyond doubt (the list names some twice, unseen);
    # row "r" has evidence against its only candidate
    pairs = [_pair(f"e{k}", f"i{k}", 40.0) for k in range(1000)]
    pairs += [_pair(f"e{k}", f"j{k}", 40.0) for k in range(200)] + [_pair("e5000", "r", -4.0)]
    # a quarter of the list is new: the others leave a quarter of the people at least (2 bits)
    after = _weights(with_claims(pairs, [], share=0.75, n_existing=1001, margin=0.05))
    assert after[("e5000", "r")] == pytest.approx(-4.0 + 2.0, abs=0.01)  # not +5.96
    after = _weights(with_claims(pairs, [], share=0.5, n_existing=1001, margin=0.05))
    assert after[("e5000", "r")] == pytest.approx(-3.0, abs=0.01)
    # and never more than MAX_BOOST bits, whatever the share
    after = _weights(with_claims(pairs, [], share=0.999, n_existing=1001, margin=0.05))
    assert after[("e5000", "r")] == pytest.approx(-4.0 + MAX_BOOST, abs=0.01)
    assert MAX_BOOST <= 3.0


def test_the_claims_are_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = _dense()
    found = _weights(with_claims(pairs, [], 0.75, 300, 0.05))
    monkeypatch.setattr(exclusive, "TOLERANCE", 1e-9)
    monkeypatch.setattr(exclusive, "MAX_ROUNDS", 20_000)
    settled = _weights(with_claims(pairs, [], 0.75, 300, 0.05))
    assert max(abs(found[key] - settled[key]) for key in settled) < 0.01


def test_unsettled_claims_are_logged_by_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(exclusive, "MAX_ROUNDS", 2)
    with caplog.at_level(logging.WARNING, logger=exclusive.__name__):
        with_claims(_dense(), [], 0.75, 300, 0.05)
    assert "not settled after 2 rounds: " in caplog.text and " of 2" in caplog.text


def test_the_bits_do_not_depend_on_the_order_of_the_pairs() -> None:
    pairs = _dense(5)
    shuffled = pairs[:]
    random.Random(1).shuffle(shuffled)
    assert _weights(with_claims(pairs, [], 0.75, 300, 0.05)) == _weights(with_claims(shuffled, [], 0.75, 300, 0.05))
    out = with_claims(shuffled, [], 0.75, 300, 0.05)
    assert [(pair.right, pair.left) for pair in out] == sorted((pair.right, pair.left) for pair in out)


def test_a_reviewer_reads_the_claims_in_words_with_their_bits() -> None:
    # row "b" is person X beyond doubt; row "a" has X as its only (fair) candidate
    after = {
        (p.left, p.right): p for p in with_claims([_pair("x", "b", 30.0), _pair("x", "a", 8.0)], [], 0.5, 1000, 0.05)
    }
    words = {text: bits for _, text, bits in after[("x", "a")].evidence}
    assert words["another row of this list is likely this person"] == pytest.approx(-10.0, abs=0.1)
    assert dict(after[("x", "a")].weights)["other_rows"] == pytest.approx(-10.0, abs=0.1)
    # one row in 1,000 people leaves nearly all of them: under half a bit, not shown
    assert "most people here are named by other rows of this list" not in {t for _, t, _ in after[("x", "b")].evidence}
    # most people named by other rows: the prior of the row that is left goes up, and says so
    pairs = [_pair(f"e{k}", f"i{k}", 40.0) for k in range(7)] + [_pair("e9", "r", 2.0)]
    after = {(p.left, p.right): p for p in with_claims(pairs, [], 0.9, 10, 0.05)}
    words = {text: bits for _, text, bits in after[("e9", "r")].evidence}
    assert words["most people here are named by other rows of this list"] == pytest.approx(1.74, abs=0.01)
    # and the candidate a reviewer sees carries it (matcher._rank keeps a pair's evidence)
    ranked = _rank(list(after.values()), {f"e{k}": f"E{k}" for k in range(10)}, 0.9, 3)
    assert ("other_rows", "most people here are named by other rows of this list") in {
        item[:2] for item in ranked["r"].candidates[0].evidence
    }
    assert "other_rows +1.7" in ranked["r"].candidates[0].reason


def test_rows_of_different_lists_do_not_compete() -> None:
    pairs = [_pair("x", "b", 30.0), _pair("x", "a", 8.0)]
    one_list = _weights(with_claims(pairs, [], 0.5, 1000, 0.05))
    assert one_list[("x", "a")] < 0.0
    two_lists = _weights(with_claims(pairs, [], 0.5, 1000, 0.05, lists={"a": "pipeline-1", "b": "pipeline-2"}))
    assert two_lists[("x", "a")] == pytest.approx(8.0, abs=0.01)
    same_list = _weights(with_claims(pairs, [], 0.5, 1000, 0.05, lists={"a": "pipeline-1", "b": "pipeline-1"}))
    assert same_list == pytest.approx(one_list)
    # nor do the people the other lists name leave fewer for this one
    pairs = [_pair(f"e{k}", f"i{k}", 40.0) for k in range(7)] + [_pair("e9", "r", 2.0)]
    lists = {f"i{k}": "pipeline-1" for k in range(7)} | {"r": "pipeline-2"}
    assert _weights(with_claims(pairs, [], 0.9, 10, 0.05, lists=lists))[("e9", "r")] == pytest.approx(2.0, abs=0.01)


def test_the_review_question_shows_the_claims() -> None:
    from cht_bridge.reverse.review import _evidence_lines

    claimed = ("other_rows", "another row of this list is likely this person", -9.96)
    left = ("other_rows", "most people here are named by other rows of this list", 1.74)
    candidates = [
        {"evidence": [("names", "same names", 12.0), claimed, left]},
        {"evidence": [("names", "only one name shared", 2.0)]},
    ]
    lines = {title: cells for title, _, cells in _evidence_lines(candidates)}
    assert lines["Evidence: other rows of this list"] == [
        "another row of this list is likely this person (-10.0); "
        "most people here are named by other rows of this list (+1.7)",
        None,
    ]
    assert lines["Evidence: name"] == ["same names (+12.0)", "only one name shared (+2.0)"]
